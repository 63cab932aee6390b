"""Should cross-validation choose the head's weight decay too? Each value of a grid, and the grid's
own choice, against the shipped constant, on each set's untouched `val` folder.

    .venv/bin/python bench/bench_weight_decay.py [--sets flowers-dev clothing-dev bccd-cells ...]
        [--seeds 0 1 2 3 4] [--per-class 100] [--cache-dir DIR]

For each set, seed and weight decay, transfer learning runs as shipped (`fit`: 5-fold
cross-validation on the cached embeddings chooses the epochs, then the head trains on every
image), with only `app.engine.head.WEIGHT_DECAY` changed; the shipped head is scored on `val`,
which no choice sees. "grid" is what a cross-validated grid would ship: the weight decay whose
out-of-fold accuracy at its chosen epoch is highest (ties: lower out-of-fold loss), with that
out-of-fold accuracy as its estimate. Training images are capped at --per-class a class (a seeded
choice) as in bench_finetune_far.py; the far sets come from bench/far_datasets.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.engine import head  # noqa: E402 - the repository root is added just above
from app.engine.context import RunContext  # noqa: E402
from app.engine.dataset import from_items, scan_folder  # noqa: E402
from app.engine.embeddings import Embedder, make_embedder  # noqa: E402
from app.engine.params import TrainParams  # noqa: E402
from app.engine.training import fit  # noqa: E402
from bench.bench_estimate import vectors  # noqa: E402
from bench.bench_finetune_far import seeded_cap  # noqa: E402

GRID = (0.0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1)
SHIPPED = head.WEIGHT_DECAY
ROOTS = {
    "flowers-dev": ROOT.parent / "shared" / "datasets" / "flowers-dev",
    "clothing-dev": ROOT.parent / "shared" / "datasets" / "clothing-dev",
    "bccd-cells": Path("/work/data-far/bccd-cells"),
    "deeppcb-defects": Path("/work/data-far/deeppcb-defects"),
    "pneumonia-xray": Path("/work/data-far/pneumonia-xray"),
}


def capped(folder: Path, per_class: int | None, seed: int) -> list[tuple[Path, str]]:
    """Every (image, class) of `folder`, at most `per_class` a class: bench_finetune_far.py's choice."""
    labels, items = scan_folder(folder)
    return [
        (path, label)
        for label in labels
        for path in seeded_cap([p for p, n in items if n == label], per_class, seed, label)
    ]


def one_run(
    embedder: Embedder,
    items: list[tuple[Path, str]],
    seed: int,
    decay: float,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
) -> dict:
    params = TrainParams(seed=seed)
    data = from_items(items, val_fraction=params.val_split, seed=seed)
    tick = time.perf_counter()
    with mock.patch.object(head, "WEIGHT_DECAY", decay):
        result = fit(data, params, RunContext(embedder))
    seconds = time.perf_counter() - tick
    estimate, cv = result.metrics.estimate, result.metrics.cross_validation
    assert estimate is not None and cv is not None
    with torch.no_grad():
        unseen = (result.model.head(x_val).argmax(1) == y_val).float().mean().item()
    return {
        "decay": decay,
        "oof": estimate.accuracy,
        "oof_loss": result.metrics.history[cv.epochs_chosen - 1]["val_loss"],
        "epochs": cv.epochs_chosen,
        "unseen": unseen,
        "seconds": seconds,
    }


def spread(values: list[float]) -> str:
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=list(ROOTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument(
        "--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "teachbox-bench-decay"
    )
    args = parser.parse_args()
    embedder = make_embedder("mobilenet_v2", args.cache_dir)
    rows: dict[str, list[list[dict]]] = {}
    for name in args.sets:
        _, val_items = scan_folder(ROOTS[name] / "val")
        labels = sorted({n for _, n in val_items})
        x_val = vectors(embedder, [p for p, _ in val_items])
        y_val = torch.tensor([labels.index(n) for _, n in val_items])
        for seed in args.seeds:
            items = capped(ROOTS[name] / "train", args.per_class, seed)
            runs = [one_run(embedder, items, seed, d, x_val, y_val) for d in GRID]
            rows.setdefault(name, []).append(runs)
            print(json.dumps({"set": name, "seed": seed, "runs": runs}), flush=True)
    header = " | ".join(f"{d:g}" + (" (shipped)" if d == SHIPPED else "") for d in GRID)
    print(f"\n| set | {header} | grid's choice | grid's estimate | grid − shipped, points |")
    print("|---|" + "---|" * (len(GRID) + 3))
    for name, seeds in rows.items():
        by_decay = [spread([runs[i]["unseen"] for runs in seeds]) for i in range(len(GRID))]
        chosen = [max(runs, key=lambda r: (r["oof"], -r["oof_loss"])) for runs in seeds]
        shipped = [next(r for r in runs if r["decay"] == SHIPPED) for runs in seeds]
        gaps = [(c["unseen"] - s["unseen"]) * 100 for c, s in zip(chosen, shipped, strict=True)]
        decays = ", ".join(f"{c['decay']:g}" for c in chosen)
        print(
            f"| {name} | {' | '.join(by_decay)} | {spread([c['unseen'] for c in chosen])} "
            f"({decays}) | {spread([c['oof'] for c in chosen])} "
            f"| {statistics.fmean(gaps):+.1f} ({', '.join(f'{g:+.1f}' for g in gaps)}) |"
        )
    seconds = [r["seconds"] for seeds in rows.values() for runs in seeds for r in runs]
    print(
        f"\nOne cross-validated fit: median {statistics.median(seconds):.2f} s; a grid of "
        f"{len(GRID)} costs {len(GRID)} times that."
    )


if __name__ == "__main__":
    main()
