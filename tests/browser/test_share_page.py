"""A share link in real Chromium: the Share button publishes it, a visitor's browser runs the model
(the same answers as the server), another site embeds it, a new training shows, Revoke ends it."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import FOREIGN_SITE, ConsoleLog, LiveServer
from tests.browser.model_page import (
    REPORT_CSP_VIOLATIONS,
    classify_file,
    one_page_server,
    wait_until_ready,
)
from tests.conftest import shared_dataset
from tests.web.api_helpers import wait_for_job

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("remove_projects")]

FLOWERS = ("daisy", "roses")


def flower_photos(flower: str, n: int, split: str = "train") -> list[Path]:
    return sorted((shared_dataset("flowers-dev") / split / flower).glob("*.jpg"))[:n]


def add_class(client: httpx.Client, pid: str, name: str) -> None:
    cid = client.post(f"/api/projects/{pid}/classes", json={"name": name}).json()["id"]
    files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in flower_photos(name, 5)]
    assert client.post(f"/api/projects/{pid}/classes/{cid}/images", files=files).status_code == 200


def train(client: httpx.Client, pid: str) -> None:
    jid = client.post(f"/api/projects/{pid}/jobs", json={"epochs": 5}).json()["id"]
    assert wait_for_job(client, jid, {"succeeded", "failed"}, timeout=300)["status"] == "succeeded"


def open_project(page: Page, pid: str) -> None:
    page.goto("/")
    page.evaluate("pid => localStorage.setItem('teachbox.project', pid)", pid)
    page.reload()


def test_share_link_from_button_to_revoke(
    page: Page, live_server: LiveServer, console: ConsoleLog, screenshots: Path
) -> None:
    client = httpx.Client(base_url=live_server.url, timeout=60)
    pid = client.post("/api/projects", json={"name": "shared flowers"}).json()["id"]
    for flower in FLOWERS:
        add_class(client, pid, flower)
    train(client, pid)

    open_project(page, pid)
    page.get_by_test_id("share-model").click()
    expect(page.get_by_test_id("share-url")).to_have_value(re.compile(r"/s/[\w-]{32}/$"))
    url = page.get_by_test_id("share-url").input_value()
    assert url == client.get(f"/api/projects/{pid}/share").json()["url"]
    assert url.startswith(f"{live_server.url}/s/")
    embed = page.get_by_test_id("share-embed").input_value()
    assert embed.startswith(f'<iframe src="{url}"')
    page.locator(".export").screenshot(path=str(screenshots / "share-panel.png"))

    visitor = page.context.browser.new_context()  # no cookies, nothing of the owner's
    shared = visitor.new_page()
    console.watch(shared)
    shared.add_init_script(REPORT_CSP_VIOLATIONS)
    shared.goto(url)
    wait_until_ready(shared)
    expect(shared.locator("#labels")).to_contain_text("daisy, roses")
    photo = flower_photos("roses", 1, split="val")[0]
    rows = classify_file(shared, photo, 1)
    with photo.open("rb") as handle:
        served = client.post(f"/api/projects/{pid}/predict", files={"file": handle}).json()
    assert [row["label"] for row in rows] == [p["label"] for p in served["predictions"]]
    for row, answer in zip(rows, served["predictions"], strict=True):
        assert row["probability"] == pytest.approx(answer["probability"], abs=1e-4)
    shared.screenshot(path=str(screenshots / "share-page.png"), full_page=True)

    with one_page_server(f"<!doctype html><title>another site</title>{embed}") as port:
        embedding = visitor.new_page()
        console.watch(embedding)
        embedding.goto(f"http://{FOREIGN_SITE}:{port}/")
        frame = embedding.frame_locator("iframe")
        expect(frame.locator('.model-page[data-state="ready"]')).to_be_visible(timeout=60_000)
        embedding.close()

    add_class(client, pid, "sunflowers")
    train(client, pid)
    shared.reload()
    wait_until_ready(shared)
    expect(shared.locator("#labels")).to_contain_text("daisy, roses, sunflowers")

    page.reload()
    page.get_by_test_id("revoke-share").click()
    expect(page.get_by_test_id("share-model")).to_be_visible()
    for path in ("", "web/", "web/model-page.js", "model.onnx", "metadata.json"):
        assert client.get(f"{url}{path}").status_code == 404, path
    shared.reload()
    console.errors.clear()  # the revoked page's 404, which is the point
    visitor.close()
    client.close()
