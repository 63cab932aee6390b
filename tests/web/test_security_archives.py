"""Issue 6, cases 16-18: hostile archives and model files.

Imports are never extracted to disk (each entry is read into memory, bounded, and validated like an
upload), so "nothing outside its folder" is checked on the whole temporary tree around the data dir.
"""

from __future__ import annotations

import ast
import io
import pickle
import stat
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest
import torch
from fastapi.testclient import TestClient
from onnx import TensorProto, helper

from app.engine.backbones import load_state_dict
from app.engine.errors import TeachboxError
from tests.web.api_helpers import (
    RED,
    create_class,
    create_project,
    files_under,
    image_bytes,
    make_zip,
    post_zip,
    upload,
)

APP = Path(__file__).resolve().parents[2] / "app"


@pytest.fixture
def project(client: TestClient) -> str:
    """A project that already holds one class with one image, which no import may disturb."""
    pid = create_project(client)
    cid = create_class(client, pid, "kept")
    assert upload(client, pid, cid, [("kept.jpg", image_bytes(seed=42))]).status_code == 200
    return pid


@pytest.fixture
def untouched(client: TestClient, project: str, tmp_path: Path) -> Callable[[], None]:
    """A check that neither the data dir nor anything else under the test's folder changed."""
    data_dir = client.app.state.settings.data_dir
    before = files_under(tmp_path)
    classes = client.get(f"/api/projects/{project}/classes").json()

    def check() -> None:
        assert files_under(tmp_path) == before
        assert client.get(f"/api/projects/{project}/classes").json() == classes
        assert not (data_dir.parent / "evil").exists() and not (data_dir / "evil").exists()

    return check


# 16. An import zip with ../ entries, absolute paths or symlinks -> 400, nothing extracted outside.

OUTSIDE = "points outside its folder. Zip the class folders themselves and import again."
ESCAPES = {
    "../evil/a.jpg": f"The archive entry 'a.jpg' {OUTSIDE}",
    "red/../../evil/a.jpg": f"The archive entry 'a.jpg' {OUTSIDE}",
    "..\\..\\evil\\a.jpg": f"The archive entry 'a.jpg' {OUTSIDE}",
    "/etc/evil/a.jpg": f"The archive entry 'a.jpg' {OUTSIDE}",
    "C:/evil/a.jpg": f"The archive entry 'a.jpg' {OUTSIDE}",
    "C:\\evil\\a.jpg": f"The archive entry 'a.jpg' {OUTSIDE}",
    "red/..": f"The archive entry '..' {OUTSIDE}",
}


def _with_symlink() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("red/good.jpg", image_bytes())
        link = zipfile.ZipInfo("red/link.jpg")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "../../../../etc/passwd")
    return buffer.getvalue()


@pytest.mark.parametrize("entry", [*ESCAPES, "symlink"])
def test_case_16_escaping_entries_and_symlinks_refuse_the_whole_archive(
    client: TestClient,
    project: str,
    untouched: Callable[[], None],
    zip_reads: list[str],
    entry: str,
) -> None:
    if entry == "symlink":
        archive = _with_symlink()
        sentence = "The archive entry 'link.jpg' is a symbolic link. Zip the images themselves and import again."
    else:
        archive = make_zip({"red/good.jpg": image_bytes(RED), entry: image_bytes(seed=1)})
        sentence = ESCAPES[entry]
    response = post_zip(client, project, archive)
    assert response.status_code == 400
    assert response.json() == {"detail": sentence}
    assert zip_reads == []
    untouched()


# 17. A zip bomb (total uncompressed size, entry count or ratio over the caps) -> 413 before extraction.


def _understated(name: str, data: bytes, declared: int) -> bytes:
    """A zip whose headers claim the entry unpacks to `declared` bytes, while it holds `data`."""
    real = make_zip({name: data}, zipfile.ZIP_DEFLATED)
    local, central = real.index(b"PK\x03\x04"), real.index(b"PK\x01\x02")
    patched = bytearray(real)
    struct.pack_into("<I", patched, local + 22, declared)
    struct.pack_into("<I", patched, central + 24, declared)
    return bytes(patched)


BOMBS = {
    "total size": (
        {"max_import_mb": 1},
        make_zip({f"red/{i}.bmp": bytes(400_000) for i in range(3)}, zipfile.ZIP_DEFLATED),
        "The archive unpacks to 1.2 MB, over the limit of 1 MB. Split it and import the parts.",
    ),
    "entry count": (
        {"max_import_files": 50},
        make_zip({f"red/{i}.jpg": b"x" for i in range(51)}),
        "The archive has 51 entries, over the limit of 50. Split it and import the parts.",
    ),
    "ratio": (
        {},
        make_zip(
            {"red/a.jpg": image_bytes(), "red/zeros.bmp": bytes(30_000_000)}, zipfile.ZIP_DEFLATED
        ),
        "The archive unpacks to {ratio} times its size, which looks like a zip bomb. Zip the images themselves.",
    ),
}


@pytest.mark.parametrize("kind", BOMBS)
def test_case_17_zip_bombs_are_413_before_any_entry_is_read(
    make_client: Callable[..., TestClient], zip_reads: list[str], kind: str
) -> None:
    overrides, archive, sentence = BOMBS[kind]
    client = make_client(**overrides)
    pid = create_project(client)
    response = post_zip(client, pid, archive)
    assert response.status_code == 413
    detail = response.json()["detail"]
    if kind == "ratio":
        total = sum(info.file_size for info in zipfile.ZipFile(io.BytesIO(archive)).infolist())
        sentence = sentence.format(ratio=f"{total / len(archive):.0f}")
    assert detail == sentence
    assert zip_reads == []
    assert client.get(f"/api/projects/{pid}/classes").json() == []


