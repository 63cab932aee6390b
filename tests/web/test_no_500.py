"""Issue 14, item 3: no input and no race makes a 500. Each answers a 4xx JSON sentence with the
security headers, leaves no stray files, and names are NFC-normalised before they are compared."""

from __future__ import annotations

import threading
import unicodedata
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from app.config import Settings
from app.engine.errors import NotFound
from app.service.records import new_id
from app.service.store import Store
from app.service.uploads import prepare_image
from app.web.factory import create_app
from app.web.middleware import CONTENT_SECURITY_POLICY, SecurityHeaders
from tests.web.api_helpers import (
    LOCAL,
    create_class,
    create_project,
    image_bytes,
    make_zip,
    post_zip,
    upload,
)

LONE_SURROGATE = '"\\udc00"'  # as JSON text: valid JSON syntax, but no Unicode character


def assert_sentence(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["detail"].endswith(".")
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY


def test_a_lone_surrogate_in_json_is_a_422_sentence(client: TestClient) -> None:
    pid = create_project(client)
    cid = create_class(client, pid, "cat")
    bodies = [
        ("POST", "/api/projects", f'{{"name": {LONE_SURROGATE}}}'),
        ("PATCH", f"/api/projects/{pid}", f'{{"name": "a{LONE_SURROGATE[1:]}}}'),
        ("POST", f"/api/projects/{pid}/classes", f'{{"name": {LONE_SURROGATE}}}'),
        ("PATCH", f"/api/projects/{pid}/classes/{cid}", f'{{"name": {LONE_SURROGATE}}}'),
        ("POST", f"/api/projects/{pid}/jobs", f'{{"backbone": {LONE_SURROGATE}}}'),
        ("POST", f"/api/projects/{pid}/classes", f'{{"name": "x", {LONE_SURROGATE}: 1}}'),  # a key
    ]
    for method, path, body in bodies:
        response = client.request(
            method, path, content=body, headers={"Content-Type": "application/json"}
        )
        assert_sentence(response, 422)
    surrogate_echo = client.post(
        "/api/projects",
        content=f'{{"name": {LONE_SURROGATE}}}',
        headers={"Content-Type": "application/json"},
    )
    assert surrogate_echo.json()["errors"][0]["input"] == "\\udc00"
    assert [p["name"] for p in client.get("/api/projects").json()] == ["demo"]
    assert [c["name"] for c in client.get(f"/api/projects/{pid}/classes").json()] == ["cat"]


def test_an_upload_into_a_project_deleted_meanwhile_is_404_and_leaves_no_folder(
    client: TestClient,
) -> None:
    """The upload found its class, then the project was deleted before the files were written."""
    store: Store = client.app.state.store
    pid = create_project(client)
    image_class = store.get_class(pid, create_class(client, pid, "cat"))
    assert image_class is not None
    prepared = prepare_image(image_bytes(), max_pixels=10**7)
    assert client.delete(f"/api/projects/{pid}").status_code == 204
    with pytest.raises(NotFound, match="deleted while its images were uploading"):
        store.add_image(image_class, "a.jpg", prepared)
    assert not store.project_dir(pid).exists()
    assert store.list_images(pid) == []


def test_uploads_racing_project_deletes_never_fail_otherwise(client: TestClient) -> None:
    """Real threads: each project is deleted while its images are being stored."""
    store: Store = client.app.state.store
    prepared = prepare_image(image_bytes(), max_pixels=10**7)
    outcomes: list[str] = []
    for round_ in range(12):
        pid = create_project(client, f"p{round_}")
        image_class = store.get_class(pid, create_class(client, pid, "cat"))
        assert image_class is not None
        start = threading.Barrier(2)

        def add_images(image_class=image_class, start=start) -> None:
            start.wait()
            for _ in range(8):
                try:
                    store.add_image(image_class, "a.jpg", prepared)
                    outcomes.append("added")
                except NotFound:
                    outcomes.append("not found")

        writer = threading.Thread(target=add_images)
        writer.start()
        start.wait()
        store.delete_project(pid)
        writer.join()
    assert set(outcomes) <= {"added", "not found"} and len(outcomes) == 12 * 8
    assert list(store.projects_dir.iterdir()) == []  # every project, and its folder, is gone


def test_a_class_created_during_a_project_delete_is_404(client: TestClient) -> None:
    store: Store = client.app.state.store
    pid = create_project(client)
    store.delete_project(pid)
    for create in (store.create_class, store.class_named):
        with pytest.raises(NotFound, match="project was deleted"):
            create(pid, "cat")


def test_a_rename_or_delete_of_something_deleted_meanwhile_is_404(client: TestClient) -> None:
    store: Store = client.app.state.store
    pid = create_project(client)
    cid = create_class(client, pid, "cat")
    added = upload(client, pid, cid, [("a.jpg", image_bytes())]).json()["added"]
    image_class, image = store.get_class(pid, cid), store.get_image(pid, added[0]["id"])
    assert image_class is not None and image is not None
    store.delete_image(image)
    with pytest.raises(NotFound):
        store.delete_image(image)
    store.delete_class(image_class)
    for act in (
        lambda: store.rename_class(image_class, "dog"),
        lambda: store.delete_class(image_class),
    ):
        with pytest.raises(NotFound, match="class was deleted"):
            act()
    store.delete_project(pid)
    for act in (lambda: store.rename_project(pid, "x"), lambda: store.delete_project(pid)):
        with pytest.raises(NotFound, match="project was deleted"):
            act()


def test_start_up_sweeps_empty_folders_of_deleted_projects_only(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", embed_on_upload=False)
    stray, unknown = new_id(), new_id()
    (settings.data_dir / "projects" / stray / "images").mkdir(parents=True)
    (settings.data_dir / "projects" / unknown / "images").mkdir(parents=True)
    (settings.data_dir / "projects" / unknown / "images" / "keep.jpg").write_bytes(image_bytes())
    with TestClient(create_app(settings), base_url=LOCAL):
        assert not (settings.data_dir / "projects" / stray).exists()
        assert (settings.data_dir / "projects" / unknown / "images" / "keep.jpg").is_file()


def test_names_that_look_the_same_are_the_same(client: TestClient) -> None:
    nfc, nfd = "café", unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    created = client.post("/api/projects", json={"name": nfd})
    assert created.json()["name"] == nfc
    pid = created.json()["id"]
    cid = create_class(client, pid, nfc)
    duplicate = client.post(f"/api/projects/{pid}/classes", json={"name": nfd})
    assert_sentence(duplicate, 422)
    assert "already has a class named 'café'" in duplicate.json()["detail"]
    other = create_class(client, pid, "tea")
    assert_sentence(client.patch(f"/api/projects/{pid}/classes/{other}", json={"name": nfd}), 422)
    imported = post_zip(client, pid, make_zip({f"{nfd}/a.jpg": image_bytes()}))
    assert imported.status_code == 200, imported.text
    assert [item["class_id"] for item in imported.json()["added"]] == [cid]
    assert [c["name"] for c in client.get(f"/api/projects/{pid}/classes").json()] == [nfc, "tea"]


def test_a_crash_still_answers_json_with_the_security_headers() -> None:
    async def crashing_app(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("a bug at /secret/path")

    client = TestClient(SecurityHeaders(crashing_app), raise_server_exceptions=False)
    response = client.get("/")
    assert_sentence(response, 500)
    assert "/secret/path" not in response.text
