"""Optional int8 export: ONNX Runtime static quantization, with its accuracy change measured, not assumed."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from app.engine.errors import ImageRejected
from app.engine.images import DEFAULT_MAX_PIXELS, Preprocessing, model_input
from app.engine.onnx_runtime import cpu_session

CALIBRATION_IMAGES = 64


class _Calibration(CalibrationDataReader):
    def __init__(self, batches: Iterator[np.ndarray]) -> None:
        self.batches = batches

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {"input": batch[None]}


def calibration_arrays(
    paths: list[Path], prep: Preprocessing, max_pixels: int, tags: list[int] | None = None
) -> Iterator[tuple[np.ndarray, int]]:
    """Model inputs of the readable images, each with its tag (a label, or its position)."""
    for index, path in enumerate(paths):
        try:
            yield (
                model_input(path, prep, max_pixels=max_pixels),
                tags[index] if tags is not None else index,
            )
        except ImageRejected:
            continue


def quantize_model(
    fp32_path: Path,
    int8_path: Path,
    calibration: list[Path],
    prep: Preprocessing,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> None:
    """Static QDQ quantization (int8 weights per channel, uint8 activations) calibrated on training images."""
    step = max(1, len(calibration) // CALIBRATION_IMAGES)
    chosen = calibration[::step][:CALIBRATION_IMAGES]
    with tempfile.TemporaryDirectory() as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        logging.getLogger("root").disabled = True  # the quantizer logs advice to the root logger
        try:
            quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(int8_path),
                _Calibration(array for array, _ in calibration_arrays(chosen, prep, max_pixels)),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
            )
        finally:
            logging.getLogger("root").disabled = False


def compare_models(
    fp32_path: Path,
    int8_path: Path,
    paths: list[Path],
    labels: list[int],
    prep: Preprocessing,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict[str, Any]:
    """Accuracy of both models on the validation images, how often they agree, and their sizes."""
    kept = list(calibration_arrays(paths, prep, max_pixels, labels))
    batch = (
        np.stack([a for a, _ in kept])
        if kept
        else np.zeros((0, 3, prep.crop_size, prep.crop_size), np.float32)
    )
    truth = np.array([label for _, label in kept])

    def top1(path: Path) -> np.ndarray:
        session = cpu_session(path, keep_memory=False)
        return (
            np.concatenate(
                [
                    session.run(None, {"input": batch[i : i + 32]})[0].argmax(1)
                    for i in range(0, len(batch), 32)
                ]
            )
            if len(batch)
            else truth
        )

    fp32, int8 = top1(fp32_path), top1(int8_path)
    fp32_acc = float((fp32 == truth).mean()) if len(truth) else 0.0
    int8_acc = float((int8 == truth).mean()) if len(truth) else 0.0
    return {
        "file": int8_path.name,
        "size_bytes": int8_path.stat().st_size,
        "fp32_size_bytes": fp32_path.stat().st_size,
        "val_accuracy": int8_acc,
        "fp32_val_accuracy": fp32_acc,
        "accuracy_change": int8_acc - fp32_acc,
        "top1_agreement": float((fp32 == int8).mean()) if len(truth) else 1.0,
        "images": len(truth),
    }
