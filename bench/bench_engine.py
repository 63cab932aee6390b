"""Engine benchmark: everything measured side by side in one run, on the same photos, printed as ratios.

    .venv/bin/python bench/bench_engine.py [--data ../shared/datasets/flowers-dev/train] [--finetune-epochs 1]

Rows: one backbone pass (our engine, decoding included: the floor), a hand-written PyTorch-eager
pass, transfer-mode train_seconds with a cold cache and its ratios, a hand-written loop that
re-runs the frozen backbone every epoch, retraining after adding 10 images, fine-tune seconds per
epoch (ours against fp32 NCHW eager), and predict latency p50 through the exported model.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from baselines import fp32_nchw_eager  # bench/ is the script's folder, first on sys.path

from app.engine.backbones import build_backbone, get_spec
from app.engine.context import RunContext
from app.engine.dataset import Dataset, from_folder
from app.engine.embeddings import Embedder, make_embedder, resolve_device
from app.engine.export import export_model_zip
from app.engine.images import model_input
from app.engine.model_zip import OnnxClassifier
from app.engine.params import Mode, TrainParams
from app.engine.training import fit

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "flowers-dev" / "train"


def eager_pass(paths: list[Path], batch_size: int = 32) -> float:
    """A hand-written PyTorch-eager fp32 NCHW pass over the photos, decoding included; seconds."""
    prep = get_spec("mobilenet_v2").preprocessing
    model = build_backbone("mobilenet_v2").eval()
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            batch = np.stack([model_input(p, prep) for p in paths[start : start + batch_size]])
            model(torch.from_numpy(batch))
    return time.perf_counter() - started


def handwritten_refeed_epoch(data: Dataset, batch_size: int = 32) -> float:
    """One epoch of the naive loop: frozen backbone re-run on every batch, head trained; seconds."""
    prep = get_spec("mobilenet_v2").preprocessing
    backbone = build_backbone("mobilenet_v2").eval()
    head = torch.nn.Linear(1280, len(data.labels))
    optimiser = torch.optim.Adam(head.parameters(), 1e-3)
    started = time.perf_counter()
    for start in range(0, len(data.train), batch_size):
        samples = data.train[start : start + batch_size]
        with torch.no_grad():
            features = backbone(
                torch.from_numpy(np.stack([model_input(s.path, prep) for s in samples]))
            )
        loss = torch.nn.functional.cross_entropy(
            head(features), torch.tensor([s.label for s in samples])
        )
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return time.perf_counter() - started


def finetune_epoch_seconds(
    data: Dataset, cache: Path, fast: bool, epochs: int
) -> tuple[float, float]:
    """Median seconds of a fine-tune epoch and the validation accuracy, with or without our speed-ups."""
    seconds: list[float] = []
    with fp32_nchw_eager() if not fast else nullcontext():
        result = fit(
            data,
            TrainParams(mode=Mode.FINETUNE, epochs=epochs, seed=0),
            RunContext(
                make_embedder("mobilenet_v2", cache),
                on_event=lambda e: (
                    seconds.append(e.seconds)
                    if getattr(e, "stage", "") == "finetune" and e.type == "epoch"
                    else None
                ),
            ),
        )
    return statistics.median(seconds), result.metrics.val_accuracy


def backbone_throughput(embedder: Embedder, repeats: int = 5) -> float:
    """Images per second of the backbone alone on a preprocessed batch, median of `repeats`."""
    batch = np.random.default_rng(0).standard_normal((32, 3, 224, 224), dtype=np.float32)
    embedder.engine(batch)
    timings = []
    for _ in range(repeats):
        tick = time.perf_counter()
        embedder.engine(batch)
        timings.append(time.perf_counter() - tick)
    return 32 / statistics.median(timings)


def predict_p50(zip_path: Path, image: Path, runs: int = 50) -> float:
    classifier = OnnxClassifier.from_zip(zip_path)
    data = image.read_bytes()
    classifier.predict_bytes(data)
    timings = []
    for _ in range(runs):
        tick = time.perf_counter()
        classifier.predict_bytes(data)
        timings.append(time.perf_counter() - tick)
    return statistics.median(timings) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--refeed-epochs",
        type=int,
        default=2,
        help="Epochs of the naive loop to time (then scaled).",
    )
    parser.add_argument(
        "--finetune-epochs",
        type=int,
        default=3,
        help="Fine-tune epochs per variant (accuracy compared after them).",
    )
    args = parser.parse_args()
    data = from_folder(args.data, None, 0.15, 0)
    paths = [s.path for s in data.train + data.val]
    n = len(paths)
    scratch = Path(tempfile.mkdtemp(prefix="teachbox-bench-"))
    try:
        rows: list[tuple[str, str]] = []
        warm = make_embedder("mobilenet_v2", scratch / "warm")
        warm.engine  # noqa: B018 - export the ONNX backbone outside the timed region
        backbone_cache = scratch / "warm" / "backbones"

        floor_cache = scratch / "floor"
        shutil.copytree(backbone_cache, floor_cache / "backbones")
        tick = time.perf_counter()
        make_embedder("mobilenet_v2", floor_cache).embed(paths)
        floor = time.perf_counter() - tick
        rows.append(
            (
                "backbone pass, ours (ONNX Runtime, decoding included)",
                f"{floor:.2f} s, {n / floor:.0f} images/s",
            )
        )

        eager = eager_pass(paths)
        rows.append(
            (
                "backbone pass, hand-written PyTorch eager fp32",
                f"{eager:.2f} s, {n / eager:.0f} images/s",
            )
        )

        cold = scratch / "cold"
        shutil.copytree(backbone_cache, cold / "backbones")
        params = TrainParams(seed=0)
        result = fit(data, params, RunContext(make_embedder("mobilenet_v2", cold)))
        rows.append(
            (
                "transfer train_seconds, cold cache",
                f"{result.train_seconds:.2f} s (val acc {result.metrics.val_accuracy:.3f})",
            )
        )
        rows.append(("  ratio to our backbone pass", f"{result.train_seconds / floor:.2f}x"))
        rows.append(("  ratio to the eager pass", f"{result.train_seconds / eager:.2f}x"))

        per_epoch = statistics.median(
            handwritten_refeed_epoch(data) for _ in range(args.refeed_epochs)
        )
        naive = per_epoch * params.resolved_epochs
        rows.append(
            (
                f"hand-written loop re-running the backbone, {params.resolved_epochs} epochs",
                f"{naive:.1f} s (median epoch {per_epoch:.2f} s x {params.resolved_epochs})",
            )
        )
        rows.append(("  ours as a fraction of it", f"{result.train_seconds / naive:.3f}x"))

        added = from_folder(args.data, None, 0.15, 0)
        extra_dir = scratch / "extra"
        for i, sample in enumerate(added.train[:10]):
            target = extra_dir / f"{i}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            from PIL import Image

            Image.open(sample.path).convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(
                target
            )
            added.train.append(type(sample)(target, sample.label))
        again = fit(added, params, RunContext(make_embedder("mobilenet_v2", cold)))
        rows.append(("retrain after adding 10 images (warm cache)", f"{again.train_seconds:.2f} s"))

        tick = time.perf_counter()
        export_model_zip(result, scratch / "model.zip")
        rows.append(("export + parity check", f"{time.perf_counter() - tick:.2f} s"))
        rows.append(
            (
                "backbone alone, ONNX Runtime, batch 32 (no decoding)",
                f"{backbone_throughput(warm):.0f} images/s",
            )
        )
        rows.append(
            (
                "predict p50, one image through the exported model",
                f"{predict_p50(scratch / 'model.zip', paths[0]):.1f} ms",
            )
        )

        fast_epoch, fast_acc = finetune_epoch_seconds(
            data, cold, fast=True, epochs=args.finetune_epochs
        )
        slow_epoch, slow_acc = finetune_epoch_seconds(
            data, cold, fast=False, epochs=args.finetune_epochs
        )
        rows.append(
            (
                f"fine-tune epoch, ours (channels_last, bf16 autocast where supported), {args.finetune_epochs} epochs",
                f"{fast_epoch:.2f} s median (val acc {fast_acc:.3f})",
            )
        )
        rows.append(
            (
                "fine-tune epoch, fp32 NCHW eager, same run",
                f"{slow_epoch:.2f} s median (val acc {slow_acc:.3f})",
            )
        )
        rows.append(("  speed-up", f"{slow_epoch / fast_epoch:.2f}x"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    device = resolve_device("auto").type
    print(
        f"Teachbox engine benchmark, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, device {device}, torch {torch.__version__}, {n} images from {args.data}"
    )
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")


if __name__ == "__main__":
    main()
