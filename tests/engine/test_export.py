"""The model zip: self-contained ONNX, parity with PyTorch, a stranger's script, predict.py, reload."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from app.engine.context import RunContext
from app.engine.export import ZIP_MEMBERS
from app.engine.images import model_input
from app.engine.model_zip import OnnxClassifier, evaluate_zip, load_classifier

pytestmark = pytest.mark.weights


def stranger_predict(folder: Path, image_path: Path) -> np.ndarray:
    """Only metadata.json, Pillow and onnxruntime: how someone outside Teachbox would run the model."""
    meta = json.loads((folder / "metadata.json").read_text())
    image = Image.open(image_path).convert("RGB")
    scale = meta["resize_size"] / min(image.size)
    crop = meta["image_size"]
    image = image.resize(
        (max(crop, round(image.width * scale)), max(crop, round(image.height * scale))),
        Image.BILINEAR,
    )
    left, top = (image.width - crop) // 2, (image.height - crop) // 2
    pixels = np.asarray(image.crop((left, top, left + crop, top + crop)), dtype=np.float32) / 255.0
    tensor = (
        ((pixels - np.array(meta["mean"])) / np.array(meta["std"]))
        .astype(np.float32)
        .transpose(2, 0, 1)[None]
    )
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, {meta["input"]["name"]: tensor})[0][0]


def test_zip_holds_every_file_and_a_self_contained_onnx(
    trained_zip: tuple[Path, dict], tmp_path: Path
) -> None:
    path, _ = trained_zip
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == sorted(ZIP_MEMBERS)
        archive.extractall(tmp_path)
    model = onnx.load(str(tmp_path / "model.onnx"), load_external_data=False)
    onnx.checker.check_model(model, full_check=True)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert (
        tmp_path / "model.onnx"
    ).stat().st_size > 8_000_000  # the 3.5M backbone weights are inside
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 224, 224]
    assert (tmp_path / "labels.txt").read_text().split() == ["blue", "red"]


def test_metadata_describes_the_model(trained_zip: tuple[Path, dict]) -> None:
    _, metadata = trained_zip
    assert metadata["labels"] == ["blue", "red"]
    assert (metadata["image_size"], metadata["resize_size"]) == (224, 256)
    assert metadata["mean"] == pytest.approx([0.485, 0.456, 0.406]) and metadata[
        "std"
    ] == pytest.approx([0.229, 0.224, 0.225])
    assert metadata["input"]["layout"] == "NCHW" and metadata["output"]["kind"] == "probabilities"
    assert metadata["backbone"] == "mobilenet_v2" and metadata["mode"] == "transfer"
    assert metadata["params"]["epochs"] == 15 and metadata["params"]["seed"] == 3
    assert {"torch", "onnxruntime", "pillow"} <= set(metadata["versions"])
    assert (
        metadata["parity"]["top1_agree"]
        and metadata["parity"]["max_abs_diff"] < 1e-4
        and metadata["parity"]["images"] == 20  # every image, as the estimate counts them
    )
    assert metadata["created"]


def test_a_strangers_script_scores_what_evaluate_scores(
    trained_zip: tuple[Path, dict], session_colours: Path, tmp_path: Path
) -> None:
    path, metadata = trained_zip
    zipfile.ZipFile(path).extractall(tmp_path)
    images = sorted(session_colours.glob("*/*.jpg"))
    stranger = [
        metadata["labels"][int(stranger_predict(tmp_path, p).argmax())] == p.parent.name
        for p in images
    ]
    ours = evaluate_zip(path, session_colours)
    assert ours["n_images"] == len(images) == 20
    assert ours["accuracy"] == pytest.approx(sum(stranger) / len(stranger))


def test_predict_py_runs_as_shipped(
    trained_zip: tuple[Path, dict], session_colours: Path, tmp_path: Path
) -> None:
    path, _ = trained_zip
    zipfile.ZipFile(path).extractall(tmp_path)
    image = sorted((session_colours / "red").glob("*.jpg"))[0]
    out = subprocess.run(
        [sys.executable, "predict.py", str(image)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split()[1] == "red"


def test_safetensors_reload_predicts_like_onnx(
    trained_zip: tuple[Path, dict], session_colours: Path
) -> None:
    path, _ = trained_zip
    model, _ = load_classifier(path)
    classifier = OnnxClassifier.from_zip(path)
    images = sorted(session_colours.glob("*/*.jpg"))[:6]
    batch = np.stack([model_input(p, classifier.preprocessing) for p in images])
    with torch.inference_mode():
        reloaded = model(torch.from_numpy(batch)).numpy()
    np.testing.assert_allclose(reloaded, classifier.predict_arrays(batch), atol=1e-4)


def test_evaluate_refuses_unknown_classes(trained_zip: tuple[Path, dict], tmp_path: Path) -> None:
    from app.engine.errors import TeachboxError
    from tests.conftest import make_colour_dataset

    root = make_colour_dataset(
        tmp_path, per_class=2, classes={"green": (0, 200, 0), "red": (200, 0, 0)}
    )
    with pytest.raises(
        TeachboxError,
        match="has classes the model does not know: green. The model knows: blue, red.",
    ):
        evaluate_zip(trained_zip[0], root)


def test_int8_export_is_smaller_and_measured(
    session_colours: Path, embedder, tmp_path: Path
) -> None:
    from app.engine.dataset import from_folder
    from app.engine.params import TrainParams
    from app.engine.pipeline import train_to_zip

    params = TrainParams(epochs=5, int8=True)
    metadata = train_to_zip(
        from_folder(session_colours), params, tmp_path / "m.zip", RunContext(embedder)
    )
    report = metadata["int8"]
    assert "model.int8.onnx" in zipfile.ZipFile(tmp_path / "m.zip").namelist()
    assert report["size_bytes"] < report["fp32_size_bytes"] / 2.5
    assert (
        report["images"] == 20  # the images the estimate counts: all of them, out of fold
        and report["accuracy_change"] == report["val_accuracy"] - report["fp32_val_accuracy"]
    )
    assert report["val_accuracy"] == 1.0


def test_a_shared_zip_carries_no_folder_of_the_trainer_and_describes_itself(
    embedder, tmp_path: Path
) -> None:
    from app.engine.dataset import from_folder
    from app.engine.params import TrainParams
    from app.engine.pipeline import train_to_zip
    from tests.conftest import make_colour_dataset

    root = make_colour_dataset(tmp_path / "private" / "photos", per_class=6)
    (root / "red" / "empty.jpg").write_bytes(b"")
    (root / "blue" / "scan.tif").write_bytes(b"II*\x00" + bytes(64))
    out = tmp_path / "m.zip"
    returned = train_to_zip(
        from_folder(root), TrainParams(epochs=5, int8=True), out, RunContext(embedder)
    )
    assert str(root) in json.dumps(returned["metrics"]["skipped"]), "the trainer keeps full paths"
    with zipfile.ZipFile(out) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    for name, data in members.items():
        assert str(tmp_path).encode() not in data, name
        assert b"private/photos" not in data, name
    shipped = json.loads(members["metadata.json"])
    assert sorted(entry["path"] for entry in shipped["metrics"]["skipped"]) == [
        "blue/scan.tif",
        "red/empty.jpg",
    ]
    for name in ("model.onnx", "model.int8.onnx"):
        props = {p.key: p.value for p in onnx.load_from_string(members[name]).metadata_props}
        assert json.loads(props["labels"]) == shipped["labels"] == ["blue", "red"]
        preprocessing = json.loads(props["preprocessing"])
        assert (preprocessing["resize_size"], preprocessing["image_size"]) == (256, 224)
        assert preprocessing["mean"] == shipped["mean"] and preprocessing["std"] == shipped["std"]
        assert preprocessing["input"] == shipped["input"]
    readme = members["README.md"].decode()
    for name in members:
        assert f"`{name}`" in readme, f"the zip's README does not name {name}"
    assert "onnxruntime-web" in readme and "OrtEnvironment" in readme and "ORTSession" in readme
    assert "Labels, in output order: blue, red." in readme
    zipfile.ZipFile(out).extractall(tmp_path / "unzipped")
    image = sorted((root / "red").glob("red_*.jpg"))[0]
    int8_run = subprocess.run(
        [sys.executable, "predict.py", "--int8", "--top", "1", str(image)],
        cwd=tmp_path / "unzipped",
        capture_output=True,
        text=True,
        check=True,
    )
    assert int8_run.stdout.startswith(f"{image}: red ")
