"""Uploads validated file by file, stored under server names; listing, re-encoded downloads, deletes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.web.errors import ROUTING_SENTENCES
from tests.web.api_helpers import BLUE, create_class, create_project, image_bytes, upload


@pytest.fixture
def target(client: TestClient) -> tuple[str, str]:
    pid = create_project(client)
    return pid, create_class(client, pid, "cat")


def _files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_one_bad_file_never_sinks_the_others(client: TestClient, target: tuple[str, str]) -> None:
    pid, cid = target
    good_png = image_bytes(BLUE, seed=1, fmt="PNG")
    truncated = image_bytes(seed=2, size=(256, 256))[:-600]
    files = [
        ("good.jpg", image_bytes(seed=0)),
        ("notes.jpg", b"just some text, not an image"),
        ("good.png", good_png),
        ("drawing.jpg", b'<svg xmlns="http://www.w3.org/2000/svg"></svg>'),
        ("cut.jpg", truncated),
        ("empty.jpg", b""),
        ("scan.jpg", b"%PDF-1.4\n%..."),
    ]
    response = upload(client, pid, cid, files)
    assert response.status_code == 200
    body = response.json()
    assert [item["filename"] for item in body["added"]] == ["good.jpg", "good.png"]
    reasons = {item["filename"]: item["reason"] for item in body["rejected"]}
    assert reasons == {
        "notes.jpg": "This file is not an image Teachbox can read. Use JPEG, PNG, WebP, BMP or GIF.",
        "drawing.jpg": "SVG files are not accepted. Convert it to JPEG, PNG, WebP, BMP or GIF and upload it again.",
        "cut.jpg": reasons["cut.jpg"],
        "empty.jpg": "The file is empty. Choose a JPEG, PNG, WebP, BMP or GIF image.",
        "scan.jpg": "PDF files are not accepted. Convert it to JPEG, PNG, WebP, BMP or GIF and upload it again.",
    }
    assert reasons["cut.jpg"].startswith("The image is corrupt or truncated")
    assert client.get(f"/api/projects/{pid}").json()["classes"][0]["image_count"] == 2


def test_files_are_stored_under_server_names_only(
    client: TestClient, target: tuple[str, str]
) -> None:
    pid, cid = target
    data_dir = client.app.state.settings.data_dir
    hostile = [
        "../../escape.jpg",
        "/etc/passwd.jpg",
        "..\\..\\win.jpg",
        "nul\x00byte.jpg",
        "\u202egpj.exe",
        "x" * 300 + ".jpg",
    ]
    response = upload(
        client, pid, cid, [(name, image_bytes(seed=i)) for i, name in enumerate(hostile)]
    )
    added = response.json()["added"]
    assert len(added) == len(hostile)
    names = [item["filename"] for item in added]
    assert names[:3] == ["escape.jpg", "passwd.jpg", "win.jpg"]
    assert names[4] == "gpj.exe"
    assert not any(ch in name for name in names for ch in "/\\\x00\u202e")
    assert len(names[5]) == 200
    stored = _files_under(data_dir / "projects")
    assert {p.parent.name for p in stored} == {"images", "thumbnails"}
    assert {p.stem for p in stored} == {item["id"] for item in added}
    assert not list(data_dir.parent.glob("escape.jpg")) and not (data_dir / "escape.jpg").exists()


def test_listing_and_downloads(client: TestClient, target: tuple[str, str]) -> None:
    pid, cid = target
    original = image_bytes(seed=3, size=(640, 480))
    image_id = upload(client, pid, cid, [("big.jpg", original)]).json()["added"][0]["id"]
    listing = client.get(f"/api/projects/{pid}/classes/{cid}/images").json()
    assert [(item["id"], item["filename"], item["width"], item["height"]) for item in listing] == [
        (image_id, "big.jpg", 640, 480)
    ]
    assert listing[0]["thumbnail_url"] == f"/api/projects/{pid}/images/{image_id}/thumbnail"
    assert client.get(f"/api/projects/{pid}/images").json() == listing

    for url in (listing[0]["url"], f"/api/projects/{pid}/classes/{cid}/images/{image_id}"):
        full = client.get(url)
        assert full.status_code == 200
        assert full.headers["content-type"] == "image/jpeg"
        assert full.headers["x-content-type-options"] == "nosniff"
        assert full.content != original
        assert Image.open(io.BytesIO(full.content)).size == (640, 480)

    thumb = client.get(listing[0]["thumbnail_url"])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    assert thumb.headers["x-content-type-options"] == "nosniff"
    assert Image.open(io.BytesIO(thumb.content)).size == (256, 192)
    assert (
        client.get(f"/api/projects/{pid}/classes/{cid}/images/{image_id}/thumbnail").content
        == thumb.content
    )


def test_served_images_are_reencoded_even_when_uploaded_as_png(
    client: TestClient, target: tuple[str, str]
) -> None:
    pid, cid = target
    image_id = upload(client, pid, cid, [("a.png", image_bytes(fmt="PNG"))]).json()["added"][0][
        "id"
    ]
    response = client.get(f"/api/projects/{pid}/images/{image_id}")
    assert response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).format == "JPEG"


def test_exif_rotation_is_reported_upright(client: TestClient, target: tuple[str, str]) -> None:
    pid, cid = target
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (80, 40), (10, 200, 10)).save(buffer, "JPEG", exif=exif)
    added = upload(client, pid, cid, [("rotated.jpg", buffer.getvalue())]).json()["added"]
    listing = client.get(f"/api/projects/{pid}/classes/{cid}/images").json()
    assert (listing[0]["width"], listing[0]["height"]) == (40, 80)
    thumb = Image.open(
        io.BytesIO(client.get(f"/api/projects/{pid}/images/{added[0]['id']}/thumbnail").content)
    )
    assert thumb.size[0] < thumb.size[1]


def test_single_delete_removes_row_and_files(client: TestClient, target: tuple[str, str]) -> None:
    pid, cid = target
    added = upload(
        client, pid, cid, [("a.jpg", image_bytes(seed=1)), ("b.jpg", image_bytes(seed=2))]
    ).json()["added"]
    store = client.app.state.store
    first = store.get_image(pid, added[0]["id"])
    assert client.delete(f"/api/projects/{pid}/images/{first.id}").status_code == 204
    assert not store.image_path(first).exists() and not store.thumbnail_path(first).exists()
    assert client.get(f"/api/projects/{pid}/images/{first.id}").status_code == 404
    assert client.delete(f"/api/projects/{pid}/images/{first.id}").status_code == 404
    assert (
        client.delete(f"/api/projects/{pid}/classes/{cid}/images/{added[1]['id']}").status_code
        == 204
    )
    assert client.get(f"/api/projects/{pid}/classes/{cid}/images").json() == []


def test_image_ids_are_checked_against_project_and_class(
    client: TestClient, target: tuple[str, str]
) -> None:
    pid, cid = target
    image_id = upload(client, pid, cid, [("a.jpg", image_bytes())]).json()["added"][0]["id"]
    other_class = create_class(client, pid, "dog")
    other_project = create_project(client, "other")
    assert (
        client.get(f"/api/projects/{pid}/classes/{other_class}/images/{image_id}").status_code
        == 404
    )
    assert client.get(f"/api/projects/{other_project}/images/{image_id}").status_code == 404
    for bad in ("0" * 32, "nope", "%2e%2e%2fteachbox.sqlite"):
        response = client.get(f"/api/projects/{pid}/images/{bad}")
        assert response.status_code == 404
        assert response.json()["detail"] in (
            "This project has no image with this id. List the class's images to see their ids.",
            ROUTING_SENTENCES[404],
        )


def test_requests_without_files(client: TestClient, target: tuple[str, str]) -> None:
    pid, cid = target
    url = f"/api/projects/{pid}/classes/{cid}/images"
    wrong_field = client.post(url, files={"image": ("a.jpg", image_bytes(), "image/jpeg")})
    assert wrong_field.status_code == 422
    assert wrong_field.json() == {
        "detail": "Attach at least one image in the multipart field 'files'."
    }
    assert client.post(url, json={"files": []}).status_code == 415
    no_boundary = client.post(
        url, content=b"--x\r\n", headers={"content-type": "multipart/form-data"}
    )
    assert no_boundary.status_code == 400
    assert no_boundary.json()["detail"].startswith("The multipart body could not be read")
    assert client.get("/api/health").status_code == 200


def test_a_missing_stored_file_is_404_with_a_sentence(
    client: TestClient, target: tuple[str, str]
) -> None:
    pid, cid = target
    image_id = upload(client, pid, cid, [("a.jpg", image_bytes())]).json()["added"][0]["id"]
    store = client.app.state.store
    image = store.get_image(pid, image_id)
    store.image_path(image).unlink()
    store.thumbnail_path(image).unlink()
    full = client.get(f"/api/projects/{pid}/images/{image_id}")
    assert full.status_code == 404
    assert full.json() == {
        "detail": "The stored file of this image is missing or damaged. Delete the image and upload it again."
    }
    thumb = client.get(f"/api/projects/{pid}/images/{image_id}/thumbnail")
    assert thumb.status_code == 404
    assert thumb.json() == {
        "detail": "The thumbnail of this image is missing. Delete the image and upload it again."
    }
    assert client.delete(f"/api/projects/{pid}/images/{image_id}").status_code == 204


def test_moving_an_image_corrects_its_label(client: TestClient, target: tuple[str, str]) -> None:
    pid, red = target
    blue = create_class(client, pid, "blue")
    iid = upload(client, pid, red, [("looks_blue.jpg", image_bytes(BLUE))]).json()["added"][0]["id"]
    moved = client.patch(f"/api/projects/{pid}/images/{iid}", json={"class_id": blue})
    assert moved.status_code == 200 and moved.json()["class_id"] == blue
    counts = {
        c["name"]: c["image_count"] for c in client.get(f"/api/projects/{pid}/classes").json()
    }
    assert counts == {"cat": 0, "blue": 1}
    assert [i["id"] for i in client.get(f"/api/projects/{pid}/classes/{blue}/images").json()] == [
        iid
    ]
    assert (
        client.get(f"/api/projects/{pid}/classes/{blue}/images/{iid}/thumbnail").status_code == 200
    )
    assert client.get(f"/api/projects/{pid}/classes/{red}/images/{iid}").status_code == 404


def test_an_image_moves_only_to_a_class_of_its_own_project(
    client: TestClient, target: tuple[str, str]
) -> None:
    pid, red = target
    iid = upload(client, pid, red, [("a.jpg", image_bytes())]).json()["added"][0]["id"]
    other = create_class(client, create_project(client, "other"), "blue")
    for class_id in (other, "0" * 32, "../etc"):
        refused = client.patch(f"/api/projects/{pid}/images/{iid}", json={"class_id": class_id})
        assert refused.status_code == 404
        assert refused.json()["detail"].startswith("This project has no class with this id.")
    assert client.get(f"/api/projects/{pid}/classes/{red}/images").json()[0]["id"] == iid
