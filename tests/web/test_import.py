"""Zip import of class folders: the same answer as an upload; hostile archives refused before reading."""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient

from tests.web.api_helpers import (
    BLUE,
    RED,
    create_class,
    create_project,
    image_bytes,
    make_zip,
    post_zip,
)


def _classes(client: TestClient, pid: str) -> dict[str, int]:
    return {
        c["name"]: c["image_count"] for c in client.get(f"/api/projects/{pid}").json()["classes"]
    }


def test_class_folders_become_classes(client: TestClient) -> None:
    pid = create_project(client)
    create_class(client, pid, "red")
    entries = {f"red/{i}.jpg": image_bytes(RED, seed=i) for i in range(3)}
    entries |= {f"blue/{i}.png": image_bytes(BLUE, seed=i, fmt="PNG") for i in range(2)}
    entries |= {
        "blue/readme.txt": b"hello",
        "loose.jpg": image_bytes(),
        "__MACOSX/red/._0.jpg": b"junk",
        "red/.DS_Store": b"x",
    }
    response = post_zip(client, pid, make_zip(entries))
    assert response.status_code == 200
    body = response.json()
    assert sorted(item["filename"] for item in body["added"]) == [
        "0.jpg",
        "0.png",
        "1.jpg",
        "1.png",
        "2.jpg",
    ]
    reasons = {item["filename"]: item["reason"] for item in body["rejected"]}
    assert reasons == {
        "readme.txt": "This file is not an image Teachbox can read. Use JPEG, PNG, WebP, BMP or GIF.",
        "loose.jpg": "The file is not inside a class folder. Put each class's images in a folder named after the class.",
    }
    assert _classes(client, pid) == {"red": 3, "blue": 2}


def test_a_zip_of_the_parent_folder_works_too(client: TestClient) -> None:
    pid = create_project(client)
    entries = {
        f"dataset/{name}/{i}.jpg": image_bytes(colour, seed=i)
        for name, colour in (("red", RED), ("blue", BLUE))
        for i in range(2)
    }
    entries["dataset/red/"] = b""
    response = post_zip(client, pid, make_zip(entries, zipfile.ZIP_DEFLATED))
    assert len(response.json()["added"]) == 4
    assert _classes(client, pid) == {"red": 2, "blue": 2}


def test_invalid_folder_names_reject_their_files(client: TestClient) -> None:
    pid = create_project(client)
    response = post_zip(
        client,
        pid,
        make_zip({"ok/a.jpg": image_bytes(), ("x" * 70) + "/b.jpg": image_bytes(seed=1)}),
    )
    assert [item["filename"] for item in response.json()["added"]] == ["a.jpg"]
    assert (
        "is not a valid class name: A class name must be 1 to 64 characters long."
        in response.json()["rejected"][0]["reason"]
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil/a.jpg", "points outside its folder"),
        ("red/../../a.jpg", "points outside its folder"),
        ("..\\..\\a.jpg", "points outside its folder"),
        ("/etc/a.jpg", "points outside its folder"),
        ("C:/a.jpg", "points outside its folder"),
        ("red/model.pt", "model file"),
        ("red/weights.PTH", "model file"),
        ("red/net.onnx", "model file"),
        ("red/data.pkl", "model file"),
    ],
)
def test_hostile_entries_refuse_the_whole_archive(
    client: TestClient, name: str, reason: str
) -> None:
    pid = create_project(client)
    response = post_zip(
        client, pid, make_zip({"red/good.jpg": image_bytes(), name: image_bytes(seed=1)})
    )
    assert response.status_code == 400
    assert reason in response.json()["detail"]
    assert _classes(client, pid) == {}
    assert not (client.app.state.settings.data_dir / "evil").exists()


def test_symlinks_are_refused(client: TestClient) -> None:
    pid = create_project(client)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("red/good.jpg", image_bytes())
        link = zipfile.ZipInfo("red/link.jpg")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    response = post_zip(client, pid, buffer.getvalue())
    assert response.status_code == 400
    assert (
        response.json()["detail"]
        == "The archive entry 'link.jpg' is a symbolic link. Zip the images themselves and import again."
    )
    assert _classes(client, pid) == {}


def test_too_many_entries_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_import_files=5)
    pid = create_project(client)
    response = post_zip(
        client, pid, make_zip({f"red/{i}.jpg": image_bytes(seed=i) for i in range(6)})
    )
    assert response.status_code == 413
    assert (
        response.json()["detail"]
        == "The archive has 6 entries, over the limit of 5. Split it and import the parts."
    )
    assert _classes(client, pid) == {}


def test_too_large_uncompressed_is_413(make_client: Callable[..., TestClient]) -> None:
    client = make_client(max_import_mb=0.05)
    pid = create_project(client)
    response = post_zip(
        client,
        pid,
        make_zip(
            {f"red/{i}.png": image_bytes(seed=i, size=(128, 128), fmt="PNG") for i in range(3)}
        ),
    )
    assert response.status_code == 413
    assert "over the limit of 0.05 MB" in response.json()["detail"]


def test_a_zip_bomb_is_413_before_extraction(client: TestClient) -> None:
    pid = create_project(client)
    bomb = make_zip(
        {"red/a.jpg": image_bytes(), "red/zeros.bmp": bytes(30_000_000)}, zipfile.ZIP_DEFLATED
    )
    assert len(bomb) < 100_000
    response = post_zip(client, pid, bomb)
    assert response.status_code == 413
    assert "looks like a zip bomb" in response.json()["detail"]
    assert _classes(client, pid) == {}


def test_not_a_zip_and_missing_file(client: TestClient) -> None:
    pid = create_project(client)
    not_zip = post_zip(client, pid, b"PK\x03\x04 definitely not a zip")
    assert not_zip.status_code == 400
    assert not_zip.json() == {
        "detail": "The file is not a zip archive. Zip the class folders and import the .zip file."
    }
    missing = client.post(
        f"/api/projects/{pid}/import", files={"other": ("a.zip", b"", "application/zip")}
    )
    assert missing.status_code == 422
    assert post_zip(client, "0" * 32, make_zip({})).status_code == 404
