"""Baselines the benchmarks measure our fast paths against."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from app.engine import finetune


@contextmanager
def fp32_nchw_eager() -> Iterator[None]:
    """Fine-tune as plain PyTorch would: no bf16 autocast, NCHW memory format."""
    saved = finetune.bf16_supported_on_cpu, finetune.FINETUNE_MEMORY_FORMAT
    finetune.bf16_supported_on_cpu = lambda: False
    finetune.FINETUNE_MEMORY_FORMAT = torch.contiguous_format
    try:
        yield
    finally:
        finetune.bf16_supported_on_cpu, finetune.FINETUNE_MEMORY_FORMAT = saved
