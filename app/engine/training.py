"""The training core: transfer learning and fine-tuning, with typed events and cancellation.

No web imports. `fit` takes a dataset, a TrainParams and a RunContext; it reports through the
context's `on_event` and stops between batches when its `should_stop()` turns true (raising
TrainingCancelled).
"""

from __future__ import annotations

import gc
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.engine.backbones import build_backbone, get_spec
from app.engine.calibration import Calibration, calibrate, fold_temperature, sure_figures
from app.engine.context import RunContext
from app.engine.crossval import cross_validate
from app.engine.dataset import Dataset, Sample
from app.engine.embeddings import resolve_device
from app.engine.estimate import (
    HELD_OUT_FOLDER,
    Estimate,
    cross_validation_method,
    estimate,
    held_out_split,
)
from app.engine.events import Log, Started
from app.engine.finetune import run_finetune
from app.engine.head import Embedded, embed_dataset, train_head, train_head_for
from app.engine.metrics import (
    CrossValidationSummary,
    SkippedImage,
    TrainMetrics,
    classification_metrics,
)
from app.engine.network import Classifier, make_head
from app.engine.params import Mode, TrainParams

FINETUNE_HEAD_EPOCHS = 30


@dataclass
class TrainResult:
    labels: list[str]
    params: TrainParams
    model: Classifier
    history: list[dict[str, Any]]
    metrics: TrainMetrics
    val_paths: list[Path]
    train_seconds: float
    device: str
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    val_labels: list[int] = field(default_factory=list)
    train_paths: list[Path] = field(default_factory=list)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


# What PyTorch says when an accelerator runs out of memory (CUDA, cuBLAS, Apple's MPS).
_OUT_OF_MEMORY_MARKERS = ("out of memory", "CUBLAS_STATUS_ALLOC_FAILED")


def is_out_of_memory(exc: BaseException) -> bool:
    """True for an accelerator running out of memory: an error a smaller batch may avoid."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(
        marker in str(exc) for marker in _OUT_OF_MEMORY_MARKERS
    )


def release_accelerator_memory() -> None:
    """Hand the memory PyTorch's caching allocator keeps back to the device, before trying again."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def fit(data: Dataset, params: TrainParams, run: RunContext) -> TrainResult:
    """Train a classifier on `data` as `params` says; raise TrainingCancelled when stopped."""
    started = time.perf_counter()
    target = resolve_device(run.device)
    transfer = params.mode is Mode.TRANSFER
    cross_validated = transfer and not data.val_held_out
    run.on_event(
        Started(
            mode=params.mode.value,
            backbone=params.backbone,
            device=target.type,
            n_train=len(data.labelled if transfer else data.train),
            n_val=len(data.labelled if cross_validated else data.val),
            validation="cross-validation" if cross_validated else "held-out",
            labels=data.labels,
            epochs=params.resolved_epochs,
            stages=["embed", "head", "refit", "export"]
            if transfer
            else ["embed", "head", "finetune", "export"],
        )
    )
    clean, emb = embed_dataset(data, run.embedder, run.on_event, run.should_stop)
    # Seeded after embedding, which builds a backbone (drawing random numbers) only when the
    # cache is cold; every random draw of training comes from this generator.
    generator = seed_everything(params.seed)
    fitted = (
        fit_transfer(clean, emb, params, run, generator)
        if transfer
        else fit_finetune(clean, emb, params, run, generator, target)
    )
    fitted.model.eval()
    evaluation = classification_metrics(
        fitted.probs, fitted.targets, clean.labels, [s.path for s in fitted.measured]
    )
    seconds = time.perf_counter() - started
    metrics = TrainMetrics(
        **evaluation.model_dump(),
        estimate=fitted.estimate,
        calibration=fitted.calibration,
        cross_validation=fitted.cross_validation,
        n_train=len(fitted.trained_on),
        epochs_run=len(fitted.history),
        train_seconds=round(seconds, 3),
        device=target.type,
        history=fitted.history,
        skipped=[SkippedImage(path=str(p), reason=r) for p, r in clean.skipped],
    )
    return TrainResult(
        labels=clean.labels,
        params=params,
        model=fitted.model,
        history=fitted.history,
        metrics=metrics,
        val_paths=[s.path for s in fitted.measured],
        train_seconds=seconds,
        device=target.type,
        skipped=clean.skipped,
        val_labels=[s.label for s in fitted.measured],
        train_paths=[s.path for s in fitted.trained_on],
    )


@dataclass
class Fitted:
    """A trained, calibrated model and the honest predictions it is judged by."""

    model: Classifier
    history: list[dict[str, Any]]
    trained_on: list[Sample]  # what the shipped model trained on
    measured: list[Sample]  # the images the estimate counts, in the order of `probs`
    probs: torch.Tensor  # calibrated probabilities from a model that did not train on them
    targets: torch.Tensor
    estimate: Estimate
    calibration: Calibration
    cross_validation: CrossValidationSummary | None = None


