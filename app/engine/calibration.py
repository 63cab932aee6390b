"""Probabilities that mean what they say, and when to answer "not sure".

Temperature scaling (Guo et al., 2017): one number T, fitted on predictions for images the
heads did not train on, divides the logits before the softmax. It changes how confident the
model is, never which class it picks. The threshold on the top probability below which the
model says "not sure" is chosen on the same predictions by UNSURE_RULE.
"""

from __future__ import annotations

import math

import torch
from pydantic import BaseModel, Field
from torch import nn

# log T is searched in [-LOG_T_RANGE, LOG_T_RANGE]: T from about 0.05 to 20.
LOG_T_RANGE = 3.0
GOLDEN_STEPS = 60
# At most this share of images may fall below the threshold.
MAX_UNSURE_SHARE = 0.5
UNSURE_RULE = (
    "the lowest threshold on the calibrated top probability at which the out-of-fold accuracy "
    "of the images at or above it halves the error rate of all images, with at most half the "
    "images below it (if no threshold gets there, the one with the best accuracy above it)"
)


class Calibration(BaseModel):
    """The fitted temperature, the threshold, and what they do on the images measured."""

    temperature: float = Field(description="Logits are divided by this before the softmax.")
    nll_before: float = Field(description="Mean negative log-likelihood with T = 1.")
    nll_after: float = Field(description="Mean negative log-likelihood with the fitted T.")
    unsure_below: float = Field(
        description="Answers whose top probability is below this say 'not sure'."
    )
    rule: str = UNSURE_RULE
    accuracy_all: float = Field(description="Accuracy of every prediction measured.")
    accuracy_sure: float | None = Field(
        description="Accuracy of the predictions at or above the threshold."
    )
    share_sure: float = Field(description="Share of predictions at or above the threshold.")
    measured_on: str = Field(description="Which predictions these three figures count.")


def mean_nll(logits: torch.Tensor, targets: torch.Tensor, temperature: float) -> float:
    return nn.functional.cross_entropy(logits / temperature, targets).item()


@torch.no_grad()
def fit_temperature(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """The T that minimises the negative log-likelihood: a golden-section search on log T.

    The NLL is convex in 1/T, so one minimum; the search needs no randomness and no learning rate.
    """
    low, high = -LOG_T_RANGE, LOG_T_RANGE
    ratio = (math.sqrt(5) - 1) / 2

    def nll(log_t: float) -> float:
        return mean_nll(logits, targets, math.exp(log_t))

    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(a), nll(b)
    for _ in range(GOLDEN_STEPS):
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(b)
    return round(math.exp((low + high) / 2), 4)


def choose_unsure_below(confidence: torch.Tensor, correct: torch.Tensor) -> float:
    """The threshold UNSURE_RULE describes, from each prediction's top probability and correctness."""
    n = len(confidence)
    order = torch.argsort(confidence, descending=True, stable=True)
    ranked, hits = confidence[order], correct[order].float()
    accuracy_top = hits.cumsum(0) / torch.arange(1, n + 1)  # accuracy of the m most confident
    target = 1 - (1 - hits.mean().item()) / 2
    smallest = max(1, math.ceil(n * (1 - MAX_UNSURE_SHARE)))
    allowed = accuracy_top[smallest - 1 :]
    reaching = torch.nonzero(allowed >= target - 1e-9).flatten()
    if len(reaching):
        m = smallest + int(reaching.max())
    else:  # the largest m among those with the best accuracy
        m = smallest + int(torch.nonzero(allowed == allowed.max()).flatten().max())
    if m == n:
        return 0.0
    return math.floor(ranked[m - 1].item() * 1e4) / 1e4


def calibrate(
    logits: torch.Tensor, targets: torch.Tensor, measured_on: str
) -> tuple[Calibration, torch.Tensor]:
    """Fit T and the threshold on these logits; the calibration and the calibrated probabilities."""
    temperature = fit_temperature(logits, targets)
    probs = torch.softmax(logits / temperature, 1)
    confidence, predicted = probs.max(1)
    threshold = choose_unsure_below(confidence, predicted == targets)
    return (
        Calibration(
            temperature=temperature,
            nll_before=round(mean_nll(logits, targets, 1.0), 4),
            nll_after=round(mean_nll(logits, targets, temperature), 4),
            unsure_below=threshold,
            measured_on=measured_on,
            **sure_figures(probs, targets, threshold),
        ),
        probs,
    )


def sure_figures(
    probs: torch.Tensor, targets: torch.Tensor, threshold: float
) -> dict[str, float | None]:
    """Accuracy of all predictions, of those at or above the threshold, and the share above it."""
    confidence, predicted = probs.max(1)
    correct = (predicted == targets).float()
    sure = confidence >= threshold
    return {
        "accuracy_all": round(correct.mean().item(), 4) if len(correct) else 0.0,
        "accuracy_sure": round(correct[sure].mean().item(), 4) if bool(sure.any()) else None,
        "share_sure": round(sure.float().mean().item(), 4) if len(correct) else 0.0,
    }


@torch.no_grad()
def fold_temperature(head: nn.Module, temperature: float) -> None:
    """Divide the head's last linear layer by T, so that the exported graph itself is calibrated."""
    linear = next(m for m in reversed(list(head.modules())) if isinstance(m, nn.Linear))
    linear.weight.div_(temperature)
    linear.bias.div_(temperature)