def test_case_17_an_entry_that_understates_its_size_is_read_no_further(
    client: TestClient, project: str, zip_reads: list[str]
) -> None:
    """Headers that lie pass the caps, but the read stops at the declared size: no bomb goes off."""
    archive = _understated("red/liar.bmp", bytes(50_000_000), declared=1000)
    assert len(archive) < 100_000
    response = post_zip(client, project, archive)
    assert response.status_code == 200
    [rejected] = response.json()["rejected"]
    assert rejected["filename"] == "liar.bmp"
    assert rejected["reason"].startswith("The file is damaged or encrypted inside the archive (")
    assert zip_reads == ["red/liar.bmp"]


def test_case_17_an_archive_inside_the_archive_is_not_opened(
    client: TestClient, project: str, zip_reads: list[str]
) -> None:
    inner = make_zip({"red/a.jpg": image_bytes()})
    response = post_zip(
        client, project, make_zip({"red/inner.jpg": inner, "red/ok.jpg": image_bytes(seed=3)})
    )
    assert [item["filename"] for item in response.json()["added"]] == ["ok.jpg"]
    assert response.json()["rejected"] == [
        {
            "filename": "inner.jpg",
            "reason": "This file is not an image Teachbox can read. Use JPEG, PNG, WebP, BMP or GIF.",
        }
    ]
    assert sorted(zip_reads) == ["red/inner.jpg", "red/ok.jpg"]


# 18. Model files are never unpickled from user input; an uploaded .pt/.pth/TorchScript/ONNX is refused.


class Payload:
    """Unpickling this creates `marker`: proof that something ran code from the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def torch_file(payload: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    return buffer.getvalue()


def torchscript_file() -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # TorchScript is deprecated, and still what many people upload
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), buffer)
    return buffer.getvalue()


def onnx_file() -> bytes:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    return onnx.helper.make_model(graph).SerializeToString()


def model_files(marker: Path) -> dict[str, bytes]:
    evil = torch_file({"weight": Payload(marker)})
    return {
        "red/model.pt": evil,
        "red/weights.PTH": evil,
        "red/scripted.ptl": torchscript_file(),
        "red/model.torchscript": torchscript_file(),
        "red/net.onnx": onnx_file(),
        "red/data.pkl": pickle.dumps(Payload(marker)),
        "red/checkpoint.ckpt": evil,
        "red/model.safetensors": b"{}",
        "red/pytorch_model.bin": evil,
        "red/keras.h5": b"\x89HDF\r\n\x1a\n",
        "red/array.npy": b"\x93NUMPY",
    }


def test_case_18_model_files_in_an_import_refuse_the_whole_archive(
    client: TestClient, project: str, untouched: Callable[[], None], tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    for name, data in model_files(marker).items():
        response = post_zip(client, project, make_zip({"red/good.jpg": image_bytes(), name: data}))
        assert response.status_code == 400, name
        filename = name.rsplit("/", 1)[1]
        assert response.json() == {
            "detail": f"The archive contains a model file, '{filename}'; Teachbox never loads models from uploads. Remove it and import again."
        }
    assert not marker.exists()
    untouched()


def test_case_18_model_files_disguised_as_images_are_refused_unread(
    client: TestClient, project: str, tmp_path: Path
) -> None:
    marker = tmp_path / "unpickled"
    disguised = {
        "model.jpg": torch_file({"weight": Payload(marker)}),
        "pickle.jpg": pickle.dumps(Payload(marker)),
        "script.png": torchscript_file(),
        "net.jpg": onnx_file(),
    }
    archive = make_zip({f"red/{name}": data for name, data in disguised.items()})
    imported = post_zip(client, project, archive).json()
    assert imported["added"] == [] and len(imported["rejected"]) == len(disguised)
    cid = client.get(f"/api/projects/{project}/classes").json()[0]["id"]
    uploaded = upload(client, project, cid, list(disguised.items())).json()
    assert uploaded["added"] == [] and len(uploaded["rejected"]) == len(disguised)
    assert not marker.exists()


def test_case_18_the_engine_reads_weights_without_unpickling(tmp_path: Path) -> None:
    """A checkpoint that would run code is refused by `weights_only=True`, and the code never runs."""
    marker = tmp_path / "unpickled"
    checkpoint = tmp_path / "mobilenet_v2.pth"
    checkpoint.write_bytes(torch_file({"features.0.weight": Payload(marker)}))
    with pytest.raises(TeachboxError) as refused:
        load_state_dict(checkpoint)
    assert "could not be read" in refused.value.message
    assert not marker.exists()


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    return [(ast.unparse(node.func), node) for node in ast.walk(tree) if isinstance(node, ast.Call)]


def test_case_18_no_code_path_in_the_app_unpickles() -> None:
    """Every torch.load passes weights_only=True; nothing imports pickle, loads TorchScript or
    lets numpy unpickle; weights are written and read as safetensors."""
    loads = []
    for path in sorted(APP.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [alias.name for alias in node.names] + [getattr(node, "module", "") or ""]
                assert not {"pickle", "dill", "joblib", "cloudpickle"} & set(names), path
        for name, call in _calls(tree):
            keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
            assert name not in ("torch.jit.load", "pickle.load", "pickle.loads"), (path, name)
            if name == "torch.load":
                loads.append(path.name)
                assert keywords.get("weights_only") == "True", (path, ast.unparse(call))
            if name in ("np.load", "numpy.load"):
                assert keywords.get("allow_pickle", "False") == "False", (path, ast.unparse(call))
    assert loads == ["backbones.py"]
    assert "from safetensors.torch import save_file" in (APP / "engine" / "export.py").read_text()
    assert (
        "from safetensors.torch import load_file" in (APP / "engine" / "model_zip.py").read_text()
    )
