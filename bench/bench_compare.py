"""Compare benchmark: `compare_modes` against the two trainings run one after the other, in one run.

    .venv/bin/python bench/bench_compare.py [--data ../shared/datasets/flowers-dev/train] [--finetune-epochs 1] [--rounds 5]
                                            [--torch-threads 1]

"Separately" is what a user does without compare: `teachbox train --mode transfer`, then
`teachbox train --mode finetune` sharing the default embeddings cache (so the second run embeds
nothing either). Every round starts both from an empty embeddings cache, after an untimed warm-up
(the backbone's ONNX export, the photos in the page cache, a first fine-tuning); the two take turns
so that a busy machine slows both alike. The target is compare costing at most 1.1x the separate
runs: its extra work is the data-health check (with the learning curve), the latency measurement
and the paired scoring.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch

from app.engine.compare.run import compare_modes
from app.engine.context import RunContext
from app.engine.dataset import Dataset, from_folder
from app.engine.embeddings import make_embedder
from app.engine.params import Mode, TrainParams
from app.engine.pipeline import train_to_zip

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "flowers-dev" / "train"


def fresh_cache(scratch: Path, name: str, backbones: Path) -> Path:
    cache = scratch / name
    shutil.rmtree(cache, ignore_errors=True)
    shutil.copytree(backbones, cache / "backbones")
    return cache


def timed(work: Callable[[], object]) -> tuple[float, float, object]:
    """Wall seconds, CPU seconds of this process (all threads) and the result."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def run_separately(
    data: Dataset, params: TrainParams, epochs: dict[Mode, int], cache: Path, out: Path
) -> None:
    embedder = make_embedder("mobilenet_v2", cache)
    for mode in Mode:
        run_params = params.model_copy(update={"mode": mode, "epochs": epochs[mode]})
        train_to_zip(data, run_params, out / f"{mode.value}.zip", RunContext(embedder))


def run_compare(
    data: Dataset, params: TrainParams, epochs: dict[Mode, int], cache: Path, out: Path
) -> dict:
    return compare_modes(
        data, params, out, RunContext(make_embedder("mobilenet_v2", cache)), epochs=epochs
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--finetune-epochs", type=int, default=1)
    parser.add_argument("--transfer-epochs", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--torch-threads",
        type=int,
        help="torch intra-op threads (default: torch's own choice). On a shared, "
        "oversubscribed machine 1 gives steady timings; 2 threads there make the same run take 3 to 10 s.",
    )
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    params = TrainParams(seed=0)
    data = from_folder(args.data, None, params.val_split, params.seed)
    epochs = {Mode.TRANSFER: args.transfer_epochs, Mode.FINETUNE: args.finetune_epochs}
    scratch = Path(tempfile.mkdtemp(prefix="teachbox-bench-compare-"))
    try:
        warm = make_embedder("mobilenet_v2", scratch / "warm")
        warm.embed(
            [s.path for s in data.train + data.val]
        )  # the ONNX export, the page cache, the first-call costs
        train_to_zip(
            data,
            params.model_copy(update={"mode": Mode.FINETUNE, "epochs": 1}),
            scratch / "warm.zip",
            RunContext(warm),
        )
        backbones = scratch / "warm" / "backbones"
        times: dict[str, list[tuple[float, float]]] = {"separate": [], "compare": []}
        report: dict = {}
        overheads: list[float] = []
        for round_ in range(args.rounds):
            for kind in ("separate", "compare") if round_ % 2 == 0 else ("compare", "separate"):
                cache = fresh_cache(scratch, f"cache-{kind}", backbones)
                out = scratch / f"out-{kind}-{round_}"
                work = run_separately if kind == "separate" else run_compare
                wall, cpu, result = timed(
                    lambda work=work, cache=cache, out=out: work(data, params, epochs, cache, out)
                )
                times[kind].append((wall, cpu))
                if kind == "compare":
                    report = result
                    overheads.append(report["seconds"] - run_seconds(report))
        print_results(args, data, times, report, overheads)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_seconds(report: dict) -> float:
    """Train plus export seconds of both runs inside a comparison."""
    return sum(m["train_seconds"] + (m["export_seconds"] or 0) for m in report["modes"].values())


def print_results(
    args: argparse.Namespace,
    data: Dataset,
    times: dict[str, list[tuple[float, float]]],
    report: dict,
    overheads: list[float],
) -> None:
    separate, together = times["separate"], times["compare"]
    print(
        f"# bench_compare {datetime.now(UTC).isoformat(timespec='seconds')} on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, load average now {os.getloadavg()[0]:.1f}"
    )
    print(
        f"data: {args.data} ({len(data.train)} train / {len(data.val)} validation), epochs transfer {args.transfer_epochs}, "
        f"finetune {args.finetune_epochs}, {args.rounds} rounds (order alternating)"
    )
    print(
        f"{'wall s, two trainings one after the other':<46}"
        + "".join(f"{w:8.1f}" for w, _ in separate)
    )
    print(f"{'wall s, compare':<46}" + "".join(f"{w:8.1f}" for w, _ in together))
    print(
        f"{'cpu s, two trainings one after the other':<46}"
        + "".join(f"{c:8.1f}" for _, c in separate)
    )
    print(f"{'cpu s, compare':<46}" + "".join(f"{c:8.1f}" for _, c in together))
    paired = [c[0] / s[0] for c, s in zip(together, separate, strict=True)]
    print(
        f"compare / separately, wall: best-of-rounds {min(w for w, _ in together) / min(w for w, _ in separate):.3f}, "
        f"median of paired rounds {statistics.median(paired):.3f}; cpu: median {statistics.median(c for _, c in together) / statistics.median(c for _, c in separate):.3f}"
    )
    overhead, separately = statistics.median(overheads), statistics.median(w for w, _ in separate)
    print(
        "compare's own overhead (its seconds minus its runs' train + export), per round: "
        + " ".join(f"{o:.2f}" for o in overheads)
        + f" s; median {overhead:.2f} s = {overhead / separately:.1%} of the separate runs' median"
    )
    modes = report["modes"]
    runs = run_seconds(report)
    print(
        f"last compare: runs {runs:.1f} s (train + export), health {report['health']['seconds']:.1f} s "
        f"(learning curve {report['health']['learning_curve']['seconds']:.1f} s), the rest {report['seconds'] - runs - report['health']['seconds']:.1f} s"
    )
    print(
        f"last compare: embedding {modes['transfer']['embed_seconds']:.1f} s; cost transfer {modes['transfer']['cost_seconds']:.1f} s, "
        f"finetune {modes['finetune']['cost_seconds']:.1f} s"
    )
    print(
        f"last compare: transfer {modes['transfer']['val_accuracy']:.3f}, finetune {modes['finetune']['val_accuracy']:.3f} -> "
        f"{report['recommendation']}: {report['reason']}"
    )


if __name__ == "__main__":
    main()
