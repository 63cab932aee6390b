"""The trained network: backbone features, a linear head, softmax; what model.onnx computes."""

from __future__ import annotations

import math

import torch
from torch import nn

from app.engine.backbones import FeatureExtractor


class Classifier(nn.Module):
    """Backbone features, then the head, then softmax: what the exported model.onnx computes."""

    def __init__(self, extractor: FeatureExtractor, head: nn.Module) -> None:
        super().__init__()
        self.extractor = extractor
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.head(self.extractor(x)), dim=1)


def make_head(
    feature_dim: int, n_classes: int, generator: torch.Generator | None = None
) -> nn.Sequential:
    """A linear classifier: on flowers-dev and clothing-dev it matched or beat both a 100-unit hidden
    layer and input dropout, and trains twice as fast as with dropout (bench/RESULTS.md).

    With a generator, its initial weights come from that generator alone, drawn as nn.Linear
    draws them: whatever else used torch's global random numbers before (building a backbone
    when the embeddings cache is cold, another thread) cannot change the model a seed makes.
    """
    linear = nn.Linear(feature_dim, n_classes)
    if generator is not None:
        bound = 1 / math.sqrt(feature_dim)
        with torch.no_grad():
            nn.init.kaiming_uniform_(linear.weight, a=math.sqrt(5), generator=generator)
            nn.init.uniform_(linear.bias, -bound, bound, generator=generator)
    return nn.Sequential(linear)
