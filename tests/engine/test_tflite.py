"""TFLite in the model zip: converted by litert-torch, run by the LiteRT interpreter, checked
against PyTorch and ONNX Runtime; without the extra or the setting, the zip says why it has none."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app.engine.context import RunContext
from app.engine.dataset import from_folder
from app.engine.export import NOT_ASKED
from app.engine.images import model_input
from app.engine.model_zip import OnnxClassifier
from app.engine.params import TrainParams
from app.engine.pipeline import train_to_zip
from app.engine.tflite import TFLITE_INT8_MEMBER, TFLITE_MEMBER, tflite_missing

pytestmark = pytest.mark.weights


def test_a_zip_without_tflite_says_why(trained_zip: tuple[Path, dict]) -> None:
    path, metadata = trained_zip
    assert metadata["parity"]["tflite"] == {"skipped": NOT_ASKED}
    with zipfile.ZipFile(path) as archive:
        assert TFLITE_MEMBER not in archive.namelist()
        readme = archive.read("README.md").decode()
    assert f"- No `model.tflite`: {NOT_ASKED}" in readme
    assert "LiteRT Interpreter" not in readme


@pytest.mark.slow
@pytest.mark.skipif(tflite_missing() is not None, reason="the tflite extra is not installed")
def test_tflite_files_agree_with_pytorch_and_onnx(
    session_colours: Path, embedder, tmp_path: Path
) -> None:
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "m.zip"
    metadata = train_to_zip(
        from_folder(session_colours),
        TrainParams(epochs=5, int8=True, seed=3),
        out,
        RunContext(embedder, tflite=True),
    )
    report = metadata["parity"]["tflite"]
    assert report["float32"]["passed"] and report["float32"]["top1_agree"]
    assert report["float32"]["max_abs_diff"] < report["float32"]["tolerance"]
    assert report["float32"]["images"] == 20  # every image, as the out-of-fold estimate counts them
    assert report["int8"]["passed"] and report["int8"]["top1_agreement"] == 1.0
    assert report["int8"]["size_bytes"] < report["float32"]["size_bytes"] / 2.5
    with zipfile.ZipFile(out) as archive:
        archive.extractall(tmp_path / "zip")
    folder = tmp_path / "zip"
    assert json.loads((folder / "metadata.json").read_text())["parity"]["tflite"] == report
    readme = (folder / "README.md").read_text()
    assert "`model.tflite`" in readme and "`model.int8.tflite`" in readme
    assert "Interpreter(model)" in readme

    # A stranger's run of model.tflite on one validation image gives what model.onnx gives.
    image = next((session_colours / "red").iterdir())
    classifier = OnnxClassifier.from_zip(out)
    pixels = model_input(image, classifier.preprocessing)[None]
    interpreter = Interpreter(model_path=str(folder / TFLITE_MEMBER))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels)
    interpreter.invoke()
    tflite_probs = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
    onnx_probs = classifier.predict_arrays(pixels)[0]
    assert np.abs(tflite_probs - onnx_probs).max() < 1e-4
    assert classifier.labels[int(tflite_probs.argmax())] == "red"

    # The int8 file takes int8 input made with the scale and zero point the zip records.
    quant = report["int8"]["input_quantization"]
    interpreter = Interpreter(model_path=str(folder / TFLITE_INT8_MEMBER))
    interpreter.allocate_tensors()
    source = interpreter.get_input_details()[0]
    assert source["dtype"] == np.int8
    quantized = np.clip(np.round(pixels / quant["scale"]) + quant["zero_point"], -128, 127)
    interpreter.set_tensor(source["index"], quantized.astype(np.int8))
    interpreter.invoke()
    int8_probs = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
    assert classifier.labels[int(int8_probs.argmax())] == "red"
