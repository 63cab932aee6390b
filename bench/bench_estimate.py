"""Is the headline honest? Transfer learning as shipped now against the old 85 % split and the
hand-written linear probe, on each set's untouched `val` folder.

    .venv/bin/python bench/bench_estimate.py [--sets flowers-dev clothing-dev] [--seeds 0 1 2 3 4]
                                             [--no-probe] [--cache-dir DIR]

For each set and seed:
- new: `fit` on the `train` folder (5-fold cross-validation chooses the epochs, the head refits on
  every image); its `estimate` interval, and the accuracy measured on `val` (inside or not);
  on `val`, the accuracy of all answers, of those at or above `unsure_below`, and their share.
- old: what Teachbox shipped before: the head trained on 85 % of `train`, the epoch kept by the
  best accuracy on the other 15 %, whose accuracy was the headline; and its accuracy on `val`.
The probe is /work/shared/tools/reference_probe.py (Adam 50 epochs on every training image, the
mean of 5 head seeds), run once per set. Everything is measured on the same cached embeddings;
the shipped head's output is what model.onnx computes (the export's parity check holds it to that).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from app.engine.context import RunContext
from app.engine.dataset import from_folder
from app.engine.embeddings import Embedder, make_embedder
from app.engine.head import Embedded, train_head
from app.engine.network import make_head
from app.engine.params import TrainParams
from app.engine.training import fit, seed_everything

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
PROBE = ROOT.parent / "shared" / "tools" / "reference_probe.py"


def vectors(embedder: Embedder, paths: list[Path]) -> torch.Tensor:
    return torch.from_numpy(embedder.embed(paths).matrix(paths)).float()


def unseen(embedder: Embedder, folder: Path) -> tuple[torch.Tensor, torch.Tensor]:
    data = from_folder(folder / "train", folder / "val")
    return vectors(embedder, [s.path for s in data.val]), torch.tensor([s.label for s in data.val])


def new_run(
    embedder: Embedder, folder: Path, seed: int, x_val: torch.Tensor, y_val: torch.Tensor
) -> dict:
    params = TrainParams(seed=seed)
    result = fit(
        from_folder(folder / "train", None, params.val_split, seed), params, RunContext(embedder)
    )
    estimate, calibration = result.metrics.estimate, result.metrics.calibration
    assert estimate is not None and calibration is not None
    with torch.no_grad():
        probs = torch.softmax(result.model.head(x_val), 1)  # the temperature is folded in
    confidence, predicted = probs.max(1)
    correct = (predicted == y_val).float()
    sure = confidence >= calibration.unsure_below
    accuracy = correct.mean().item()
    return {
        "estimate": estimate.accuracy,
        "low": estimate.low,
        "high": estimate.high,
        "unseen": accuracy,
        "inside": estimate.low <= accuracy <= estimate.high,
        "n_train": result.metrics.n_train,
        "epochs": result.metrics.cross_validation.epochs_chosen
        if result.metrics.cross_validation
        else None,
        "temperature": calibration.temperature,
        "unsure_below": calibration.unsure_below,
        "sure_acc": correct[sure].mean().item() if bool(sure.any()) else float("nan"),
        "sure_share": sure.float().mean().item(),
        "oof_sure_acc": calibration.accuracy_sure,
        "oof_share": calibration.share_sure,
    }


def old_run(
    embedder: Embedder, folder: Path, seed: int, x_val: torch.Tensor, y_val: torch.Tensor
) -> dict:
    """The previous recipe: 85 % to train, the best epoch on 15 %, that 15 %'s accuracy reported."""
    params = TrainParams(seed=seed)
    data = from_folder(folder / "train", None, params.val_split, seed)
    emb = Embedded(
        vectors(embedder, [s.path for s in data.train]),
        torch.tensor([s.label for s in data.train]),
        vectors(embedder, [s.path for s in data.val]),
        torch.tensor([s.label for s in data.val]),
    )
    generator = seed_everything(seed)
    head = make_head(emb.x_train.shape[1], len(data.labels), generator)
    history = train_head(
        head, emb, params, params.resolved_epochs, "head", lambda e: None, lambda: False, generator
    )
    with torch.no_grad():
        accuracy = (head(x_val).argmax(1) == y_val).float().mean().item()
    return {
        "reported": max(h["val_acc"] for h in history),
        "n_val": len(data.val),
        "unseen": accuracy,
        "n_train": len(data.train),
    }


def probe(folder: Path) -> float | None:
    out = subprocess.run(
        [sys.executable, str(PROBE), str(folder / "train"), str(folder / "val")],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["accuracy"]


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["flowers-dev", "clothing-dev"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--no-probe", action="store_true", help="Skip the reference probe.")
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "teachbox-bench-estimate"
    )
    args = parser.parse_args()
    embedder = make_embedder("mobilenet_v2", args.cache_dir)
    rows = []
    for name in args.sets:
        folder = DATASETS / name
        x_val, y_val = unseen(embedder, folder)
        reference = None if args.no_probe else probe(folder)
        for seed in args.seeds:
            new, old = (
                new_run(embedder, folder, seed, x_val, y_val),
                old_run(embedder, folder, seed, x_val, y_val),
            )
            rows.append({"set": name, "seed": seed, "new": new, "old": old, "probe": reference})
            print(json.dumps(rows[-1]), flush=True)
    print()
    print(
        "| set | seeds | new: unseen | new: estimate (95 % interval) | inside | old: reported (n) | old: unseen | probe: unseen | unseen, all | unseen, at or above unsure_below | share above |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.sets:
        mine = [r for r in rows if r["set"] == name]
        new = [r["new"] for r in mine]
        old = [r["old"] for r in mine]
        inside = sum(n["inside"] for n in new)
        intervals = ", ".join(f"{n['estimate']:.3f} ({n['low']:.3f}–{n['high']:.3f})" for n in new)
        print(
            f"| {name} | {len(mine)} | {spread([n['unseen'] for n in new])} | {intervals} | {inside}/{len(new)} "
            f"| {spread([o['reported'] for o in old])} ({old[0]['n_val']}) | {spread([o['unseen'] for o in old])} "
            f"| {mine[0]['probe'] if mine[0]['probe'] is not None else '-'} | {spread([n['unseen'] for n in new])} "
            f"| {spread([n['sure_acc'] for n in new])} | {spread([n['sure_share'] for n in new])} |"
        )


if __name__ == "__main__":
    main()
