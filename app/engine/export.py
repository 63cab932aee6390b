"""The model zip: a self-contained ONNX model verified against PyTorch, its weights, labels and metadata.

What `teachbox evaluate` and the web preview run is the exported `model.onnx` itself, through
`OnnxClassifier`, so what is measured is what a user deploys.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from datetime import UTC, datetime
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import onnx
from safetensors.torch import save_file

from app.engine.backbones import get_spec
from app.engine.embeddings import export_onnx
from app.engine.errors import InternalFailure
from app.engine.images import DEFAULT_MAX_PIXELS
from app.engine.parity import (
    check_parity,
)
from app.engine.quantize import compare_models, quantize_model
from app.engine.training import TrainResult

INT8_MEMBER = "model.int8.onnx"
ZIP_MEMBERS = (
    "model.onnx",
    "model.safetensors",
    "labels.txt",
    "metadata.json",
    "README.md",
    "predict.py",
)
_PACKAGES = (
    "teachbox",
    "torch",
    "torchvision",
    "onnx",
    "onnxruntime",
    "pillow",
    "numpy",
    "safetensors",
)

PREDICT_PY = '''\
"""Classify images with this model: python predict.py IMAGE [IMAGE ...]  (pip install onnxruntime pillow numpy)"""
import json, sys
from pathlib import Path
import numpy as np, onnxruntime as ort
from PIL import Image, ImageOps

here = Path(__file__).resolve().parent
meta = json.loads((here / "metadata.json").read_text())
session = ort.InferenceSession(str(here / "model.onnx"), providers=["CPUExecutionProvider"])

def preprocess(path):
    image = ImageOps.exif_transpose(Image.open(path))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = Image.alpha_composite(Image.new("RGBA", image.size, "white"), image.convert("RGBA"))
    image, crop = image.convert("RGB"), meta["image_size"]
    scale = meta["resize_size"] / min(image.size)
    image = image.resize((max(crop, round(image.width * scale)), max(crop, round(image.height * scale))), Image.BILINEAR)
    left, top = (image.width - crop) // 2, (image.height - crop) // 2
    pixels = np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.float32) / 255.0
    return ((pixels - meta["mean"]) / meta["std"]).astype(np.float32).transpose(2, 0, 1)

for path in sys.argv[1:]:
    probs = session.run(None, {"input": preprocess(path)[None]})[0][0]
    best = np.argsort(probs)[::-1][:3]
    print(path, "  ".join(f"{meta['labels'][i]} {probs[i]:.3f}" for i in best))
'''

README_MD = """\
# {title}

An image classifier trained with Teachbox ({mode} on {backbone}); validation accuracy {accuracy}.

Files: `model.onnx` (one self-contained ONNX file: input `input`, float32 NCHW RGB {size}x{size},
scaled to [0, 1] and normalised with `mean`/`std` from `metadata.json`; output `probabilities`),
`model.safetensors` (the full PyTorch state, to continue training), `labels.txt`, `metadata.json`,
and `predict.py`.

    pip install onnxruntime pillow numpy
    python predict.py photo.jpg

Preprocessing: resize the shorter side to {resize} pixels (bilinear), centre-crop {size}x{size}.
"""


def package_versions() -> dict[str, str]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = package_metadata.version(name)
        except package_metadata.PackageNotFoundError:
            continue
    return versions


def build_metadata(result: TrainResult, parity: dict[str, Any]) -> dict[str, Any]:
    prep = get_spec(result.params.backbone).preprocessing
    return {
        "format": "teachbox-model/1",
        "labels": result.labels,
        "image_size": prep.crop_size,
        "resize_size": prep.resize_size,
        "interpolation": "bilinear",
        "mean": list(prep.mean),
        "std": list(prep.std),
        "input": {
            "name": "input",
            "layout": "NCHW",
            "color": "RGB",
            "dtype": "float32",
            "scaling": "pixels / 255, then (x - mean) / std",
            "shape": ["batch", 3, prep.crop_size, prep.crop_size],
        },
        "output": {
            "name": "probabilities",
            "kind": "probabilities",
            "shape": ["batch", len(result.labels)],
        },
        "backbone": result.params.backbone,
        "mode": result.params.mode.value,
        "params": result.params.resolved(),
        "metrics": result.metrics.model_dump(mode="json"),
        "parity": parity,
        "versions": package_versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def export_model_zip(
    result: TrainResult, out_path: Path, max_pixels: int = DEFAULT_MAX_PIXELS
) -> dict[str, Any]:
    """Write the model zip atomically and return its metadata; refuse an export that fails parity."""
    model = result.model.eval().to("cpu")
    prep = get_spec(result.params.backbone).preprocessing
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".export-") as scratch:
        folder = Path(scratch)
        export_onnx(model, folder / "model.onnx", prep.crop_size, "probabilities")
        onnx.checker.check_model(str(folder / "model.onnx"), full_check=True)
        parity = check_parity(model, folder / "model.onnx", result.val_paths, prep, max_pixels)
        if not parity["passed"]:
            raise InternalFailure(
                f"The exported model disagrees with PyTorch ({parity}). Train again, or report this as a bug."
            )
        members = list(ZIP_MEMBERS)
        int8_report = None
        if result.params.int8:
            quantize_model(
                folder / "model.onnx", folder / INT8_MEMBER, result.train_paths, prep, max_pixels
            )
            int8_report = compare_models(
                folder / "model.onnx",
                folder / INT8_MEMBER,
                result.val_paths,
                result.val_labels,
                prep,
                max_pixels,
            )
            members.append(INT8_MEMBER)
        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()},
            str(folder / "model.safetensors"),
        )
        metadata = build_metadata(result, parity)
        if int8_report is not None:
            metadata["int8"] = int8_report
        texts = {
            "labels.txt": "\n".join(result.labels) + "\n",
            "metadata.json": json.dumps(metadata, indent=2),
            "README.md": README_MD.format(
                title="Teachbox model",
                mode=metadata["mode"],
                backbone=metadata["backbone"],
                accuracy=f"{result.metrics.val_accuracy:.3f}",
                size=prep.crop_size,
                resize=prep.resize_size,
            ),
            "predict.py": PREDICT_PY,
        }
        for name, text in texts.items():
            (folder / name).write_text(text, encoding="utf-8")
        partial = folder / "model.zip"
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for name in members:
                # Float weights barely compress; storing them saves a second per export.
                binary = name.endswith((".onnx", ".safetensors"))
                archive.write(
                    folder / name,
                    name,
                    compress_type=zipfile.ZIP_STORED if binary else zipfile.ZIP_DEFLATED,
                )
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        partial.replace(out_path)
    return metadata


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a JSON report atomically (a partial file renamed into place), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(data, indent=2, default=str))
    partial.replace(path)
