"""Training to a model zip, with exactly one terminal event: what the CLI and the web worker both run."""

from __future__ import annotations

import errno
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.engine.context import RunContext
from app.engine.dataset import Dataset
from app.engine.errors import StorageFull, TeachboxError, TrainingCancelled, unexpected_failure
from app.engine.events import Cancelled, Done, EventSink, Failed, Progress
from app.engine.export import export_model_zip
from app.engine.params import TrainParams
from app.engine.training import TrainResult, fit

# Metrics that belong in the terminal event; the full history is already in the epoch events.
SUMMARY_KEYS = {
    "val_accuracy",
    "estimate",
    "calibration",
    "cross_validation",
    "per_class",
    "confusion_matrix",
    "labels",
    "misclassified",
    "n_train",
    "n_val",
    "epochs_run",
    "train_seconds",
    "export_seconds",
    "device",
    "history",
    "skipped",
    "parity",
    "int8",
}


def train_to_zip(
    dataset: Dataset,
    params: TrainParams,
    out_path: Path,
    run: RunContext,
) -> dict[str, Any]:
    """Train, export and verify; emit Done, Failed or Cancelled last; return the zip's metadata."""
    on_event = run.on_event
    with terminal_event_on_error(on_event, Cancelled(), "Training", "the server log"):
        result = fit(dataset, params, run)
        if run.should_stop():
            raise TrainingCancelled
        on_event(Progress(stage="export", done=0, total=1))
        tick = time.perf_counter()
        exported = _export(result, out_path, run.max_pixels, run.tflite)
        metrics = result.metrics.model_copy(
            update={
                "export_seconds": round(time.perf_counter() - tick, 3),
                "parity": exported["parity"],
                "int8": exported.get("int8"),
            }
        )
        metadata = {**exported, "metrics": metrics.model_dump(mode="json")}
        on_event(Progress(stage="export", done=1, total=1))
    summary = metrics.model_dump(mode="json", include=SUMMARY_KEYS)
    on_event(
        Done(
            val_accuracy=metrics.val_accuracy,
            train_seconds=result.train_seconds,
            metrics=summary,
        )
    )
    return metadata


@contextmanager
def terminal_event_on_error(
    on_event: EventSink, cancelled: Cancelled, what: str, log: str
) -> Iterator[None]:
    """Report an exception as the run's one terminal event (Cancelled or Failed), then re-raise it;
    the caller emits Done when the block succeeds."""
    try:
        yield
    except TrainingCancelled:
        on_event(cancelled)
        raise
    except TeachboxError as exc:
        on_event(Failed(error=exc.message))
        raise
    except Exception as exc:
        on_event(Failed(error=unexpected_failure(what, exc, log)))
        raise


def _export(result: TrainResult, out_path: Path, max_pixels: int, tflite: bool) -> dict[str, Any]:
    """Write the model zip; a full disk becomes a sentence (the zip is written aside, then renamed)."""
    try:
        return export_model_zip(result, out_path, max_pixels=max_pixels, tflite=tflite)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise StorageFull(
                "The disk is full, so the model could not be saved. Free some space, then train again."
            ) from None
        raise
