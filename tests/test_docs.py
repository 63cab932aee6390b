"""The README documents what the code does: every setting, every training parameter, every command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from app.cli.parser import build_parser
from app.config import Settings
from app.engine.params import TrainParams

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


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
