"""Save and open a whole project: the round trip keeps names, image bytes and a working model;
hostile or broken bundles are refused with the zip import's own sentences, leaving nothing behind."""

from __future__ import annotations

import hashlib
import io
import json
import stat
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient

from app.config import Settings
from app.service.bundles import BUNDLE_FORMAT, BUNDLE_VERSION
from app.web.factory import create_app
from tests.web.api_helpers import (
    BLUE,
    LOCAL,
    RED,
    image_bytes,
    make_trainable,
    make_zip,
    read_events,
)
from tests.web.test_security_archives import BOMBS, ESCAPES, Payload, model_files, torch_file

REFUSED = "This is not a Teachbox project bundle that can be opened: {}. Give the file that Save project (or `teachbox bundle save`) wrote."


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[dict[str, Any]]:
    """One project trained once through the API, and its bundle."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("bundles"), cache_dir=cache_dir, embed_on_upload=False
    )
    with TestClient(create_app(settings), base_url=LOCAL) as client:
        pid, _ = make_trainable(client, per_class=5)
        client.patch(f"/api/projects/{pid}", json={"name": "Fruit & veg"})
        created = client.post(f"/api/projects/{pid}/jobs", json={"mode": "transfer", "epochs": 5})
        assert read_events(client, created.json()["id"])[-1]["event"] == "done"
        response = client.get(f"/api/projects/{pid}/bundle")
        yield {"client": client, "pid": pid, "response": response, "bundle": response.content}


def post_bundle(client: TestClient, data: bytes) -> Any:
    return client.post(
        "/api/projects/bundle", files={"file": ("p.teachbox.zip", data, "application/zip")}
    )


def project_count(client: TestClient) -> int:
    return len(client.get("/api/projects").json())


def predictions(client: TestClient, pid: str, data: bytes) -> list[dict[str, Any]]:
    response = client.post(
        f"/api/projects/{pid}/predict", files={"file": ("x.jpg", data, "image/jpeg")}
    )
    assert response.status_code == 200, response.text
    return response.json()["predictions"]


def stored_hashes(client: TestClient, pid: str) -> list[tuple[str, str]]:
    """(class name, sha256 of the stored file) for every image, from the files themselves."""
    store = client.app.state.store
    names = {c.id: c.name for c in store.list_classes(pid)}
    return sorted(
        (names[image.class_id], hashlib.sha256(store.image_path(image).read_bytes()).hexdigest())
        for image in store.list_images(pid)
    )


@pytest.mark.weights
@pytest.mark.slow
def test_a_bundle_opens_as_the_same_project_with_a_model_that_predicts(
    saved: dict[str, Any],
) -> None:
    client, pid, response = saved["client"], saved["pid"], saved["response"]
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    assert (
        response.headers["content-disposition"] == 'attachment; filename="Fruit-veg.teachbox.zip"'
    )
    with zipfile.ZipFile(io.BytesIO(saved["bundle"])) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert "model.zip" in archive.namelist()
    assert manifest["format"] == BUNDLE_FORMAT and manifest["version"] == BUNDLE_VERSION
    assert manifest["name"] == "Fruit & veg" and manifest["classes"] == ["red", "blue"]
    assert manifest["model"]["params"]["mode"] == "transfer"
    assert manifest["model"]["params"]["epochs"] == 5

    before = project_count(client)
    opened = post_bundle(client, saved["bundle"])
    assert opened.status_code == 201, opened.text
    new = opened.json()
    assert new["name"] == "Fruit & veg" and new["id"] != pid
    assert new["class_count"] == 2 and new["image_count"] == 10
    assert project_count(client) == before + 1
    assert [c["name"] for c in client.get(f"/api/projects/{new['id']}/classes").json()] == [
        "red",
        "blue",
    ]
    assert stored_hashes(client, new["id"]) == stored_hashes(client, pid)
    # The model came with it: predict answers at once, as the original does, without training.
    detail = client.get(f"/api/projects/{new['id']}").json()
    assert detail["model_job_id"] is not None and detail["active_job"] is None
    job = client.get(f"/api/jobs/{detail['model_job_id']}").json()
    assert job["status"] == "succeeded" and job["params"]["epochs"] == 5
    for colour in (RED, BLUE):
        photo = image_bytes(colour, seed=999)
        original, reopened = predictions(client, pid, photo), predictions(client, new["id"], photo)
        assert [p["label"] for p in reopened] == [p["label"] for p in original]
        assert all(
            abs(a["probability"] - b["probability"]) < 1e-4
            for a, b in zip(original, reopened, strict=True)
        )
    model = client.get(f"/api/jobs/{detail['model_job_id']}/model")
    assert model.status_code == 200
    metadata = json.loads(zipfile.ZipFile(io.BytesIO(model.content)).read("metadata.json"))
    assert metadata["parity"]["passed"] and metadata["labels"] == ["red", "blue"]


def test_a_project_without_a_model_round_trips(client: TestClient) -> None:
    pid, _ = make_trainable(client, per_class=2)
    bundle = client.get(f"/api/projects/{pid}/bundle")
    assert bundle.status_code == 200
    manifest = json.loads(zipfile.ZipFile(io.BytesIO(bundle.content)).read("manifest.json"))
    assert manifest["model"] is None and len(manifest["images"]) == 4
    opened = post_bundle(client, bundle.content)
    assert opened.status_code == 201, opened.text
    assert stored_hashes(client, opened.json()["id"]) == stored_hashes(client, pid)
    assert client.get(f"/api/projects/{opened.json()['id']}").json()["model_job_id"] is None


def test_a_missing_project_has_no_bundle(client: TestClient) -> None:
    assert client.get("/api/projects/" + "0" * 32 + "/bundle").status_code == 404


# Broken bundles: each refused with a sentence, and no project is created.


def manifest_bytes(**changes: Any) -> bytes:
    manifest = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "name": "p",
        "classes": ["red"],
        "images": [
            {
                "file": "images/0/a.jpg",
                "class_name": "red",
                "filename": "a.jpg",
                "sha256": hashlib.sha256(image_bytes()).hexdigest(),
            }
        ],
        "model": None,
    }
    return json.dumps({**manifest, **changes}).encode()


def bundle_of(manifest: bytes | None = None, **entries: bytes) -> bytes:
    files = {"manifest.json": manifest or manifest_bytes(), "images/0/a.jpg": image_bytes()}
    if manifest is None and "manifest.json" in entries:
        files["manifest.json"] = entries.pop("manifest.json")
    return make_zip({**files, **entries})


def test_a_hand_made_valid_bundle_opens(client: TestClient) -> None:
    response = post_bundle(client, bundle_of())
    assert response.status_code == 201, response.text
    assert response.json()["image_count"] == 1


BROKEN: dict[str, tuple[bytes, str]] = {
    "not a zip": (
        b"hello",
        "The file is not a zip archive. Give the bundle that Save project (or `teachbox bundle save`) wrote.",
    ),
    "no manifest": (
        make_zip({"images/0/a.jpg": image_bytes()}),
        REFUSED.format("it has no manifest.json"),
    ),
    "manifest not JSON": (bundle_of(b"{nope"), REFUSED.format("its manifest.json is not JSON")),
    "another format": (
        bundle_of(manifest_bytes(format="something-else")),
        REFUSED.format(f"its manifest.json does not say format '{BUNDLE_FORMAT}'"),
    ),
    "from the future": (
        bundle_of(manifest_bytes(version=BUNDLE_VERSION + 1)),
        f"This bundle was saved by a newer Teachbox (bundle version {BUNDLE_VERSION + 1}; this one opens up to {BUNDLE_VERSION}). Update Teachbox, then open it.",
    ),
    "classes missing": (
        bundle_of(manifest_bytes(classes=None)),
        REFUSED.format("its manifest.json has a bad 'classes' (Input should be a valid list)"),
    ),
    "image missing": (
        make_zip({"manifest.json": manifest_bytes()}),
        REFUSED.format("the image 'images/0/a.jpg' is missing from it"),
    ),
    "image of an unknown class": (
        bundle_of(manifest_bytes(classes=["blue"])),
        REFUSED.format("the image 'images/0/a.jpg' is of a class it does not list"),
    ),
    "image altered": (
        bundle_of(**{"images/0/a.jpg": image_bytes(seed=5)}),
        REFUSED.format("the image 'images/0/a.jpg' does not match its sha256"),
    ),
    "bad class name": (
        bundle_of(manifest_bytes(classes=["a/b"])),
        REFUSED.format("a name in it is not valid (A class name may not contain slashes.)"),
    ),
    "name not as stored": (
        bundle_of(manifest_bytes(name="  padded  ")),
        REFUSED.format("a name in it is not as Teachbox stores names"),
    ),
    "class named twice": (
        bundle_of(manifest_bytes(classes=["red", "red"])),
        REFUSED.format("it names a class twice"),
    ),
    "model missing": (
        bundle_of(
            manifest_bytes(
                model={"file": "model.zip", "params": {}, "labels": ["red"], "metrics": None}
            )
        ),
        REFUSED.format("its model, model.zip, is missing"),
    ),
    "model not a model": (
        bundle_of(
            manifest_bytes(
                model={"file": "model.zip", "params": {}, "labels": ["red"], "metrics": None}
            ),
            **{"model.zip": make_zip({"metadata.json": b"{}"})},
        ),
        REFUSED.format("its model cannot be loaded (KeyError: 'backbone')"),
    ),
}


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_bundle_is_refused_and_creates_nothing(client: TestClient, case: str) -> None:
    data, sentence = BROKEN[case]
    before = files_and_projects(client)
    response = post_bundle(client, data)
    assert response.status_code == 400, response.text
    assert response.json()["detail"] == sentence
    assert files_and_projects(client) == before


def files_and_projects(client: TestClient) -> tuple[int, list[str]]:
    projects = client.app.state.settings.data_dir / "projects"
    return project_count(client), sorted(str(p) for p in projects.rglob("*"))


# Hostile bundles: the zip import's own cases, refused with its own sentences before any read.


def bundle_with_symlink() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("manifest.json", manifest_bytes())
        archive.writestr("images/0/a.jpg", image_bytes())
        link = zipfile.ZipInfo("images/0/link.jpg")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "../../../../etc/passwd")
    return buffer.getvalue()


@pytest.mark.parametrize("entry", [*ESCAPES, "symlink"])
def test_escaping_entries_and_symlinks_refuse_the_bundle(
    client: TestClient, zip_reads: list[str], entry: str
) -> None:
    if entry == "symlink":
        data = bundle_with_symlink()
        sentence = "The archive entry 'link.jpg' is a symbolic link. Zip the images themselves and import again."
    else:
        data, sentence = bundle_of(**{entry: image_bytes(seed=1)}), ESCAPES[entry]
    before = files_and_projects(client)
    zip_reads.clear()
    response = post_bundle(client, data)
    assert response.status_code == 400
    assert response.json() == {"detail": sentence}
    assert zip_reads == []
    assert files_and_projects(client) == before


def as_bundle(archive: bytes) -> bytes:
    """The same entries, compressed the same way, beside a valid manifest."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(archive)) as source,
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle,
    ):
        bundle.writestr("manifest.json", manifest_bytes())
        for info in source.infolist():
            bundle.writestr(info.filename, source.read(info))
    return buffer.getvalue()


