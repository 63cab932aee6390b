"""One "keep the best epoch" rule for every loop that picks an epoch: head training, fine-tuning
and the learning curve's batched heads.

Higher validation accuracy wins; on a tie, lower validation loss. The rule is written once, on
tensors, so that it serves a single model and a batch of heads alike.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import torch


def improves(
    accuracy: torch.Tensor, loss: torch.Tensor, best_accuracy: torch.Tensor, best_loss: torch.Tensor
) -> torch.Tensor:
    """Where (elementwise) an epoch's score beats the best so far."""
    return (accuracy > best_accuracy) | ((accuracy == best_accuracy) & (loss < best_loss))


def beats(accuracy: float, loss: float, best_accuracy: float, best_loss: float) -> bool:
    """`improves` for one model's scores."""
    return bool(
        improves(
            torch.tensor(accuracy),
            torch.tensor(loss),
            torch.tensor(best_accuracy),
            torch.tensor(best_loss),
        )
    )


@dataclass
class BestEpoch:
    """Tracks one model's best epoch and keeps a copy of what it had then (a state dict, outputs)."""

    accuracy: float = -1.0
    loss: float = math.inf
    epoch: int | None = None
    kept: Any = field(default=None, repr=False)

    def offer(self, epoch: int, accuracy: float, loss: float, keep: Any) -> bool:
        """Record this epoch if it is the best so far (a deep copy of `keep` is held); True if it was."""
        better = beats(accuracy, loss, self.accuracy, self.loss)
        if better:
            self.accuracy, self.loss, self.epoch = accuracy, loss, epoch
            self.kept = copy.deepcopy(keep)
        return better
