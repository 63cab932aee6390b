"""Share links over the API: publish (201), the public files under /s/<token>/, their headers,
a new training changing what is served, revoking (204, then 404 everywhere)."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from fastapi.testclient import TestClient

from app.engine.web_page import page_files
from app.web.middleware import SHARE_CONTENT_SECURITY_POLICY
from tests.web.api_helpers import create_class, image_bytes, upload, wait_for_job

pytestmark = pytest.mark.weights


def train(client: TestClient, pid: str) -> str:
    jid = client.post(f"/api/projects/{pid}/jobs", json={"epochs": 3}).json()["id"]
    assert wait_for_job(client, jid, {"succeeded", "failed"})["status"] == "succeeded"
    return jid


def zip_member(client: TestClient, jid: str, name: str) -> bytes:
    return zipfile.ZipFile(io.BytesIO(client.get(f"/api/jobs/{jid}/model").content)).read(name)


def test_a_project_without_a_model_cannot_be_shared(
    client: TestClient, trainable: tuple[str, dict[str, str]]
) -> None:
    pid, _ = trainable
    response = client.post(f"/api/projects/{pid}/share")
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "This project has no trained model yet. Train it first, then share it."
    )
    assert client.get(f"/api/projects/{pid}/share").json() == {
        "shared": False,
        "url": None,
        "token": None,
        "embed": None,
    }


def test_share_link_lifecycle(client: TestClient, trainable: tuple[str, dict[str, str]]) -> None:
    pid, _ = trainable
    first = train(client, pid)
    created = client.post(f"/api/projects/{pid}/share")
    assert created.status_code == 201
    share = created.json()
    token = share["token"]
    assert share["shared"] and len(token) >= 32 and share["url"] == f"http://127.0.0.1/s/{token}/"
    assert f'src="{share["url"]}"' in share["embed"] and 'allow="camera"' in share["embed"]
    assert client.post(f"/api/projects/{pid}/share").json() == share, "one link per project"
    assert client.get(f"/api/projects/{pid}/share").json() == share

    base = f"/s/{token}"
    redirect = client.get(f"{base}/", follow_redirects=False)
    assert redirect.status_code == 307 and redirect.headers["location"] == f"{base}/web/"
    page = client.get(f"{base}/web/")
    assert page.status_code == 200 and 'data-testid="file-input"' in page.text
    assert page.headers["content-security-policy"] == SHARE_CONTENT_SECURITY_POLICY
    assert "x-frame-options" not in page.headers
    for name, source in page_files().items():
        served = client.get(f"{base}/web/{name}")
        assert served.status_code == 200 and served.content == source.read_bytes(), name
    assert (
        client.get(f"{base}/web/ort/ort-wasm-simd-threaded.wasm").headers["content-type"]
        == "application/wasm"
    )
    assert client.get(f"{base}/model.onnx").content == zip_member(client, first, "model.onnx")
    metadata = client.get(f"{base}/metadata.json").json()
    assert metadata["labels"] == ["red", "blue"] and metadata["image_size"] == 224
    assert "metrics" not in metadata and "params" not in metadata, "training details stay private"
    assert client.get(f"{base}/model.safetensors").status_code == 404
    assert client.get(f"{base}/model.int8.onnx").status_code == 404  # trained without int8
    assert client.get("/api/projects").headers["x-frame-options"] == "DENY", "only /s/ is framed"

    green = create_class(client, pid, "green")
    upload(
        client, pid, green, [(f"g{i}.jpg", image_bytes((30, 200, 30), seed=i)) for i in range(5)]
    )
    second = train(client, pid)
    assert client.get(f"{base}/model.onnx").content == zip_member(client, second, "model.onnx")
    assert client.get(f"{base}/model.onnx").content != zip_member(client, first, "model.onnx")
    labels = json.loads(client.get(f"{base}/metadata.json").content)["labels"]
    assert sorted(labels) == ["blue", "green", "red"], "the link serves the new model"

    assert client.delete(f"/api/projects/{pid}/share").status_code == 204
    for path in (
        "/",
        "/web/",
        "/web/index.html",
        "/web/ort/ort.wasm.min.js",
        "/model.onnx",
        "/metadata.json",
    ):
        gone = client.get(f"{base}{path}", follow_redirects=False)
        assert gone.status_code == 404, path
    assert client.get(f"/api/projects/{pid}/share").json() == {
        "shared": False,
        "url": None,
        "token": None,
        "embed": None,
    }
    again = client.post(f"/api/projects/{pid}/share").json()
    assert again["token"] != token, "sharing after a revoke makes a new link"


def test_a_made_up_token_is_404(client: TestClient) -> None:
    response = client.get("/s/not-a-real-token/web/")
    assert response.status_code == 404
    assert "does not exist or was revoked" in response.json()["detail"]


def test_deleting_the_project_ends_its_link(
    client: TestClient, trainable: tuple[str, dict[str, str]]
) -> None:
    pid, _ = trainable
    train(client, pid)
    token = client.post(f"/api/projects/{pid}/share").json()["token"]
    assert client.delete(f"/api/projects/{pid}").status_code == 204
    assert client.get(f"/s/{token}/model.onnx").status_code == 404
