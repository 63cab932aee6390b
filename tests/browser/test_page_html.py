"""The page as served, without a browser: the form comes from TrainParams and the CSP holds."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.engine.backbones import BACKBONES
from app.engine.params import DEFAULT_EPOCHS, MODE_INFO, Mode, TrainParams
from app.web.factory import create_app
from tests.web.api_helpers import LOCAL

TEST_IDS = {"class-card", "add-class", "class-name", "class-upload", "class-count", "mode-transfer", "mode-finetune",
            "train", "progress", "train-status", "preview-upload", "prediction", "download-model", "compare",
            "compare-result", "recommendation", "keep-model", "health-findings", "health-refresh",
            "add-to-class", "add-to-class-select", "move-to-predicted", "share-model", "share-url",
            "share-embed", "revoke-share", "project-save", "project-open", "project-open-file",
            "unsure", "suggestions", "suggestion", "add-suggestion", "suspect"}  # fmt: skip
STATIC = Path(__file__).resolve().parents[2] / "static"


class Elements(HTMLParser):
    """Every start tag of a page, with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    client = TestClient(
        create_app(Settings(data_dir=tmp_path_factory.mktemp("data"))), base_url=LOCAL
    )
    response = client.get("/")
    assert response.status_code == 200
    return response.text, dict(response.headers)


def elements(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Elements()
    parser.feed(html)
    return parser.tags


def by_id(html: str, element_id: str) -> dict[str, str | None]:
    return next(attrs for _, attrs in elements(html) if attrs.get("id") == element_id)


def test_every_test_hook_is_on_the_page(page: tuple[str, dict[str, str]]) -> None:
    html, _ = page
    # `prediction` rows are made by the script; the others are in the HTML or the card template.
    found = {attrs["data-testid"] for _, attrs in elements(html) if attrs.get("data-testid")}
    assert found == TEST_IDS - {
        "prediction",
        "keep-model",
        "move-to-predicted",
        "suggestion",
        "add-suggestion",
        "suspect",
    }
    assert '"data-testid": "keep-model"' in (STATIC / "js" / "comparing.js").read_text()
    assert '"data-testid": "move-to-predicted"' in (STATIC / "js" / "insights.js").read_text()
    preview_js = (STATIC / "js" / "preview.js").read_text()
    assert (
        '"data-testid": "suggestion"' in preview_js
        and '"data-testid": "add-suggestion"' in preview_js
    )
    assert '"data-testid": "suspect"' in (STATIC / "js" / "health.js").read_text()
    assert 'data-testid": "prediction"' in (STATIC / "js" / "preview.js").read_text().replace(
        "'", '"'
    )


def test_advanced_panel_is_rendered_from_train_params(page: tuple[str, dict[str, str]]) -> None:
    html, _ = page
    fields = TrainParams.model_fields
    epochs = by_id(html, "param-epochs")
    assert (epochs["min"], epochs["max"], epochs["value"]) == (
        "1",
        "500",
        str(DEFAULT_EPOCHS[Mode.TRANSFER]),
    )
    batch = by_id(html, "param-batch_size")
    assert (batch["max"], batch["value"]) == ("512", str(fields["batch_size"].default))
    assert by_id(html, "param-learning_rate")["data-above"] == "0"
    assert fields["epochs"].description in html
    for help_line in [info.help for info in MODE_INFO.values()]:
        assert help_line in html
    options = re.findall(r'<option value="([^"]+)"', html)
    assert options == list(BACKBONES)


def test_page_config_carries_the_defaults_per_mode(page: tuple[str, dict[str, str]]) -> None:
    html, _ = page
    config = json.loads(by_id(html, "main")["data-config"])
    assert {mode: values["epochs"] for mode, values in config["defaults"].items()} == {
        m.value: n for m, n in DEFAULT_EPOCHS.items()
    }
    assert set(config["unfreeze"]) == set(BACKBONES)


def test_page_obeys_its_content_security_policy(page: tuple[str, dict[str, str]]) -> None:
    html, headers = page
    assert "script-src 'self'" in headers["content-security-policy"]
    tags = elements(html)
    assert not [tag for tag, _ in tags if tag == "style"]
    assert not [attrs for tag, attrs in tags if tag == "script" and not attrs.get("src")]
    assert not [
        attrs
        for _, attrs in tags
        if "style" in attrs or any(name.startswith("on") for name in attrs)
    ]
    for _, attrs in tags:
        for name in ("src", "href"):
            assert not (attrs.get(name) or "").startswith(("http:", "https:", "//")), attrs


def test_vendored_chart_library_keeps_its_licence() -> None:
    vendor = STATIC / "vendor" / "chartjs"
    assert "MIT License" in (vendor / "LICENSE.md").read_text()
    assert (vendor / "chart.umd.min.js").read_text().startswith("/*!\n * Chart.js v4.")


def test_error_page_says_what_went_wrong_without_the_app_script(tmp_path: Path) -> None:
    templates = create_app(Settings(data_dir=tmp_path)).state.templates
    html = templates.get_template("error.html").render(
        message="Project 7 does not exist. Pick one from the list.", status_code=404
    )
    assert "Project 7 does not exist. Pick one from the list." in html and "404" in html
    assert "/static/js/app.js" not in html
