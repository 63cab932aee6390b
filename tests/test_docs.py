"""The README documents what the code does: every setting, training parameter, command, CLI flag
and API route (with its success status), and the two make targets' promise."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from app.cli.parser import build_parser
from app.config import Settings
from app.engine.params import TrainParams
from app.web.factory import create_app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_every_setting_is_documented_with_its_default(name: str) -> None:
    row = next((line for line in README.splitlines() if line.startswith(f"| `{name}` |")), None)
    assert row is not None, f"README's settings table lacks {name}"
    assert f"`TEACHBOX_{name.upper()}`" in row
    field = Settings.model_fields[name]
    if field.default is not None and not callable(field.default_factory):
        assert f"`{field.default}`" in row, f"README shows a different default for {name}"


@pytest.mark.parametrize("name", list(TrainParams.model_fields))
def test_every_training_parameter_is_documented(name: str) -> None:
    assert re.search(rf"^\| {name} \|", README, re.MULTILINE), (
        f"README's parameter table lacks {name}"
    )


def test_every_cli_command_is_documented() -> None:
    commands = build_parser()._subparsers._group_actions[0].choices
    for command in commands:
        assert f"teachbox {command}" in README, command


def readme_section(title: str) -> str:
    """The README's text under a `## title` heading, up to the next `## ` heading."""
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def cli_flags() -> list[tuple[str, str]]:
    commands = build_parser()._subparsers._group_actions[0].choices
    return [
        (command, flag)
        for command, parser in commands.items()
        for action in parser._actions
        for flag in action.option_strings
        if flag.startswith("--") and flag != "--help"
    ]


@pytest.mark.parametrize(("command", "flag"), cli_flags())
def test_every_cli_flag_is_documented(command: str, flag: str) -> None:
    assert re.search(rf"{re.escape(flag)}\b", readme_section("Command line")), (
        f"README's command line section lacks `teachbox {command} {flag}`"
    )


def api_routes() -> dict[tuple[str, str], str]:
    """(method, path) of every API route, with its success status, from the app's own OpenAPI
    (with accounts on, which adds their routes to the others)."""
    with tempfile.TemporaryDirectory() as folder:
        spec = create_app(Settings(data_dir=Path(folder), auth="accounts")).openapi()
    return {
        (method.upper(), path): min(code for code in operation["responses"] if code[0] == "2")
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
    }


ROUTES = api_routes()
TABLE_ROUTE = re.compile(r"`(GET|POST|PATCH|PUT|DELETE) (/api/[^`?\s]*)")


def rows_naming(method: str, path: str) -> list[str]:
    return [
        line
        for line in README.splitlines()
        if line.startswith("| ") and (method, path) in TABLE_ROUTE.findall(line)
    ]


@pytest.mark.parametrize(("method", "path"), list(ROUTES))
def test_every_api_route_is_in_a_readme_table_with_its_status(method: str, path: str) -> None:
    rows = rows_naming(method, path)
    assert rows, f"README's API tables lack `{method} {path}`"
    status = ROUTES[method, path]
    assert any(re.search(rf"\b{status}\b", row) for row in rows), (
        f"README's row for `{method} {path}` does not give its status {status}"
    )


def test_the_readme_names_no_route_the_app_lacks() -> None:
    documented = {route for line in README.splitlines() for route in TABLE_ROUTE.findall(line)}
    assert documented - set(ROUTES) == set()


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_installs_neither_chromium_redis_nor_postgresql_and_make_test_does() -> None:
    def planned(target: str) -> str:
        return subprocess.run(
            ["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout

    assert "chromium" not in planned("run")
    assert "chromium" in planned("test")
    assert "redis-server" not in planned("run")
    assert "redis-server" in planned("test")
    assert "postgresql" not in planned("run")
    assert "postgresql" in planned("test")
