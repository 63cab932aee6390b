"""Stratified k-fold cross-validation of the transfer head on cached embeddings.

The k heads train in lockstep, one epoch each in turn, so that after every epoch the pooled
out-of-fold curve is known and streamed as one `head` epoch event. The epoch count is chosen
on that curve by the shared keep-best rule (app.engine.best); the out-of-fold logits at that
epoch give every image a prediction from a head that never saw it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from app.engine.best import BestEpoch
from app.engine.context import StopCheck
from app.engine.events import EventSink
from app.engine.head import (
    EpochStats,
    epoch_event,
    evaluate_logits,
    head_epoch,
    head_optimiser,
    single_thread,
)
from app.engine.network import make_head
from app.engine.params import TrainParams

DEFAULT_FOLDS = 5


@dataclass
class CrossValidation:
    n_folds: int
    folds_reduced: bool  # fewer than DEFAULT_FOLDS because a class is small
    folds: list[int]  # the fold of each image, in the order given
    epochs: int  # the chosen epoch count
    logits: torch.Tensor  # out-of-fold logits at that epoch, one row per image
    history: list[dict[str, Any]]


def fold_count(labels: Sequence[int]) -> int:
    """DEFAULT_FOLDS, or fewer when a class has fewer images (each fold needs one of each)."""
    sizes = [n for n in torch.bincount(torch.tensor(list(labels))).tolist() if n]
    smallest = min(sizes)
    return max(2, min(DEFAULT_FOLDS, smallest))


def assign_folds(labels: Sequence[int], n_folds: int, generator: torch.Generator) -> list[int]:
    """Each class shuffled and dealt round the folds, continuing where the last class stopped,
    so that folds differ in size by at most one image."""
    folds = [0] * len(labels)
    dealt = 0
    for label in sorted(set(labels)):
        members = [i for i, y in enumerate(labels) if y == label]
        for rank in torch.randperm(len(members), generator=generator).tolist():
            folds[members[rank]] = dealt % n_folds
            dealt += 1
    return folds


@single_thread()
def cross_validate(
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    params: TrainParams,
    max_epochs: int,
    on_event: EventSink,
    should_stop: StopCheck,
    generator: torch.Generator,
) -> CrossValidation:
    """Train one head per fold for up to `max_epochs`; choose the epoch on the pooled out-of-fold curve."""
    n_folds = fold_count(y.tolist())
    folds = torch.tensor(assign_folds(y.tolist(), n_folds, generator))
    held = [torch.nonzero(folds == k).flatten() for k in range(n_folds)]
    kept = [torch.nonzero(folds != k).flatten() for k in range(n_folds)]
    heads = [make_head(x.shape[1], n_classes, generator) for _ in range(n_folds)]
    optimisers = [head_optimiser(head, params) for head in heads]
    best = BestEpoch()
    history: list[dict[str, Any]] = []
    for epoch in range(1, max_epochs + 1):
        tick = time.perf_counter()
        train = [
            head_epoch(head, opt, x[rows], y[rows], params, epoch, should_stop, generator)
            for head, opt, rows in zip(heads, optimisers, kept, strict=True)
        ]
        logits = torch.empty(len(y), n_classes)
        with torch.no_grad():
            for head, rows in zip(heads, held, strict=True):
                logits[rows] = head.eval()(x[rows])
        pooled = evaluate_logits(logits, y)
        event = epoch_event("head", epoch, max_epochs, mean_stats(train, kept), pooled, tick)
        on_event(event)
        history.append(event.model_dump(exclude={"type"}))
        best.offer(epoch, pooled.acc, pooled.loss, logits)
    assert best.epoch is not None, "max_epochs is at least 1"
    return CrossValidation(
        n_folds=n_folds,
        folds_reduced=n_folds < DEFAULT_FOLDS,
        folds=folds.tolist(),
        epochs=best.epoch,
        logits=best.kept,
        history=history,
    )


def mean_stats(stats: list[EpochStats], rows: list[torch.Tensor]) -> EpochStats:
    """The folds' training loss and accuracy, weighted by how many images each trained on."""
    sizes = [len(r) for r in rows]
    total = sum(sizes)
    return EpochStats(
        sum(s.loss * n for s, n in zip(stats, sizes, strict=True)) / total,
        sum(s.acc * n for s, n in zip(stats, sizes, strict=True)) / total,
    )
