"""The learning curve's batched heads: `adam_step` is torch.optim.Adam per head, and `keep_best`
keeps each head's best epoch by the shared rule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from app.engine.head import WEIGHT_DECAY, Embedded
from app.engine.health.batched_heads import AdamState, adam_step, keep_best

HEADS, DIM, CLASSES, STEPS, LR = 5, 7, 3, 40, 0.01
# What each dtype's rounding allows; float64 shows the two are the same arithmetic, not merely close.
TOLERANCE = {torch.float64: {"rtol": 1e-12, "atol": 1e-14}, torch.float32: {}}

Params = tuple[torch.Tensor, torch.Tensor]


def random_run(
    dtype: torch.dtype,
) -> tuple[Params, list[Params], torch.Tensor]:
    """Initial (weight, bias) of every head, each step's gradients, and which heads each step moves.

    Small gradients, so that the weight decay moves the result far more than the tolerance; the
    last head is never active.
    """
    generator = torch.Generator().manual_seed(0)
    initial = (
        torch.randn(HEADS, DIM, CLASSES, generator=generator, dtype=dtype),
        torch.randn(HEADS, 1, CLASSES, generator=generator, dtype=dtype),
    )
    grads = [
        (
            torch.randn(HEADS, DIM, CLASSES, generator=generator, dtype=dtype) * 1e-2,
            torch.randn(HEADS, 1, CLASSES, generator=generator, dtype=dtype) * 1e-2,
        )
        for _ in range(STEPS)
    ]
    active = torch.rand(STEPS, HEADS, generator=generator) < 0.6
    active[:, -1] = False
    return initial, grads, active


def batched(
    initial: Params, grads: list[Params], active: torch.Tensor
) -> tuple[Params, torch.Tensor, AdamState]:
    """Every head through `adam_step`, as `train_heads` calls it; the final weights, step counts and state."""
    weight, bias = (p.clone().requires_grad_() for p in initial)
    adam: AdamState = [(p, torch.zeros_like(p), torch.zeros_like(p)) for p in (weight, bias)]
    steps = torch.zeros(HEADS, 1, 1, dtype=weight.dtype)
    for (weight_grad, bias_grad), moves in zip(grads, active, strict=True):
        weight.grad, bias.grad = weight_grad.clone(), bias_grad.clone()
        mask = moves.to(weight.dtype).view(-1, 1, 1)
        adam_step(adam, steps.add_(mask), mask, LR)
    return (weight.detach(), bias.detach()), steps, adam


def per_head_torch(
    initial: Params, grads: list[Params], active: torch.Tensor, head: int, weight_decay: float
) -> tuple[Params, torch.optim.Adam]:
    """One head alone with torch.optim.Adam, stepped only where it was active, on the same gradients."""
    weight, bias = (p[head].clone().requires_grad_() for p in initial)
    optimiser = torch.optim.Adam([weight, bias], lr=LR, weight_decay=weight_decay)
    for (weight_grad, bias_grad), moves in zip(grads, active, strict=True):
        if moves[head]:
            weight.grad, bias.grad = weight_grad[head].clone(), bias_grad[head].clone()
            optimiser.step()
    return (weight.detach(), bias.detach()), optimiser


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_adam_step_is_torch_adam_for_each_head(dtype: torch.dtype) -> None:
    initial, grads, active = random_run(dtype)
    (weight, bias), steps, adam = batched(initial, grads, active)
    assert 0 < int(active[:, 0].sum()) < STEPS  # a head sits some steps out and moves on others
    for head in range(HEADS):
        (torch_weight, torch_bias), optimiser = per_head_torch(
            initial, grads, active, head, WEIGHT_DECAY
        )
        torch.testing.assert_close(weight[head], torch_weight, **TOLERANCE[dtype])
        torch.testing.assert_close(bias[head], torch_bias, **TOLERANCE[dtype])
        assert int(steps[head]) == int(active[:, head].sum())
        for (_, mean, square), param in zip(adam, optimiser.param_groups[0]["params"], strict=True):
            state = optimiser.state[param]  # empty for a head that never moved
            if state:
                assert int(state["step"]) == int(steps[head])
                torch.testing.assert_close(mean[head], state["exp_avg"], **TOLERANCE[dtype])
                torch.testing.assert_close(square[head], state["exp_avg_sq"], **TOLERANCE[dtype])
    assert torch.equal(weight[-1], initial[0][-1]) and torch.equal(bias[-1], initial[1][-1])


def test_the_comparison_notices_the_weight_decay() -> None:
    """Without weight decay torch ends elsewhere: the equality above would catch a missing or decoupled decay."""
    initial, grads, active = random_run(torch.float64)
    (weight, _), _, _ = batched(initial, grads, active)
    (undecayed, _), _ = per_head_torch(initial, grads, active, 0, weight_decay=0.0)
    assert not torch.allclose(weight[0], undecayed, **TOLERANCE[torch.float64])


def validation_set() -> Embedded:
    """Three classes that one-hot-like features separate: the identity scores every image right."""
    generator = torch.Generator().manual_seed(1)
    y = torch.arange(CLASSES).repeat(4)
    x = torch.eye(CLASSES)[y] + 0.05 * torch.rand(len(y), CLASSES, generator=generator)
    return Embedded(x, y, x, y)


def scores(emb: Embedded, weight: torch.Tensor, bias: torch.Tensor) -> tuple[float, float]:
    logits = emb.x_val @ weight + bias
    accuracy = float((logits.argmax(1) == emb.y_val).float().mean())
    return accuracy, float(nn.functional.cross_entropy(logits, emb.y_val))


def test_keep_best_keeps_each_heads_best_epoch_ties_broken_by_loss() -> None:
    emb = validation_set()
    right = torch.eye(
        CLASSES
    )  # every image right; scaling it keeps the accuracy and moves the loss
    wrong = -torch.eye(CLASSES)  # every image wrong
    partly = torch.tensor([[9.0, 0, 0], [0, 9, 0], [0, 0.1, 0]])  # class 2 taken for 1: 2/3 right
    epochs = [  # per epoch, each head's weight
        [wrong, 0.5 * right, partly, wrong],
        [right, 3 * right, 0.01 * right, partly],
        [3 * right, right, partly, wrong],
    ]
    # Head 0: an equal accuracy with a lower loss wins; head 1: one with a higher loss does not;
    # head 2: a higher accuracy wins over a lower loss, and a lower one loses despite it; head 3:
    # a higher accuracy wins.
    expected = [2, 1, 1, 1]
    bias = torch.zeros(len(expected), 1, CLASSES)
    best = (torch.full((len(expected),), -1.0), torch.full((len(expected),), math.inf))
    best_params = (torch.zeros(len(expected), CLASSES, CLASSES), bias.clone())
    for heads in epochs:
        best, best_params = keep_best(emb, torch.stack(heads), bias, best, best_params)

    assert scores(emb, partly, bias[0])[1] < scores(emb, 0.01 * right, bias[0])[1]  # accuracy first
    for head, epoch in enumerate(expected):
        kept = epochs[epoch][head]
        assert torch.equal(best_params[0][head], kept), f"head {head}"
        accuracy, loss = scores(emb, kept, bias[head])
        assert float(best[0][head]) == pytest.approx(accuracy)
        assert float(best[1][head]) == pytest.approx(loss, rel=1e-6)
