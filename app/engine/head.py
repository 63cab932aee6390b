"""Transfer learning's core: a linear head trained with Adam on cached embeddings."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from app.engine.best import BestEpoch
from app.engine.context import StopCheck
from app.engine.dataset import Dataset, Sample, check_readable
from app.engine.embeddings import Embedder
from app.engine.errors import InvalidInput, TrainingCancelled
from app.engine.events import Epoch, EventSink, Log, Progress
from app.engine.params import TrainParams

# Fixed, not chosen: with the epochs chosen out of fold, every value from 0 to 1e-3 gave the same
# head within one image on five real sets, and a cross-validated grid gained nothing
# (bench/RESULTS.md, "Should cross-validation choose the weight decay too?").
WEIGHT_DECAY = 1e-4


@dataclass
class EpochStats:
    loss: float
    acc: float


def epoch_event(
    stage: str, epoch: int, epochs: int, train: EpochStats, val: EpochStats, started: float
) -> Epoch:
    return Epoch(
        stage=stage,
        epoch=epoch,
        epochs=epochs,
        train_loss=train.loss,
        train_acc=train.acc,
        val_loss=val.loss,
        val_acc=val.acc,
        seconds=time.perf_counter() - started,
    )


def check_finite(loss: torch.Tensor, epoch: int, params: TrainParams) -> None:
    if not torch.isfinite(loss):
        raise InvalidInput(
            f"Training diverged: the loss became {loss.item()} in epoch {epoch}. "
            f"Lower the learning rate (for example to {params.learning_rate / 10:g}) and train again."
        )


@dataclass
class Embedded:
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor


def embed_dataset(
    data: Dataset, embedder: Embedder, on_event: EventSink, should_stop: StopCheck
) -> tuple[Dataset, Embedded]:
    """Embeddings for every image (cached ones reused); unreadable images are reported and dropped."""
    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        elapsed = time.perf_counter() - started
        eta = elapsed / done * (total - done) if done else None
        on_event(Progress(stage="embed", done=done, total=total, eta_s=eta))

    paths = [s.path for s in data.train + data.val]
    result = embedder.embed(paths, on_progress=progress, should_stop=should_stop)
    for path, reason in [*data.skipped, *result.rejected.items()]:
        on_event(Log(level="warning", message=f"Skipped {path.name}: {reason}"))
    check_readable(data, result.rejected)
    clean = data.without(set(result.rejected))
    clean.skipped = data.skipped + list(result.rejected.items())
    if not clean.train or not clean.val:
        raise InvalidInput(
            "No readable images are left after skipping the unreadable ones. Add valid images."
        )

    def tensors(samples: Sequence[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(result.matrix([s.path for s in samples]).astype(np.float32))
        return x, torch.tensor([s.label for s in samples], dtype=torch.long)

    return clean, Embedded(*tensors(clean.train), *tensors(clean.val))


@torch.no_grad()
def evaluate_logits(logits: torch.Tensor, targets: torch.Tensor) -> EpochStats:
    loss = nn.functional.cross_entropy(logits, targets).item()
    return EpochStats(loss, (logits.argmax(1) == targets).float().mean().item())


_single_thread_lock = threading.RLock()


@contextmanager
def single_thread() -> Iterator[None]:
    """Run tiny tensor work on one thread: for a linear head, thread hand-offs cost more than they save.

    torch's thread count is process-wide, so users (a job's head, a health check's curve) take
    turns: each restores exactly the count it found.
    """
    with _single_thread_lock:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


@single_thread()
def train_head(
    head: nn.Module,
    emb: Embedded,
    params: TrainParams,
    epochs: int,
    stage: str,
    on_event: EventSink,
    should_stop: StopCheck,
    generator: torch.Generator,
) -> list[dict[str, Any]]:
    """Adam on cached embeddings; the head ends at its best validation epoch."""
    optimiser = head_optimiser(head, params)
    history: list[dict[str, Any]] = []
    best = BestEpoch(kept=copy.deepcopy(head.state_dict()))
    for epoch in range(1, epochs + 1):
        tick = time.perf_counter()
        train = head_epoch(
            head, optimiser, emb.x_train, emb.y_train, params, epoch, should_stop, generator
        )
        head.eval()
        val = evaluate_logits(head(emb.x_val), emb.y_val)
        event = epoch_event(stage, epoch, epochs, train, val, tick)
        on_event(event)
        history.append(event.model_dump(exclude={"type"}))
        best.offer(epoch, val.acc, val.loss, head.state_dict())
    head.load_state_dict(best.kept)
    head.eval()
    return history


def head_optimiser(head: nn.Module, params: TrainParams) -> torch.optim.Optimizer:
    return torch.optim.Adam(head.parameters(), lr=params.learning_rate, weight_decay=WEIGHT_DECAY)


def head_epoch(
    head: nn.Module,
    optimiser: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    params: TrainParams,
    epoch: int,
    should_stop: StopCheck,
    generator: torch.Generator,
) -> EpochStats:
    """One pass of Adam over (x, y) in a seeded order."""
    head.train()
    order = torch.randperm(len(y), generator=generator)
    # Sums stay tensors until the epoch ends: per-step .item() calls cost as much as the step itself.
    total_loss, correct = torch.zeros(()), torch.zeros((), dtype=torch.long)
    for start in range(0, len(order), params.batch_size):
        if should_stop():
            raise TrainingCancelled
        index = order[start : start + params.batch_size]
        logits = head(x[index])
        targets = y[index]
        loss = nn.functional.cross_entropy(logits, targets)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        total_loss += loss.detach() * len(index)
        correct += (logits.argmax(1) == targets).sum()
    check_finite(total_loss, epoch, params)
    return EpochStats(total_loss.item() / len(order), correct.item() / len(order))


@single_thread()
def train_head_for(
    head: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    params: TrainParams,
    epochs: int,
    on_event: EventSink,
    should_stop: StopCheck,
    generator: torch.Generator,
) -> list[EpochStats]:
    """Exactly `epochs` passes over every image given, with nothing held out (the refit)."""
    optimiser = head_optimiser(head, params)
    stats = []
    for epoch in range(1, epochs + 1):
        stats.append(head_epoch(head, optimiser, x, y, params, epoch, should_stop, generator))
        on_event(Progress(stage="refit", done=epoch, total=epochs))
    head.eval()
    return stats
