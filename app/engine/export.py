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

from app.engine import preprocess
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
    "preprocess.py",
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
"""Classify images with this model (needs only: pip install onnxruntime pillow numpy).

    python predict.py [--top N] [--int8] IMAGE [IMAGE ...]

Decoding and preprocessing are preprocess.py, the same code the Teachbox app runs.
"""
import argparse
import json
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here))  # preprocess.py sits beside this file, even under `python -I`

import onnxruntime as ort  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402
from preprocess import from_metadata, rgb_to_input, upright_rgb  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description="Classify images with this Teachbox model.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="JPEG, PNG, WebP, BMP or GIF files")
    parser.add_argument("--top", type=int, default=3, help="how many labels to show per image (default 3)")
    parser.add_argument("--int8", action="store_true", help="run model.int8.onnx, the quantised model")
    args = parser.parse_args(argv)
    model = here / ("model.int8.onnx" if args.int8 else "model.onnx")
    if not model.is_file():
        parser.error(f"{model.name} is not in this folder; train with int8 on to get it, or drop --int8")
    meta = json.loads((here / "metadata.json").read_text(encoding="utf-8"))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    prep, status = from_metadata(meta), 0
    for path in args.images:
        try:
            with Image.open(path) as image:
                pixels = rgb_to_input(upright_rgb(image), prep)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            print(f"{path}: cannot read this image ({exc}). Give a JPEG, PNG, WebP, BMP or GIF file.", file=sys.stderr)
            status = 1
            continue
        probs = session.run(None, {"input": pixels[None]})[0][0]
        ranked = sorted(zip(meta["labels"], probs), key=lambda pair: -pair[1])[: args.top]
        print(f"{path}: " + "  ".join(f"{label} {p:.3f}" for label, p in ranked))
    return status


if __name__ == "__main__":
    sys.exit(main())
'''
# Shipped beside predict.py, byte for byte the module the app itself decodes and preprocesses with.
PREPROCESS_PY = Path(preprocess.__file__).read_text(encoding="utf-8")

README_MD = """\
# {title}

An image classifier trained with Teachbox ({mode} on {backbone}); validation accuracy {accuracy}.

Files: `model.onnx` (one self-contained ONNX file: input `input`, float32 NCHW RGB {size}x{size},
scaled to [0, 1] and normalised with `mean`/`std` from `metadata.json`; output `probabilities`),
`model.safetensors` (the full PyTorch state, to continue training), `labels.txt`, `metadata.json`,
`predict.py`, `preprocess.py` and, when trained with int8 on, `model.int8.onnx` (quantised, about
3x smaller; its accuracy change is in `metadata.json` under `int8`).

    pip install onnxruntime pillow numpy
    python predict.py photo.jpg            # --top N labels per image; --int8 runs model.int8.onnx

Preprocessing (`preprocess.py`, the same code the Teachbox app runs): decode, take the first frame
of an animation, apply the EXIF orientation, convert to 8-bit RGB (16-bit images scaled, not
clipped; transparency onto white), resize the shorter side to {resize} pixels (bilinear),
centre-crop {size}x{size}, scale to [0, 1] and normalise with `mean`/`std`.
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
            "preprocess.py": PREPROCESS_PY,
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
