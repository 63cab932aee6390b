"""Compare and data health in real Chromium: both modes side by side, keeping a model, findings before training."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from app.engine.params import MODE_INFO, Mode
from tests.browser.conftest import LiveServer
from tests.conftest import shared_dataset

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("remove_projects")]

COMPARE_TIMEOUT_MS = 300_000


def flower_photos(flower: str, n: int, skip: int = 0) -> list[Path]:
    """Photos read in place from the shared flowers set (the test skips without it)."""
    return sorted((shared_dataset("flowers-dev") / "train" / flower).glob("*.jpg"))[skip : skip + n]


def make_project(server: LiveServer, name: str, classes: dict[str, list[Path]]) -> str:
    """A project made through the API, its photos uploaded from where they lie."""
    with httpx.Client(base_url=server.url, timeout=60) as client:
        pid = client.post("/api/projects", json={"name": name}).json()["id"]
        for class_name, paths in classes.items():
            cid = client.post(f"/api/projects/{pid}/classes", json={"name": class_name}).json()[
                "id"
            ]
            files = [("files", (p.name, p.read_bytes(), "image/jpeg")) for p in paths]
            assert (
                client.post(f"/api/projects/{pid}/classes/{cid}/images", files=files).status_code
                == 200
            )
    return pid


def open_project(page: Page, pid: str) -> None:
    page.add_init_script(f"localStorage.setItem('teachbox.project', '{pid}')")
    page.goto("/")
    expect(page.locator("#project-select")).to_have_value(pid)


def shot(page: Page, screenshots: Path, name: str, selector: str | None = None) -> None:
    path = str(screenshots / f"{name}.png")
    if selector:
        page.locator(selector).screenshot(path=path)
    else:
        page.screenshot(path=path, full_page=True)


def test_compare_shows_both_runs_recommends_and_keeps(
    page: Page, live_server: LiveServer, screenshots: Path
) -> None:
    pid = make_project(
        live_server,
        "Compare flowers",
        {"daisy": flower_photos("daisy", 8), "sunflowers": flower_photos("sunflowers", 8)},
    )
    open_project(page, pid)
    page.locator("details.advanced summary").click()
    page.locator("#param-epochs").fill("3")
    page.get_by_test_id("compare").click()
    expect(page.locator("#compare-runs")).to_be_visible()
    expect(page.locator("#cancel")).to_be_visible()
    page.wait_for_function(
        "() => document.querySelector('[data-run-status=finetune]').textContent.includes('epoch')",
        timeout=COMPARE_TIMEOUT_MS,
    )
    datasets = page.evaluate(
        "() => Chart.getChart(document.getElementById('acc-chart')).data.datasets.map((d) => d.label)"
    )
    # The legend names the modes as the server does (MODE_INFO), not with names of its own.
    assert datasets == [
        f"{MODE_INFO[mode].name}, {series}"
        for mode in (Mode.TRANSFER, Mode.FINETUNE)
        for series in ("training", "validation")
    ]
    shot(page, screenshots, "compare-01-running", ".panel.training")

    result = page.get_by_test_id("compare-result")
    expect(result).to_be_visible(timeout=COMPARE_TIMEOUT_MS)
    table = page.locator("#compare-table")
    for row in (
        "Validation accuracy",
        "Accuracy per class",
        "Training time",
        "Model size",
        "Predict time",
        "Training − validation",
    ):
        expect(table).to_contain_text(row)
    expect(table.locator("thead th")).to_have_count(3)
    recommendation = page.get_by_test_id("recommendation")
    expect(recommendation).to_contain_text(
        re.compile(r"^Recommended: (Transfer learning|Fine-tuning)\. .+\.$")
    )
    keep = page.get_by_test_id("keep-model")
    expect(keep).to_have_count(2)
    expect(page.locator("[data-testid=keep-model].primary")).to_have_count(1)
    expect(page.locator("#download-model")).to_have_attribute("aria-disabled", "true")
    shot(page, screenshots, "compare-02-result", ".panel.training")

    other = page.locator("[data-testid=keep-model].secondary")
    mode = other.get_attribute("data-mode")
    with page.expect_response(lambda r: r.url.endswith("/keep") and r.ok):
        other.click()
    kept = page.locator(f"[data-testid=keep-model][data-mode={mode}]")
    expect(kept).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#compare-kept")).to_contain_text("Preview and Export use it")
    project = httpx.get(f"{live_server.url}/api/projects/{pid}").json()
    assert project["model_job_id"]
    expect(page.locator("#download-model")).to_have_attribute(
        "href", f"/api/jobs/{project['model_job_id']}/model"
    )
    expect(page.get_by_test_id("preview-upload")).to_be_enabled()
    page.get_by_test_id("preview-upload").set_input_files(flower_photos("daisy", 1, skip=20))
    expect(page.locator("#predictions li").first).to_be_visible()
    shot(page, screenshots, "compare-03-kept")

    page.reload()
    expect(page.get_by_test_id("compare-result")).to_be_visible()
    expect(page.locator(f"[data-testid=keep-model][data-mode={mode}]")).to_have_attribute(
        "aria-pressed", "true"
    )


def test_health_panel_lists_findings_and_follows_uploads(
    page: Page, live_server: LiveServer, screenshots: Path
) -> None:
    daisies = flower_photos("daisy", 8)
    pid = make_project(
        live_server,
        "Unhealthy flowers",
        {"daisy": daisies, "roses": [*flower_photos("roses", 3), daisies[0]]},
    )
    open_project(page, pid)
    findings = page.get_by_test_id("health-findings")
    duplicate = findings.locator("li[data-kind=duplicate_across_classes]")
    expect(duplicate).to_be_visible(timeout=60_000)
    expect(duplicate).to_have_class(re.compile(r"\bwarning\b"))
    expect(duplicate).to_contain_text("Keep each image in its right class only.")
    few = findings.locator("li[data-kind=too_few_images]", has_text="'roses' has 4 images")
    expect(few).to_be_visible()
    expect(page.locator("#health-curve")).to_be_visible()
    assert (
        page.evaluate(
            "() => Chart.getChart(document.getElementById('curve-chart')).data.datasets.length"
        )
        == 3
    )
    shot(page, screenshots, "health-01-findings", ".panel.health")

    page.get_by_test_id("class-card").nth(1).get_by_test_id("class-upload").set_input_files(
        flower_photos("roses", 3, skip=3)
    )
    expect(
        findings.locator("li[data-kind=too_few_images]", has_text="'roses' has 7 images")
    ).to_be_visible(timeout=60_000)
    page.get_by_test_id("health-refresh").click()
    expect(page.locator("#health-status")).to_contain_text("Checked just now")


def test_a_suspected_mislabel_is_shown_and_moved_in_one_click(
    page: Page, live_server: LiveServer, screenshots: Path
) -> None:
    stray = flower_photos("daisy", 1, skip=30)  # a daisy, filed under roses
    pid = make_project(
        live_server,
        "Mislabelled flowers",
        {"daisy": flower_photos("daisy", 15), "roses": [*flower_photos("roses", 15), *stray]},
    )
    open_project(page, pid)
    finding = page.get_by_test_id("health-findings").locator("li[data-kind=suspected_mislabels]")
    expect(finding).to_be_visible(timeout=60_000)
    suspect = finding.get_by_test_id("suspect").filter(has_text="Filed as roses, looks like daisy")
    expect(suspect).to_have_count(1)
    expect(suspect.locator("img")).to_have_attribute("src", re.compile(r"/thumbnail$"))
    thumbnail = suspect.locator("img").get_attribute("src")
    shot(page, screenshots, "health-02-mislabel", ".panel.health")
    suspect.get_by_test_id("move-to-predicted").click()
    counts = page.get_by_test_id("class-count")
    expect(counts.nth(0)).to_have_text("16")
    expect(counts.nth(1)).to_have_text("15")
    # The counts changed, so data health checks again, and the photo is no longer suspected.
    expect(page.locator("#health-status")).to_contain_text("Checked just now", timeout=60_000)
    expect(page.locator(f'[data-testid=suspect] img[src="{thumbnail}"]')).to_have_count(
        0, timeout=60_000
    )
