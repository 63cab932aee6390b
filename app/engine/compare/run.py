"""Transfer learning against fine-tuning on the same split: both models, a report and a recommendation.

Both runs share the dataset's split, the seed and the embeddings cache, so the second run embeds
nothing. Their events go to one stream, each tagged with its `run` ("transfer" or "finetune");
the data-health check between the runs emits untagged events. The stream ends with exactly one
terminal event: Done (its metrics are the report), Failed or Cancelled.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from app.engine.compare.measure import (
    predict_latency_ms,
    validation_outcomes,
)
from app.engine.compare.report import CompareReport, mode_report
from app.engine.compare.rule import (
    recommend,
)
from app.engine.context import RunContext
from app.engine.dataset import Dataset
from app.engine.errors import InvalidInput, TeachboxError
from app.engine.events import (
    TERMINAL_TYPES,
    Cancelled,
    Done,
    EventSink,
    Log,
    Progress,
    RunEvent,
)
from app.engine.export import write_json
from app.engine.health.report import HealthReport, analyse_health
from app.engine.params import MODE_INFO, Mode, TrainParams
from app.engine.pipeline import terminal_event_on_error, train_to_zip

MODES = (Mode.TRANSFER, Mode.FINETUNE)


def mode_params(
    params: TrainParams, mode: Mode, epochs: Mapping[Mode, int] | None = None
) -> TrainParams:
    """The shared parameters for one mode; `epochs` overrides the epochs per mode."""
    values = {**params.model_dump(), "mode": mode}
    if epochs and mode in epochs:
        values["epochs"] = epochs[mode]
    try:
        return TrainParams.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(f"Invalid {mode.value} parameters: {problems}.") from None


class RunEvents:
    """Forwards one run's events tagged with the run, holds back its terminal event, and times its embedding."""

    def __init__(self, on_event: EventSink, run: Mode) -> None:
        self.on_event, self.run = on_event, run
        self.terminal: list[Any] = []
        self.embed_seconds = 0.0
        self._embed_started: float | None = None

    def __call__(self, event: Any) -> None:
        if getattr(event, "type", None) in TERMINAL_TYPES:
            self.terminal.append(event)
            return
        if isinstance(event, Progress) and event.stage == "embed" and event.total:
            self._time_embedding(event)
        self.on_event(
            event.model_copy(update={"run": self.run.value})
            if isinstance(event, RunEvent)
            else event
        )

    def _time_embedding(self, event: Progress) -> None:
        now = time.perf_counter()
        if event.done == 0:
            self._embed_started = now
        elif event.done >= event.total and self._embed_started is not None:
            self.embed_seconds = now - self._embed_started


def compare_modes(
    dataset: Dataset,
    params: TrainParams,
    out_dir: Path,
    run: RunContext,
    epochs: Mapping[Mode, int] | None = None,
) -> dict[str, Any]:
    """Train both modes on `dataset`'s split; write transfer.zip, finetune.zip and report.json; return the report."""
    cancelled = Cancelled(message="The comparison was cancelled.")
    with terminal_event_on_error(run.on_event, cancelled, "The comparison", "the log"):
        report = _compare(dataset, params, out_dir, run, epochs)
    chosen = report["modes"][report["recommendation"]]
    run.on_event(
        Done(val_accuracy=chosen["val_accuracy"], train_seconds=report["seconds"], metrics=report)
    )
    return report


def _compare(
    dataset: Dataset,
    params: TrainParams,
    out_dir: Path,
    run: RunContext,
    epochs: Mapping[Mode, int] | None,
) -> dict[str, Any]:
    started = time.perf_counter()
    # McNemar pairs the two models on the same images, which neither may train on: transfer
    # learning, which otherwise trains on every image, keeps the split's validation images apart.
    dataset = replace(dataset, val_held_out=True)
    run_params = {mode: mode_params(params, mode, epochs) for mode in MODES}
    out_dir.mkdir(parents=True, exist_ok=True)

    def train(number: int, mode: Mode) -> tuple[dict[str, Any], float]:
        run.on_event(
            Log(run=mode.value, message=f"Run {number} of 2: {MODE_INFO[mode].run_title}.")
        )
        return _train(dataset, run_params[mode], out_dir / f"{mode.value}.zip", run)

    runs = {Mode.TRANSFER: train(1, Mode.TRANSFER)}
    # Between the runs every embedding is cached, and the user reads the warnings while fine-tuning runs.
    health = analyse_health(
        dataset,
        embedder=run.embedder,
        params=run_params[Mode.TRANSFER],
        on_event=run.on_event,
        should_stop=run.should_stop,
    )
    for finding in health.findings:
        if finding.severity == "warning":
            run.on_event(Log(level="warning", message=finding.message))
    runs[Mode.FINETUNE] = train(2, Mode.FINETUNE)
    return summarise(
        dataset,
        {mode: metadata for mode, (metadata, _) in runs.items()},
        {mode: s for mode, (_, s) in runs.items()},
        out_dir,
        health,
        params.seed,
        started,
        run.max_pixels,
    )


def summarise(
    dataset: Dataset,
    runs: dict[Mode, dict[str, Any]],
    embed_seconds: dict[Mode, float],
    out_dir: Path,
    health: HealthReport,
    seed: int,
    started: float,
    max_pixels: int,
) -> dict[str, Any]:
    """Measure both exported models, apply the rule, and write report.json."""
    skipped = {entry["path"] for entry in runs[Mode.TRANSFER]["metrics"]["skipped"] or []}
    val = [s for s in dataset.val if str(s.path) not in skipped]
    paths, labels = [s.path for s in val], [s.label for s in val]
    zips = [out_dir / f"{mode.value}.zip" for mode in MODES]
    latency = dict(zip(MODES, predict_latency_ms(zips, paths[0]), strict=True))
    first_embed = max(embed_seconds.values())
    modes = {
        mode: mode_report(
            mode, runs[mode], zip_path, latency[mode], embed_seconds[mode], first_embed
        )
        for mode, zip_path in zip(MODES, zips, strict=True)
    }
    outcomes = {
        mode: validation_outcomes(runs[mode]["metrics"], paths, labels, zip_path, max_pixels)
        for mode, zip_path in zip(MODES, zips, strict=True)
    }
    choice = recommend(
        outcomes[Mode.TRANSFER],
        outcomes[Mode.FINETUNE],
        modes[Mode.TRANSFER].cost_seconds,
        modes[Mode.FINETUNE].cost_seconds,
    )
    report = CompareReport(
        labels=runs[Mode.TRANSFER]["labels"],
        n_train=runs[Mode.TRANSFER]["metrics"]["n_train"],
        n_val=len(paths),
        seed=seed,
        modes={mode.value: modes[mode] for mode in MODES},
        recommendation=choice.mode,
        reason=choice.reason,
        paired=choice.paired,
        health=health,
        seconds=round(time.perf_counter() - started, 3),
    ).model_dump(mode="json")
    write_json(out_dir / "report.json", report)
    return report


def _train(
    dataset: Dataset, params: TrainParams, out_path: Path, run: RunContext
) -> tuple[dict[str, Any], float]:
    """One run through train_to_zip: its metadata and the seconds it spent computing embeddings."""
    events = RunEvents(run.on_event, params.mode)
    try:
        metadata = train_to_zip(dataset, params, out_path, run.reporting_to(events))
    except TeachboxError as exc:
        raise exc.reworded(f"{MODE_INFO[params.mode].name} failed: {exc.message}") from exc
    return metadata, events.embed_seconds
