"""The training core: transfer learning and fine-tuning, with typed events and cancellation.

No web imports. `fit` takes a dataset, a TrainParams and a RunContext; it reports through the
context's `on_event` and stops between batches when its `should_stop()` turns true (raising
TrainingCancelled).
"""

from __future__ import annotations

import gc
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.engine.backbones import build_backbone, get_spec
from app.engine.context import RunContext
from app.engine.dataset import Dataset
from app.engine.embeddings import resolve_device
from app.engine.events import Log, Started
from app.engine.finetune import (
    run_finetune,
)
from app.engine.head import (
    embed_dataset,
    train_head,
)
from app.engine.metrics import SkippedImage, TrainMetrics, classification_metrics
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
    on_event, should_stop = run.on_event, run.should_stop
    target = resolve_device(run.device)
    spec = get_spec(params.backbone)
    stages = ["embed", "head"] + (["finetune"] if params.mode is Mode.FINETUNE else []) + ["export"]
    on_event(
        Started(
            mode=params.mode.value,
            backbone=params.backbone,
            device=target.type,
            n_train=len(data.train),
            n_val=len(data.val),
            labels=data.labels,
            epochs=params.resolved_epochs,
            stages=stages,
        )
    )
    clean, emb = embed_dataset(data, run.embedder, on_event, should_stop)
    # Seeded after embedding, which builds a backbone (drawing random numbers) only when the
    # cache is cold; every random draw of training comes from this generator.
    generator = seed_everything(params.seed)
    head = make_head(spec.feature_dim, len(clean.labels), generator)
    head_epochs = params.resolved_epochs if params.mode is Mode.TRANSFER else FINETUNE_HEAD_EPOCHS
    history = train_head(head, emb, params, head_epochs, "head", on_event, should_stop, generator)
    model = Classifier(build_backbone(params.backbone, run.weights_path).eval(), head)
    if params.mode is Mode.FINETUNE:
        on_event(
            Log(
                message=f"Fine-tuning the last {params.resolved_unfreeze_blocks} blocks on {target.type}."
            )
        )
        more, logits, targets = run_finetune(
            model, clean, params, target, on_event, should_stop, generator, run.max_pixels
        )
        history += more
        probs = torch.softmax(logits, 1)
        model.to("cpu").to(memory_format=torch.contiguous_format)
    else:
        with torch.no_grad():
            probs = torch.softmax(head(emb.x_val), 1)
        targets = emb.y_val
    model.eval()
    evaluation = classification_metrics(probs, targets, clean.labels, [s.path for s in clean.val])
    seconds = time.perf_counter() - started
    metrics = TrainMetrics(
        **evaluation.model_dump(),
        n_train=len(clean.train),
        epochs_run=len(history),
        train_seconds=round(seconds, 3),
        device=target.type,
        history=history,
        skipped=[SkippedImage(path=str(p), reason=r) for p, r in clean.skipped],
    )
    return TrainResult(
        labels=clean.labels,
        params=params,
        model=model,
        history=history,
        metrics=metrics,
        val_paths=[s.path for s in clean.val],
        train_seconds=seconds,
        device=target.type,
        skipped=clean.skipped,
        val_labels=[s.label for s in clean.val],
        train_paths=[s.path for s in clean.train],
    )
