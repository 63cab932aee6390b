"""Many linear heads trained at once, one per subset of the training embeddings: the recipe of
`app.engine.head.train_head`, batched over heads, for the learning curve."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from app.engine.best import improves
from app.engine.context import StopCheck, never_stop
from app.engine.errors import TrainingCancelled
from app.engine.head import WEIGHT_DECAY, Embedded
from app.engine.params import TrainParams

# Each parameter with its Adam state: (parameter, first moment, second moment), heads first.
AdamState = list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
# Per head: (validation accuracy, validation loss), or (weight, bias).
PerHead = tuple[torch.Tensor, torch.Tensor]


def train_heads(
    emb: Embedded,
    subsets: Sequence[Sequence[int]],
    n_classes: int,
    params: TrainParams,
    epochs: int,
    should_stop: StopCheck = never_stop,
) -> torch.Tensor:
    """Train one linear head per subset of the training embeddings, all at once; their validation predictions.

    The recipe of `train_head` (Adam with L2 weight decay, minibatches, the best validation
    epoch kept), batched over heads: eight heads on flowers-dev take about 0.5 s together on one
    thread, about what one `train_head` call takes alone.
    """
    by_size = sorted(
        range(len(subsets)), key=lambda h: -len(subsets[h])
    )  # heads still batching form a prefix
    subsets = [subsets[h] for h in by_size]
    generator = torch.Generator().manual_seed(params.seed)
    n_heads, dim = len(subsets), emb.x_train.shape[1]
    bound = 1 / math.sqrt(dim)
    weight = (
        (torch.rand(n_heads, dim, n_classes, generator=generator) * 2 - 1) * bound
    ).requires_grad_()
    bias = (
        (torch.rand(n_heads, 1, n_classes, generator=generator) * 2 - 1) * bound
    ).requires_grad_()
    adam = [(p, torch.zeros_like(p), torch.zeros_like(p)) for p in (weight, bias)]
    steps = torch.zeros(n_heads, 1, 1)
    n_batches = [math.ceil(len(s) / params.batch_size) for s in subsets]
    best = (torch.full((n_heads,), -1.0), torch.full((n_heads,), math.inf))
    best_params = (weight.detach().clone(), bias.detach().clone())
    for _ in range(epochs):
        orders = [torch.tensor(s)[torch.randperm(len(s), generator=generator)] for s in subsets]
        for step in range(n_batches[0]):
            if should_stop():
                raise TrainingCancelled
            k = sum(n > step for n in n_batches)
            index, mask = batch_indices(orders[:k], step, params.batch_size)
            logits = torch.baddbmm(bias[:k], emb.x_train[index], weight[:k])
            losses = nn.functional.cross_entropy(
                logits.flatten(0, 1), emb.y_train[index].flatten(), reduction="none"
            ).view_as(mask)
            ((losses * mask).sum(1) / mask.sum(1)).sum().backward()
            active = (torch.arange(n_heads) < k).float().view(-1, 1, 1)
            adam_step(adam, steps.add_(active), active, params.learning_rate)
        best, best_params = keep_best(emb, weight, bias, best, best_params)
    with torch.no_grad():
        predicted = torch.baddbmm(
            best_params[1], emb.x_val.expand(n_heads, -1, -1), best_params[0]
        ).argmax(2)
    return predicted[torch.tensor(by_size).argsort()]


def batch_indices(
    orders: list[torch.Tensor], step: int, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each head's `step`-th minibatch, padded to one shape; the mask marks the real rows."""
    index = torch.zeros(len(orders), batch_size, dtype=torch.long)
    mask = torch.zeros(len(orders), batch_size)
    for h, order in enumerate(orders):
        rows = order[step * batch_size : (step + 1) * batch_size]
        index[h, : len(rows)], mask[h, : len(rows)] = rows, 1.0
    return index, mask


@torch.no_grad()
def adam_step(
    adam: AdamState,
    steps: torch.Tensor,
    active: torch.Tensor,
    lr: float,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> None:
    """torch.optim.Adam's update with L2 weight decay, applied only to the heads that had a batch.

    `steps` counts each head's updates so far, this one included; `active` is 1 for the heads to
    update and 0 for the rest, shaped to broadcast over the heads' parameters.
    tests/engine/test_batched_heads.py checks it against one torch.optim.Adam per head.
    """
    t = steps.clamp(min=1)
    for param, mean, square in adam:
        assert param.grad is not None, "adam_step runs after backward()"
        grad = param.grad + WEIGHT_DECAY * param
        mean.copy_(torch.where(active > 0, betas[0] * mean + (1 - betas[0]) * grad, mean))
        square.copy_(
            torch.where(active > 0, betas[1] * square + (1 - betas[1]) * grad * grad, square)
        )
        update = lr * (mean / (1 - betas[0] ** t)) / ((square / (1 - betas[1] ** t)).sqrt() + eps)
        param.sub_(update * active)
        param.grad = None


@torch.no_grad()
def keep_best(
    emb: Embedded,
    weight: torch.Tensor,
    bias: torch.Tensor,
    best: PerHead,
    best_params: PerHead,
) -> tuple[PerHead, PerHead]:
    """Keep each head's weights from its best epoch so far, by the shared rule of `app.engine.best`."""
    logits = torch.baddbmm(bias, emb.x_val.expand(len(weight), -1, -1), weight)
    accuracy = (logits.argmax(2) == emb.y_val).float().mean(1)
    loss = torch.stack(
        [nn.functional.cross_entropy(head_logits, emb.y_val) for head_logits in logits]
    )
    better = improves(accuracy, loss, best[0], best[1])
    pick = better.view(-1, 1, 1)
    return (
        (torch.where(better, accuracy, best[0]), torch.where(better, loss, best[1])),
        (torch.where(pick, weight, best_params[0]), torch.where(pick, bias, best_params[1])),
    )
