"""Baselines the benchmarks measure our fast paths against."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from app import training


@contextmanager
def fp32_nchw_eager() -> Iterator[None]:
    """Fine-tune as plain PyTorch would: no bf16 autocast, NCHW memory format."""
    saved = training.bf16_supported_on_cpu, training.FINETUNE_MEMORY_FORMAT
    training.bf16_supported_on_cpu = lambda: False
    training.FINETUNE_MEMORY_FORMAT = torch.contiguous_format
    try:
        yield
    finally:
        training.bf16_supported_on_cpu, training.FINETUNE_MEMORY_FORMAT = saved
