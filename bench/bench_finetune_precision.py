"""Fine-tuning far from ImageNet: our fast path (channels_last + bf16) against fp32 NCHW, and both modes.

    .venv/bin/python bench/bench_finetune_precision.py [--seeds 0 1] [--train-per-class 40]

On scikit-learn's scanned digits (greyscale 8x8, shown as 64x64 PNGs: far from ImageNet), with an
explicit validation folder of 40 images a class and the rest (about 1,000 images) never seen in
training, for each seed: transfer learning, then fine-tuning with the default recipe twice, the
way it runs here (channels_last, bf16 autocast on CPUs with native bf16) and as plain fp32 NCHW.
Every model is scored on the unseen images by its exported ONNX file, as `teachbox evaluate` does.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from baselines import fp32_nchw_eager  # noqa: E402 - bench/ is the script's folder, first on sys.path

from app.engine.context import RunContext  # noqa: E402
from app.engine.dataset import from_folder  # noqa: E402
from app.engine.embeddings import make_embedder  # noqa: E402
from app.engine.events import Epoch  # noqa: E402
from app.engine.finetune import bf16_supported_on_cpu  # noqa: E402 - the repository root is added just above
from app.engine.model_zip import evaluate_zip  # noqa: E402
from app.engine.params import Mode, TrainParams  # noqa: E402
from app.engine.pipeline import train_to_zip  # noqa: E402
from tests.conftest import make_digits_dataset  # noqa: E402


def train_and_score(
    train: Path, val: Path, unseen: Path, params: TrainParams, cache: Path, out: Path, fast: bool
) -> tuple[float, float, float]:
    """(unseen accuracy, validation accuracy, median seconds per fine-tune epoch or total seconds)."""
    epochs: list[float] = []

    def note(event: object) -> None:
        if isinstance(event, Epoch) and event.stage == "finetune":
            epochs.append(event.seconds)

    with fp32_nchw_eager() if not fast else nullcontext():
        started = time.perf_counter()
        metadata = train_to_zip(
            from_folder(train, val, seed=params.seed),
            params,
            out,
            RunContext(make_embedder(params.backbone, cache), on_event=note),
        )
        seconds = statistics.median(epochs) if epochs else time.perf_counter() - started
    return evaluate_zip(out, unseen)["accuracy"], metadata["metrics"]["val_accuracy"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--train-per-class", type=int, default=40)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="teachbox-precision-"))
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, torch {torch.__version__}, "
        f"bf16 on this CPU: {bf16_supported_on_cpu()}"
    )
    print(
        "| seed | transfer | fine-tune, ours | fine-tune, fp32 NCHW | epoch s ours / fp32 | speed-up |"
    )
    print("|---|---|---|---|---|---|")
    gains, differences, speedups = [], [], []
    for seed in args.seeds:
        train, val, unseen = make_digits_dataset(
            work / f"digits-{seed}", args.train_per_class, 40, seed=seed
        )
        cache = work / f"cache-{seed}"
        transfer, _, _ = train_and_score(
            train, val, unseen, TrainParams(seed=seed), cache, work / "t.zip", True
        )
        finetune = TrainParams(mode=Mode.FINETUNE, seed=seed)
        ours, ours_val, ours_s = train_and_score(
            train, val, unseen, finetune, cache, work / "f.zip", True
        )
        fp32, fp32_val, fp32_s = train_and_score(
            train, val, unseen, finetune, cache, work / "g.zip", False
        )
        gains.append(ours - transfer)
        differences.append(ours - fp32)
        speedups.append(fp32_s / ours_s)
        print(
            f"| {seed} | {transfer:.3f} | {ours:.3f} (val {ours_val:.3f}) | {fp32:.3f} (val {fp32_val:.3f}) "
            f"| {ours_s:.1f} / {fp32_s:.1f} | {fp32_s / ours_s:.2f}x |"
        )
    n_unseen = sum(1 for _ in unseen.rglob("*.png"))
    print(
        f"\nOn {n_unseen} unseen digits: fine-tuning gains {statistics.mean(gains) * 100:+.1f} points over "
        f"transfer on average; ours minus fp32: {statistics.mean(differences) * 100:+.2f} points on "
        f"average ({', '.join(f'{d * 100:+.1f}' for d in differences)}); epoch speed-up "
        f"{statistics.mean(speedups):.2f}x"
    )


if __name__ == "__main__":
    main()
