"""The whole flow in real Chromium, as a first-time user goes through it, with screenshots of each state."""

from __future__ import annotations

import base64
import contextlib
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from app.engine.params import DEFAULT_EPOCHS, Mode
from tests.browser.conftest import PHONE, LiveServer
from tests.conftest import SHARED_DATASETS, write_image

pytestmark = pytest.mark.browser

PER_CLASS = 10
TRAIN_TIMEOUT_MS = 120_000
FLOWERS = SHARED_DATASETS / "flowers-dev"

# Records what the training status and progress bar showed, so live progress can be asserted afterwards.
WATCH_PROGRESS = """() => {
  window.__seen = [];
  const status = document.querySelector('[data-testid=train-status]');
  const bar = document.querySelector('[data-testid=progress]');
  new MutationObserver(() => window.__seen.push({text: status.textContent, value: bar.position}))
    .observe(status, {childList: true, characterData: true, subtree: true});
}"""

# Every visible control must have an accessible name: a label, aria-label(ledby), or its own text.
UNLABELLED = """() => Array.from(document.querySelectorAll('input, select, button, a[href], textarea'))
  .filter((el) => !el.closest('[hidden], template') && el.type !== 'hidden')
  .filter((el) => !((el.labels && el.labels.length) || el.getAttribute('aria-label') || el.getAttribute('aria-labelledby') || el.textContent.trim()))
  .map((el) => el.outerHTML.slice(0, 120))"""

# A drop of real files, as the browser hands it to the page.
DATA_TRANSFER = """(files) => {
  const transfer = new DataTransfer();
  for (const file of files) {
    const bytes = Uint8Array.from(atob(file.data), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], file.name, {type: 'image/jpeg'}));
  }
  return transfer;
}"""

SCROLL_WIDTH = "document.documentElement.scrollWidth"
# Elements that stick out past the right edge of the viewport (a page that scrolls sideways on a phone).
TOO_WIDE = """(width) => Array.from(document.querySelectorAll('body *'))
  .filter((el) => el.getBoundingClientRect().right > width + 1 && !el.closest('.visually-hidden'))
  .map((el) => `${el.tagName.toLowerCase()}.${el.className} ${Math.round(el.getBoundingClientRect().right)}px`)"""


def photos(
    tmp: Path, name: str, flower: str, colour: tuple[int, int, int], n: int = PER_CLASS
) -> list[Path]:
    """Real photos read in place from the shared flowers set, or small synthetic ones without it."""
    folder = FLOWERS / "train" / flower
    if folder.is_dir():
        return sorted(folder.glob("*.jpg"))[:n]
    return [
        write_image(tmp / name / f"{name}_{i}.jpg", colour, size=(160, 120), seed=i)
        for i in range(n)
    ]


def card(page: Page, index: int):
    return page.get_by_test_id("class-card").nth(index)


def rename(page: Page, index: int, name: str) -> None:
    field = card(page, index).get_by_test_id("class-name")
    field.fill(name)
    with page.expect_response(
        lambda r: r.request.method == "PATCH" and "/classes/" in r.url
    ) as response:
        field.press("Enter")
    assert response.value.ok


def upload(page: Page, index: int, files: list[Path]) -> None:
    card(page, index).get_by_test_id("class-upload").set_input_files(files)


def shot(page: Page, screenshots: Path, name: str, full_page: bool = True) -> None:
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=full_page)


