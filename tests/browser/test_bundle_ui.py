"""Save project and Open project in real Chromium: the download is the bundle, and opening one
switches the page to the new project with its classes."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import ConsoleLog, LiveServer
from tests.web.api_helpers import RED, image_bytes

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("remove_projects")]


def saved_bundle(server: LiveServer, tmp_path: Path) -> Path:
    """A small project made through the API, saved through the API, then deleted."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        pid = client.post("/api/projects", json={"name": "Shared fruit"}).json()["id"]
        cid = client.post(f"/api/projects/{pid}/classes", json={"name": "apple"}).json()["id"]
        files = [("files", (f"a{i}.jpg", image_bytes(RED, seed=i), "image/jpeg")) for i in range(2)]
        assert client.post(f"/api/projects/{pid}/classes/{cid}/images", files=files).is_success
        path = tmp_path / "fruit.teachbox.zip"
        path.write_bytes(client.get(f"/api/projects/{pid}/bundle").content)
        client.delete(f"/api/projects/{pid}")
    return path


def test_save_downloads_the_bundle_and_open_makes_a_new_project(
    page: Page,
    live_server: LiveServer,
    screenshots: Path,
    tmp_path: Path,
    console: ConsoleLog,
) -> None:
    bundle = saved_bundle(live_server, tmp_path)
    page.goto("/")
    expect(page.get_by_test_id("class-card")).to_have_count(2)
    current = page.locator("#project-select").input_value()
    expect(page.get_by_test_id("project-save")).to_have_attribute(
        "href", f"/api/projects/{current}/bundle"
    )
    with page.expect_download() as download:
        page.get_by_test_id("project-save").click()
    assert download.value.suggested_filename.endswith(".teachbox.zip")
    saved = tmp_path / "saved.zip"
    download.value.save_as(saved)
    manifest = json.loads(zipfile.ZipFile(saved).read("manifest.json"))
    assert manifest["classes"] == ["Class 1", "Class 2"]

    page.get_by_test_id("project-open-file").set_input_files(str(bundle))
    expect(page.locator("#project-name")).to_have_value("Shared fruit")
    expect(page.get_by_test_id("class-card")).to_have_count(1)
    expect(page.get_by_test_id("class-name")).to_have_value("apple")
    assert page.locator("#project-select").input_value() != current
    page.screenshot(path=str(screenshots / "bundle-opened.png"))

    page.get_by_test_id("project-open-file").set_input_files(
        {"name": "bad.zip", "mimeType": "application/zip", "buffer": b"not a zip"}
    )
    expect(page.locator("#page-error")).to_have_text(
        "The file is not a zip archive. Give the bundle that Save project (or `teachbox bundle save`) wrote."
    )
    assert [e for e in console.errors if "400" not in e] == []
    console.errors.clear()  # the browser logs the refusal, which is the point