def fit_transfer(
    data: Dataset, emb: Embedded, params: TrainParams, run: RunContext, generator: torch.Generator
) -> Fitted:
    """Choose the epochs by k-fold cross-validation, then train the shipped head on every image.

    With held-out validation images, the folds and the refit use the training images only, and
    the estimate is measured on the held-out ones.
    """
    held_out = data.val_held_out
    x = emb.x_train if held_out else torch.cat([emb.x_train, emb.x_val])
    y = emb.y_train if held_out else torch.cat([emb.y_train, emb.y_val])
    spec = get_spec(params.backbone)
    cv = cross_validate(
        x,
        y,
        len(data.labels),
        params,
        params.resolved_epochs,
        run.on_event,
        run.should_stop,
        generator,
    )
    run.on_event(
        Log(
            message=f"{cv.n_folds}-fold cross-validation chose {cv.epochs} epochs; "
            f"training the final head on all {len(y)} images."
        )
    )
    head = make_head(spec.feature_dim, len(data.labels), generator)
    train_head_for(head, x, y, params, cv.epochs, run.on_event, run.should_stop, generator)
    calibration, probs = calibrate(cv.logits, y, "out-of-fold predictions")
    measured, targets = data.labelled, y
    method = cross_validation_method(cv.n_folds, cv.folds_reduced)
    if held_out:
        with torch.no_grad():
            probs = torch.softmax(head(emb.x_val) / calibration.temperature, 1)
        measured, targets, method = data.val, emb.y_val, HELD_OUT_FOLDER
        calibration = calibration.model_copy(
            update={
                **sure_figures(probs, targets, calibration.unsure_below),
                "measured_on": "the held-out validation images",
            }
        )
    fold_temperature(head, calibration.temperature)
    correct = int((probs.argmax(1) == targets).sum())
    return Fitted(
        model=Classifier(build_backbone(params.backbone, run.weights_path).eval(), head),
        history=cv.history,
        trained_on=data.labelled,
        measured=measured,
        probs=probs,
        targets=targets,
        estimate=estimate(correct, len(targets), method),
        calibration=calibration,
        cross_validation=CrossValidationSummary(
            folds=cv.n_folds, epochs_chosen=cv.epochs, max_epochs=params.resolved_epochs
        ),
    )


def unfrozen_blocks(params: TrainParams) -> str:
    """'all 19 blocks' or 'the last 8 blocks', for the job's log."""
    n = params.resolved_unfreeze_blocks
    every = len(get_spec(params.backbone).block_names)
    return f"all {n} blocks" if n == every else f"the last {n} blocks"


def transfer_params(params: TrainParams) -> TrainParams:
    """The same run's parameters for transfer learning, with transfer learning's own epoch count."""
    return params.model_copy(update={"mode": Mode.TRANSFER, "epochs": None})


def fit_finetune(
    data: Dataset,
    emb: Embedded,
    params: TrainParams,
    run: RunContext,
    generator: torch.Generator,
    target: torch.device,
) -> Fitted:
    """Head first, then the last blocks; both choose their epoch on the held-out images, which
    also give the estimate (too costly to repeat k times).

    Where fine-tuning ends below the head it started from, the transfer-learning model ships
    instead: that head trained on the training split only, transfer learning's on every image
    (on flowers and PCB defects, the head-only model scored up to 5 points below it).
    """
    spec = get_spec(params.backbone)
    head = make_head(spec.feature_dim, len(data.labels), generator)
    history = train_head(
        head, emb, params, FINETUNE_HEAD_EPOCHS, "head", run.on_event, run.should_stop, generator
    )
    model = Classifier(build_backbone(params.backbone, run.weights_path).eval(), head)
    run.on_event(Log(message=f"Fine-tuning {unfrozen_blocks(params)} on {target.type}."))
    outcome = run_finetune(
        model, data, params, target, run.on_event, run.should_stop, generator, run.max_pixels
    )
    if not outcome.improved:
        run.on_event(
            Log(
                level="warning",
                message="Shipping the transfer-learning model instead: its head trains on every "
                "image, the head fine-tuning started from on the training split only.",
            )
        )
        # Seeded afresh, so that it is the very model a transfer run with these parameters ships.
        fallback = fit_transfer(
            data, emb, transfer_params(params), run, seed_everything(params.seed)
        )
        return replace(fallback, history=history + outcome.history + fallback.history)
    model.to("cpu").to(memory_format=torch.contiguous_format)
    logits, targets = outcome.logits, outcome.targets
    calibration, probs = calibrate(logits.float().cpu(), targets.cpu(), "the held-out images")
    fold_temperature(model.head, calibration.temperature)
    method = (
        "held-out validation folder; the shipped model did not train on it, and its epoch was "
        "chosen on it (slightly optimistic)"
        if data.val_held_out
        else held_out_split(params.val_split)
    )
    correct = int((probs.argmax(1) == targets.cpu()).sum())
    return Fitted(
        model=model,
        history=history + outcome.history,
        trained_on=data.train,
        measured=data.val,
        probs=probs,
        targets=targets.cpu(),
        estimate=estimate(correct, len(targets), method),
        calibration=calibration,
    )