def test_first_visit_to_trained_model(
    page: Page, live_server: LiveServer, screenshots: Path, tmp_path: Path
) -> None:
    response = page.goto("/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.get_by_test_id("class-card")).to_have_count(2)
    expect(card(page, 0).get_by_test_id("class-name")).to_have_value("Class 1")
    expect(card(page, 1).get_by_test_id("class-name")).to_have_value("Class 2")
    assert page.evaluate(UNLABELLED) == []
    shot(page, screenshots, "01-first-visit")

    rename(page, 0, "Daisy")
    rename(page, 1, "Sunflower")
    bogus = tmp_path / "notes.txt"
    bogus.write_text("not an image")
    daisies = photos(tmp_path, "white", "daisy", (235, 235, 230))
    upload(page, 0, [*daisies, bogus])
    upload(page, 1, photos(tmp_path, "yellow", "sunflowers", (230, 200, 30)))
    expect(card(page, 0).get_by_test_id("class-count")).to_have_text(str(PER_CLASS))
    expect(card(page, 1).get_by_test_id("class-count")).to_have_text(str(PER_CLASS))
    expect(card(page, 0).locator(".rejected-list li")).to_have_count(1)
    expect(card(page, 0).locator(".rejected-list li")).to_contain_text("notes.txt")
    expect(card(page, 0).locator(".thumbs img")).to_have_count(PER_CLASS)

    # A third class filled by a press-and-hold burst from Chromium's fake camera.
    page.get_by_test_id("add-class").click()
    expect(page.get_by_test_id("class-card")).to_have_count(3)
    webcam = card(page, 2)
    expect(webcam.get_by_test_id("class-name")).to_be_focused()
    webcam.get_by_test_id("class-name").fill("Camera")
    webcam.get_by_test_id("class-name").press("Enter")
    webcam.get_by_role("button", name=re.compile("Webcam capture")).click()
    expect(webcam.locator("video")).to_be_visible()
    page.wait_for_function(
        "video => video.videoWidth > 0", arg=webcam.locator("video").element_handle()
    )
    record = webcam.get_by_role("button", name="Hold to record")
    record.hover()
    page.mouse.down()
    page.wait_for_timeout(1500)
    shot(page, screenshots, "02-webcam-burst", full_page=False)
    page.mouse.up()
    expect(webcam.get_by_test_id("class-count")).to_have_text(
        re.compile(r"^([5-9]|[1-9]\d+)$"), timeout=15_000
    )
    expect(webcam.locator(".status")).to_contain_text("Added")
    burst = int(webcam.get_by_test_id("class-count").inner_text())
    record.focus()
    page.keyboard.down("Space")
    page.wait_for_timeout(600)
    page.keyboard.up("Space")
    expect(webcam.get_by_test_id("class-count")).not_to_have_text(str(burst), timeout=15_000)
    toggle = webcam.get_by_role("button", name="Webcam capture for Camera")
    expect(toggle).to_have_attribute("aria-expanded", "true")
    toggle.click()
    expect(webcam.locator("video")).to_be_hidden()

    # An extra class added and removed again leaves the three.
    page.get_by_test_id("add-class").click()
    expect(page.get_by_test_id("class-card")).to_have_count(4)
    card(page, 3).get_by_role("button", name=re.compile("Remove class")).click()
    expect(page.get_by_test_id("class-card")).to_have_count(3)
    shot(page, screenshots, "03-classes-ready")

    # Train in transfer mode, few epochs, watching the live progress.
    page.get_by_test_id("mode-transfer").check()
    page.get_by_text("Advanced").click()
    page.locator("#param-epochs").fill("12")
    page.evaluate(WATCH_PROGRESS)
    page.get_by_test_id("train").click()
    expect(page.get_by_test_id("train-status")).to_contain_text("Trained", timeout=TRAIN_TIMEOUT_MS)
    expect(page.get_by_test_id("train-status")).to_contain_text(
        re.compile(r"Expected accuracy on new images: \d+ % \(\d+–\d+ %\)")
    )
    seen = page.evaluate("window.__seen")
    assert any("epoch" in s["text"] for s in seen), seen
    assert any(0 < s["value"] < 1 for s in seen), seen
    expect(page.locator("#acc-chart")).to_be_visible()
    assert page.evaluate("Chart.getChart('acc-chart').data.datasets[1].data.length") == 12
    page.get_by_text("Under the hood").click()
    expect(page.locator("#per-class tr")).to_have_count(3)
    expect(page.locator("#confusion tbody tr")).to_have_count(3)
    shot(page, screenshots, "04-trained")

    # Preview on one of the daisies (ten photos are too few to promise much on unseen ones), then live.
    page.get_by_test_id("preview-upload").set_input_files(daisies[0])
    predictions = page.get_by_test_id("prediction")
    expect(predictions).to_have_count(3)
    expect(predictions.first).to_contain_text("Daisy")
    shares = [
        int(re.search(r"(\d+)%$", text.strip()).group(1)) for text in predictions.all_inner_texts()
    ]
    assert shares == sorted(shares, reverse=True), shares
    expect(page.locator("#preview-image")).to_be_visible()
    # "This is actually …": the previewed photo goes into a class in one click, the model's answer first.
    expect(page.locator("#preview-class option:checked")).to_have_text("Daisy")
    page.get_by_test_id("add-to-class").click()
    expect(page.locator("#preview-correct-status")).to_contain_text("Added to 'Daisy'")
    expect(card(page, 0).get_by_test_id("class-count")).to_have_text(str(PER_CLASS + 1))
    # A second file: the least sure images tried are offered for labelling; "Not sure" follows the API.
    page.get_by_test_id("preview-upload").set_input_files(daisies[1])
    expect(page.get_by_test_id("suggestions")).to_be_visible()
    expect(page.get_by_test_id("suggestion")).to_have_count(1)  # the first was already added
    expect(page.get_by_test_id("suggestion").first).to_contain_text("% sure")
    expect(page.get_by_test_id("unsure")).to_have_text(re.compile("^Not sure"))
    page.locator("#preview-webcam").click()
    expect(page.locator("#preview-video")).to_be_visible()
    page.wait_for_function("() => document.querySelector('#preview-video').videoWidth > 0")
    expect(predictions.first).to_contain_text("Camera", timeout=15_000)
    shot(page, screenshots, "05-preview")
    page.locator("#preview-webcam").click()

    with page.expect_download() as download_info:
        page.get_by_test_id("download-model").click()
    model = tmp_path / "model.zip"
    download_info.value.save_as(model)
    with zipfile.ZipFile(model) as archive:
        assert {"model.onnx", "labels.txt", "predict.py"} <= set(archive.namelist())
        assert set(archive.read("labels.txt").decode().split("\n")) - {""} == {
            "Camera",
            "Daisy",
            "Sunflower",
        }

    # A reload keeps everything: names, counts and the trained model.
    page.reload()
    expect(page.get_by_test_id("class-card")).to_have_count(3)
    expect(card(page, 0).get_by_test_id("class-name")).to_have_value("Daisy")
    expect(page.get_by_test_id("train-status")).to_contain_text("Trained")
    expect(page.get_by_test_id("download-model")).to_have_attribute(
        "href", re.compile(r"/api/jobs/.+/model")
    )

    page.set_viewport_size(PHONE)
    # Charts follow their box on the next animation frames; give them a moment, then nothing may stick out.
    with contextlib.suppress(PlaywrightTimeout):
        page.wait_for_function(f"() => {SCROLL_WIDTH} <= {PHONE['width']}", timeout=3000)
    assert page.evaluate(SCROLL_WIDTH) <= PHONE["width"], page.evaluate(TOO_WIDE, PHONE["width"])
    shot(page, screenshots, "06-phone")


def test_reload_reconnects_to_a_running_job_and_cancel_stops_it(
    page: Page, screenshots: Path, tmp_path: Path
) -> None:
    page.goto("/")
    page.locator("#project-new").click()
    expect(page.locator("#project-select option")).not_to_have_count(1)
    expect(page.get_by_test_id("class-card")).to_have_count(2)
    # Class 1 from a chosen folder (sub-folders included, hidden files skipped), class 2 by a drop.
    folder = tmp_path / "picked" / "daisies"
    (folder / "more").mkdir(parents=True)
    daisies = photos(tmp_path, "white", "daisy", (235, 235, 230))
    for i, photo in enumerate(daisies):
        shutil.copy(photo, folder / ("more" if i % 2 else "") / photo.name)
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    card(page, 0).locator("[data-role=folder]").set_input_files(folder)
    expect(card(page, 0).get_by_test_id("class-count")).to_have_text(str(PER_CLASS))
    expect(card(page, 0).locator(".rejected")).to_be_hidden()

    dropped = [
        {"name": p.name, "data": base64.b64encode(p.read_bytes()).decode()}
        for p in photos(tmp_path, "yellow", "sunflowers", (230, 200, 30))
    ]
    transfer = page.evaluate_handle(DATA_TRANSFER, dropped)
    zone = card(page, 1).locator(".dropzone")
    for event in ("dragenter", "dragover", "drop"):
        zone.dispatch_event(event, {"dataTransfer": transfer})
    expect(card(page, 1).get_by_test_id("class-count")).to_have_text(str(PER_CLASS))

    # Deleting a thumbnail updates the count.
    first = card(page, 1).locator(".thumb").first
    first.hover()
    first.get_by_role("button").click()
    expect(card(page, 1).get_by_test_id("class-count")).to_have_text(str(PER_CLASS - 1))

    page.get_by_test_id("mode-finetune").check()
    page.get_by_text("Advanced").click()
    expect(page.locator("#param-epochs")).to_have_value(str(DEFAULT_EPOCHS[Mode.FINETUNE]))
    expect(page.locator("#param-unfreeze_blocks")).to_be_enabled()
    page.locator("#param-epochs").fill("50")
    page.get_by_test_id("train").click()
    expect(page.get_by_test_id("train-status")).to_contain_text("Step", timeout=30_000)

    page.reload()
    expect(page.get_by_test_id("mode-finetune")).to_be_checked()
    expect(page.locator("#param-epochs")).to_have_value("50")
    status = page.get_by_test_id("train-status")
    expect(status).to_contain_text(re.compile("Step|Training|Waiting"))
    expect(page.locator("#cancel")).to_be_visible()
    expect(page.get_by_test_id("train")).to_be_disabled()
    page.wait_for_function(
        "() => document.querySelector('[data-testid=progress]').position > 0", timeout=60_000
    )
    shot(page, screenshots, "07-reconnected")
    page.locator("#cancel").click()
    expect(status).to_contain_text("cancelled", timeout=60_000)
    expect(page.get_by_test_id("train")).to_be_enabled()
    expect(page.locator("#cancel")).to_be_hidden()


def test_every_control_is_reachable_by_keyboard(page: Page) -> None:
    page.goto("/")
    expect(page.get_by_test_id("class-card")).to_have_count(2)
    page.locator("body").focus()
    reached = set()
    for _ in range(40):
        page.keyboard.press("Tab")
        reached.add(
            page.evaluate("document.activeElement.dataset.testid || document.activeElement.id")
        )
    wanted = {"class-name", "class-upload", "add-class", "mode-transfer", "train"}
    assert wanted <= reached, f"not reached by Tab: {wanted - reached}"
    # The mode radios are one Tab stop; the arrow keys move between them.
    was_transfer = page.get_by_test_id("mode-transfer").is_checked()
    page.locator("input[name=mode]:checked").focus()
    page.keyboard.press("ArrowDown")
    expect(
        page.get_by_test_id("mode-finetune" if was_transfer else "mode-transfer")
    ).to_be_checked()


OVERFIT_CASES = """async () => {
  const { overfittingWarning } = await import('/static/js/insights.js');
  const epoch = (train, val, i) => ({ train_acc: train, val_acc: val, train_loss: 1 - i / 20, val_loss: 0.5 });
  const growing = Array.from({ length: 12 }, (_, i) => epoch(Math.min(1, 0.5 + i * 0.05), i < 6 ? 0.5 + i * 0.05 : 0.7, i));
  const together = Array.from({ length: 12 }, (_, i) => epoch(0.5 + i * 0.04, 0.49 + i * 0.04, i));
  return {
    growing: overfittingWarning(growing, { nVal: 200, mode: 'finetune', kept: 0.78 }),
    together: overfittingWarning(together, { nVal: 200 }),
    noisy: overfittingWarning(growing, { nVal: 4 }),
  };
}"""


def test_overfitting_warning_speaks_plainly_and_only_when_the_gap_grows(page: Page) -> None:
    page.goto("/")
    cases = page.evaluate(OVERFIT_CASES)
    assert "memorise" in cases["growing"]
    assert "more varied ones" in cases["growing"] and "fewer epochs" in cases["growing"]
    assert "transfer learning instead of fine-tuning" in cases["growing"]
    assert "kept the weights of an earlier epoch that did better" in cases["growing"]
    assert cases["together"] == ""
    assert cases["noisy"] == ""  # a gap of a single image out of four is noise
