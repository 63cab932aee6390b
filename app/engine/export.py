"""The model zip: a self-contained ONNX model verified against PyTorch, its weights, labels and metadata.

What `teachbox evaluate` and the web preview run is the exported `model.onnx` itself, through
`OnnxClassifier`, so what is measured is what a user deploys.
"""

from __future__ import annotations

import copy
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
from app.engine.embeddings import ONNX_OPSET, export_onnx
from app.engine.errors import InternalFailure
from app.engine.images import DEFAULT_MAX_PIXELS
from app.engine.parity import (
    check_parity,
)
from app.engine.quantize import compare_models, quantize_model
from app.engine.samples import EXPECTED, SAMPLE_NAMES, write_samples
from app.engine.tflite import export_tflite, tflite_missing
from app.engine.training import TrainResult
from app.engine.web_page import ORT_WEB_VERSION, WEB_DIR, WEB_MEMBERS, page_files
from app.engine.zip_texts import (
    INT8_LINE,
    PREDICT_PY,
    PREPROCESS_PY,
    README_MD,
    tflite_lines,
    tflite_section,
)

INT8_MEMBER = "model.int8.onnx"
ZIP_MEMBERS = (
    "model.onnx",
    "model.safetensors",
    "labels.txt",
    "metadata.json",
    "README.md",
    "predict.py",
    "preprocess.py",
    *SAMPLE_NAMES,
    EXPECTED,
    *WEB_MEMBERS,
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
        **calibration_keys(result),
        "metrics": result.metrics.model_dump(mode="json"),
        "parity": parity,
        "versions": package_versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def calibration_keys(result: TrainResult) -> dict[str, Any]:
    """The headline estimate and the "not sure" threshold, at the top of metadata.json."""
    metrics = result.metrics
    if metrics.estimate is None or metrics.calibration is None:
        return {}
    return {
        "estimate": metrics.estimate.model_dump(mode="json"),
        "unsure_below": metrics.calibration.unsure_below,
        "temperature": metrics.calibration.temperature,
    }


def percent(value: float) -> str:
    return f"{value * 100:.0f} %"


def readme_figures(result: TrainResult) -> dict[str, str]:
    """The model README's sentences on accuracy and on "not sure"."""
    found, calibration = result.metrics.estimate, result.metrics.calibration
    if found is None or calibration is None:
        return {
            "accuracy": "unknown",
            "method": "not measured",
            "unsure_below": "0",
            "sure_line": "",
        }
    sure = calibration.accuracy_sure
    return {
        "accuracy": f"{percent(found.accuracy)} ({found.low * 100:.0f}–{percent(found.high)})",
        "method": found.method,
        "unsure_below": f"{calibration.unsure_below:.4f}",
        "sure_line": (
            f"on {calibration.measured_on}, {percent(calibration.share_sure)} of answers were at "
            f"or above it, and {percent(sure)} of those were right (against "
            f"{percent(calibration.accuracy_all)} of all answers)."
            if sure is not None
            else ""
        ),
    }


def self_describing(onnx_path: Path, metadata: dict[str, Any]) -> None:
    """Write the labels and the preprocessing into the ONNX file's own metadata_props, so that
    the model file alone says how to feed it and what its outputs mean."""
    model = onnx.load(str(onnx_path))
    preprocessing = {
        key: metadata[key] for key in ("image_size", "resize_size", "interpolation", "mean", "std")
    }
    onnx.helper.set_model_props(
        model,
        {
            "format": metadata["format"],
            "labels": json.dumps(metadata["labels"]),
            "preprocessing": json.dumps({**preprocessing, "input": metadata["input"]}),
            "output": json.dumps(metadata["output"]),
            "backbone": metadata["backbone"],
            "mode": metadata["mode"],
        },
    )
    model.producer_name = "teachbox"
    onnx.save(model, str(onnx_path))


def without_folders(metadata: dict[str, Any], result: TrainResult) -> dict[str, Any]:
    """The metadata to ship: image paths relative to the folder that holds the data, so that no
    absolute or server path leaves in a shared model."""
    paths = [*result.train_paths, *result.val_paths, *(path for path, _ in result.skipped)]
    parents = [path.resolve().parent for path in paths]
    root = Path(os.path.commonpath(parents)) if parents else Path("/")
    portable = copy.deepcopy(metadata)
    for key in ("misclassified", "skipped"):
        for entry in portable["metrics"].get(key) or []:
            path = Path(entry["path"]).resolve()
            entry["path"] = (
                path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
            )
    return portable


NOT_ASKED = "TFLite files were not asked for. Set TEACHBOX_TFLITE=true (with the tflite extra installed) and train again to get model.tflite."


def tflite_parity(
    result: TrainResult, folder: Path, asked: bool, max_pixels: int
) -> dict[str, Any]:
    """The TFLite files' agreement with PyTorch (written into `folder`), or why there are none."""
    reason = tflite_missing() if asked else NOT_ASKED
    if reason is not None:
        return {"skipped": reason}
    return export_tflite(
        result.model,
        folder,
        get_spec(result.params.backbone).preprocessing,
        result.val_paths,
        result.train_paths if result.params.int8 else None,
        max_pixels,
    )


def export_model_zip(
    result: TrainResult,
    out_path: Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    tflite: bool = False,
) -> dict[str, Any]:
    """Write the model zip atomically and return its metadata; refuse an export that fails parity
    (ONNX, and TFLite when asked for and installed)."""
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
        members = [name for name in ZIP_MEMBERS if name not in WEB_MEMBERS]
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
        parity["tflite"] = tflite_parity(result, folder, tflite, max_pixels)
        tflite_files = [
            report["file"] for report in parity["tflite"].values() if isinstance(report, dict)
        ]
        members.extend(tflite_files)
        save_file(
            {k: v.contiguous() for k, v in model.state_dict().items()},
            str(folder / "model.safetensors"),
        )
        write_samples(folder, folder / "model.onnx", result.labels, prep)
        metadata = build_metadata(result, parity)
        if int8_report is not None:
            metadata["int8"] = int8_report
        for name in members:
            if name.endswith(".onnx"):
                self_describing(folder / name, metadata)
        texts = {
            "labels.txt": "\n".join(result.labels) + "\n",
            "metadata.json": json.dumps(without_folders(metadata, result), indent=2),
            "README.md": README_MD.format(
                title="Teachbox model",
                mode=metadata["mode"],
                backbone=metadata["backbone"],
                **readme_figures(result),
                labels=", ".join(result.labels),
                n_labels=len(result.labels),
                int8_line=INT8_LINE if INT8_MEMBER in members else "",
                tflite_lines=tflite_lines(parity["tflite"], prep.crop_size),
                tflite_section=tflite_section(parity["tflite"], prep.crop_size),
                opset=ONNX_OPSET,
                size=prep.crop_size,
                resize=prep.resize_size,
                mean=json.dumps(list(prep.mean)),
                std=json.dumps(list(prep.std)),
                ort_version=ORT_WEB_VERSION,
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
                binary = name.endswith((".onnx", ".safetensors", ".tflite"))
                archive.write(
                    folder / name,
                    name,
                    compress_type=zipfile.ZIP_STORED if binary else zipfile.ZIP_DEFLATED,
                )
            add_page(archive)
        with partial.open("rb") as handle:
            os.fsync(handle.fileno())
        partial.replace(out_path)
    return metadata


def add_page(archive: zipfile.ZipFile) -> None:
    """The model page under web/. The fastest deflate level: the 14 MB runtime shrinks to 4 MB in
    0.3 s, where the default level saves another 0.7 MB for a second more on every export."""
    for name, source in page_files().items():
        archive.write(source, f"{WEB_DIR}/{name}", zipfile.ZIP_DEFLATED, compresslevel=1)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write a JSON report atomically (a partial file renamed into place), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(data, indent=2, default=str))
    partial.replace(path)
