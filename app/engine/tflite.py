"""Optional TFLite export for phones and boards: litert-torch converts the PyTorch model, the LiteRT
interpreter runs each file on the validation images, and an export that disagrees is refused.

Both packages are the `tflite` extra (`pip install -e '.[tflite]'`); without them the model zip
is written without TFLite files and its metadata says why.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app.engine.errors import InternalFailure
from app.engine.images import Preprocessing
from app.engine.network import Classifier
from app.engine.parity import agreement, torch_probabilities, validation_batch
from app.engine.quantize import CALIBRATION_IMAGES, calibration_arrays

TFLITE_MEMBER = "model.tflite"
TFLITE_INT8_MEMBER = "model.int8.tflite"

# Static int8 moves probabilities by a few hundredths (bench/RESULTS.md); what must hold is the
# decision: at most one validation image in ten may change its top-1.
INT8_TOP1_FLOOR = 0.9

_PACKAGES = {"litert_torch": "litert-torch", "ai_edge_litert": "ai-edge-litert"}


def tflite_missing() -> str | None:
    """Why TFLite files cannot be made here, or None when the extra is installed."""
    absent = [
        name for module, name in _PACKAGES.items() if importlib.util.find_spec(module) is None
    ]
    if not absent:
        return None
    return f"TFLite files were not made: {' and '.join(absent)} are not installed. Install the extra with `pip install -e '.[tflite]'` and export again."


def _sample(size: int) -> tuple[torch.Tensor]:
    return (torch.zeros(1, 3, size, size),)


def _quiet_converter() -> None:
    """The converter draws a progress tree on the terminal for each of its passes, which would
    fill the server's log; it stays quiet unless LITERT_TORCH_SHOW_PROGRESS asks otherwise."""
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")


def convert_float(model: Classifier, path: Path, size: int) -> None:
    """A float32 .tflite with the ONNX model's input and output (NCHW, batch of one)."""
    import litert_torch

    litert_torch.convert(model.eval(), _sample(size)).export(str(path))


def convert_int8(model: Classifier, path: Path, size: int, calibration: list[np.ndarray]) -> None:
    """A full-int8 .tflite: PT2E static quantisation (int8 weights per channel, int8 activations)
    calibrated on training images; its input is int8 (see `input_quantization`), its output float."""
    import litert_torch
    from litert_torch.quantize import pt2e_quantizer
    from litert_torch.quantize.quant_config import QuantConfig
    from torchao.quantization.pt2e import quantize_pt2e

    quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
        pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)
    )
    prepared = quantize_pt2e.prepare_pt2e(
        torch.export.export(model.eval(), _sample(size)).module(), quantizer
    )
    with torch.no_grad():
        for array in calibration:
            prepared(torch.from_numpy(array[None]))
    quantized = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
    litert_torch.convert(
        quantized, _sample(size), quant_config=QuantConfig(pt2e_quantizer=quantizer)
    ).export(str(path))


def run_tflite(path: Path, batch: np.ndarray) -> tuple[np.ndarray, dict[str, float] | None]:
    """Probabilities from the LiteRT interpreter, one image at a time (the files take a batch of
    one), and the input's quantisation when the file takes int8."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count() or 1)
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero_point = source["quantization"]
    quantized = source["dtype"] == np.int8
    rows = []
    for image in batch:
        array = image[None]
        if quantized:
            array = np.clip(np.round(array / scale + zero_point), -128, 127).astype(np.int8)
        interpreter.set_tensor(source["index"], array)
        interpreter.invoke()
        rows.append(interpreter.get_tensor(target["index"])[0].astype(np.float32))
    probs = np.stack(rows) if rows else np.zeros((0, 0), np.float32)
    return probs, ({"scale": float(scale), "zero_point": int(zero_point)} if quantized else None)


def _int8_report(probs: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    agree = float((probs.argmax(1) == reference.argmax(1)).mean()) if len(reference) else 1.0
    return {
        "images": len(reference),
        "top1_agreement": agree,
        "max_abs_diff": float(np.abs(probs - reference).max()) if len(reference) else 0.0,
        "top1_floor": INT8_TOP1_FLOOR,
        "passed": agree >= INT8_TOP1_FLOOR,
    }


def export_tflite(
    model: Classifier,
    folder: Path,
    prep: Preprocessing,
    val_paths: list[Path],
    train_paths: list[Path] | None,
    max_pixels: int,
) -> dict[str, Any]:
    """Write model.tflite (and model.int8.tflite when `train_paths` are given to calibrate on)
    into `folder`; return each file's agreement with PyTorch; raise when one fails it."""
    model = model.eval().to("cpu")
    batch = validation_batch(val_paths, prep, max_pixels)
    reference = torch_probabilities(model, batch)
    logging.getLogger("absl").setLevel(logging.ERROR)  # the converter logs each of its passes
    _quiet_converter()
    convert_float(model, folder / TFLITE_MEMBER, prep.crop_size)
    probs, _ = run_tflite(folder / TFLITE_MEMBER, batch)
    report: dict[str, Any] = {
        "file": TFLITE_MEMBER,
        "size_bytes": (folder / TFLITE_MEMBER).stat().st_size,
        **agreement(probs, reference),
    }
    if not report["passed"]:
        raise InternalFailure(
            f"The TFLite model disagrees with PyTorch ({report}). Train again, or report this as a bug."
        )
    reports = {"float32": report}
    if train_paths is not None:
        step = max(1, len(train_paths) // CALIBRATION_IMAGES)
        chosen = train_paths[::step][:CALIBRATION_IMAGES]
        calibration = [array for array, _ in calibration_arrays(chosen, prep, max_pixels)]
        convert_int8(model, folder / TFLITE_INT8_MEMBER, prep.crop_size, calibration)
        probs, quantization = run_tflite(folder / TFLITE_INT8_MEMBER, batch)
        int8 = {
            "file": TFLITE_INT8_MEMBER,
            "size_bytes": (folder / TFLITE_INT8_MEMBER).stat().st_size,
            "input_quantization": quantization,
            **_int8_report(probs, reference),
        }
        if not int8["passed"]:
            raise InternalFailure(
                f"The int8 TFLite model changes the top-1 of too many validation images ({int8}). Export without int8, or report this as a bug."
            )
        reports["int8"] = int8
    return reports
