"""The GPU paths (autocast, channels_last, pinned memory, non-blocking copies); skipped without CUDA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.engine.backbones import build_backbone
from app.engine.context import RunContext
from app.engine.dataset import from_folder
from app.engine.embeddings import Embedder, OnnxEngine, TorchEngine, backbone_onnx
from app.engine.params import Mode, TrainParams
from app.engine.training import fit

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.weights,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="no CUDA GPU on this machine; these tests run where one is present",
    ),
]


def test_gpu_features_match_cpu_onnx_features(cache_dir: Path) -> None:
    batch = np.random.default_rng(0).standard_normal((8, 3, 224, 224), dtype=np.float32)
    gpu = TorchEngine(build_backbone("mobilenet_v2"), torch.device("cuda"))(batch)
    cpu = OnnxEngine(backbone_onnx("mobilenet_v2", cache_dir))(batch)
    np.testing.assert_allclose(gpu, cpu, atol=5e-2, rtol=5e-2)  # half-precision autocast on the GPU


def test_finetune_runs_on_cuda_with_mixed_precision(
    session_colours: Path, embedder: Embedder
) -> None:
    params = TrainParams(mode=Mode.FINETUNE, epochs=1, batch_size=8)
    result = fit(from_folder(session_colours), params, RunContext(embedder, device="cuda"))
    assert result.device == "cuda" and result.metrics.val_accuracy == 1.0
    assert next(result.model.parameters()).device.type == "cpu"  # handed back ready to export