BOMB_BUNDLES = {kind: as_bundle(archive) for kind, (_, archive, _) in BOMBS.items()}


@pytest.mark.parametrize("kind", BOMBS)
def test_zip_bombs_refuse_the_bundle_before_any_read(
    make_client: Callable[..., TestClient], zip_reads: list[str], kind: str
) -> None:
    overrides, _, sentence = BOMBS[kind]
    client, data = make_client(**overrides), BOMB_BUNDLES[kind]
    response = post_bundle(client, data)
    assert response.status_code == 413
    if kind == "ratio":
        total = sum(info.file_size for info in zipfile.ZipFile(io.BytesIO(data)).infolist())
        sentence = sentence.format(ratio=f"{total / len(data):.0f}")
    sentence = sentence.replace("51 entries", "52 entries")  # the manifest is one more
    assert response.json()["detail"] == sentence
    assert zip_reads == []
    assert project_count(client) == 0


def test_model_files_refuse_the_bundle_unread(client: TestClient, tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    for name, data in model_files(marker).items():
        response = post_bundle(client, bundle_of(**{name: data}))
        assert response.status_code == 400, name
        filename = name.rsplit("/", 1)[1]
        assert response.json() == {
            "detail": f"The archive contains a model file, '{filename}'; Teachbox never loads models from uploads. Remove it and import again."
        }
    assert not marker.exists()
    assert project_count(client) == 0


def model_bundle(weights: bytes) -> bytes:
    """A bundle whose model.zip names a real backbone but holds other weights."""
    metadata = {"backbone": "mobilenet_v2", "labels": ["red"], "params": {}, "metrics": {}}
    inner = make_zip({"metadata.json": json.dumps(metadata).encode(), "model.safetensors": weights})
    model = {"file": "model.zip", "params": {}, "labels": ["red"], "metrics": None}
    return bundle_of(manifest_bytes(model=model), **{"model.zip": inner})


def test_a_bundled_model_is_weights_for_our_network_or_refused(
    client: TestClient, tmp_path: Path
) -> None:
    """Foreign tensors do not fit Teachbox's network, and a pickle posing as safetensors never
    runs: either way the bundle is refused and nothing is created."""
    marker = tmp_path / "unpickled"
    buffer = io.BytesIO()
    save(tensors={"head.0.weight": torch.zeros(1, 4)}, buffer=buffer)
    for weights in (buffer.getvalue(), torch_file({"weight": Payload(marker)})):
        response = post_bundle(client, model_bundle(weights))
        assert response.status_code == 400, response.text
        assert response.json()["detail"].startswith(
            REFUSED.split("{}")[0] + "its model cannot be loaded ("
        )
    assert not marker.exists()
    assert project_count(client) == 0


def save(tensors: dict[str, torch.Tensor], buffer: io.BytesIO) -> None:
    from safetensors.torch import save as to_bytes

    buffer.write(to_bytes(tensors))
