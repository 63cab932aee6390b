"""The embeddings cache and the feature engines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from app.engine.backbones import build_backbone
from app.engine.embeddings import (
    EmbeddingCache,
    OnnxEngine,
    TorchEngine,
    backbone_onnx,
    make_embedder,
)
from app.engine.images import list_image_files, model_input
from tests.conftest import make_colour_dataset, write_image

pytestmark = pytest.mark.weights


def test_cache_reuse_only_embeds_what_is_new(tmp_path: Path) -> None:
    root = make_colour_dataset(tmp_path / "data", per_class=4)
    embedder = make_embedder("mobilenet_v2", tmp_path / "cache")
    paths = [p for d in sorted(root.iterdir()) for p in list_image_files(d)]
    first = embedder.embed(paths)
    assert first.computed == 8 and len(first.vectors) == 8
    assert first.matrix(paths).shape == (8, 1280)
    again = embedder.embed(paths)
    assert again.computed == 0
    np.testing.assert_array_equal(again.matrix(paths), first.matrix(paths))
    extra = write_image(root / "red" / "new.jpg", (10, 200, 10), seed=99)
    copy = root / "blue" / "same-bytes-other-name.jpg"
    copy.write_bytes(paths[0].read_bytes())
    grown = embedder.embed([*paths, extra, copy])
    assert grown.computed == 1
    assert EmbeddingCache(tmp_path / "cache" / "embeddings.sqlite").count() == 9


def test_unreadable_images_are_reported_not_fatal(tmp_path: Path) -> None:
    good = write_image(tmp_path / "good.jpg", (200, 0, 0))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"<html>not a photo</html>")
    result = make_embedder("mobilenet_v2", tmp_path / "cache").embed([good, bad])
    assert set(result.vectors) == {good}
    assert result.rejected == {
        bad: "HTML files are not accepted. Convert it to JPEG, PNG, WebP, BMP or GIF and upload it again."
    }


def test_onnx_and_torch_engines_agree(tmp_path: Path, cache_dir: Path) -> None:
    from app.engine.backbones import get_spec

    prep = get_spec("mobilenet_v2").preprocessing
    images = [
        write_image(tmp_path / f"{i}.jpg", (40 * i, 100, 200 - 30 * i), size=(300, 200), seed=i)
        for i in range(4)
    ]
    batch = np.stack([model_input(p, prep) for p in images])
    onnx_vectors = OnnxEngine(backbone_onnx("mobilenet_v2", cache_dir))(batch)
    torch_vectors = TorchEngine(build_backbone("mobilenet_v2"), torch.device("cpu"))(batch)
    np.testing.assert_allclose(onnx_vectors, torch_vectors, atol=1e-3, rtol=1e-3)
