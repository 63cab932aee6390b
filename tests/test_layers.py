"""The layers stay layered: the engine knows no web, store or settings; the service knows no web framework."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[1] / "app"
WEB_FRAMEWORKS = ("fastapi", "starlette", "uvicorn", "jinja2", "python_multipart", "multipart")
# What each layer may not import, at any depth of any module below it (function-level imports too).
FORBIDDEN = {
    "engine": (*WEB_FRAMEWORKS, "app.service", "app.web", "app.cli", "app.config"),
    "service": (*WEB_FRAMEWORKS, "app.web", "app.cli"),
    "web": ("app.cli",),
}


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module an `import` or `from … import` in the file names, with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def violations(layer: str) -> list[str]:
    banned = FORBIDDEN[layer]
    return [
        f"{path.relative_to(APP.parent)}:{line} imports {module}"
        for path in sorted((APP / layer).rglob("*.py"))
        for line, module in imported_modules(path)
        if any(module == name or module.startswith(name + ".") for name in banned)
    ]


@pytest.mark.parametrize("layer", list(FORBIDDEN))
def test_no_layer_imports_a_layer_above_it(layer: str) -> None:
    assert violations(layer) == []


def test_the_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The parser finds imports inside functions too, so the check above cannot pass vacuously."""
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from fastapi import APIRouter\n    import app.web.deps\n")
    assert [name for _, name in imported_modules(module)] == ["fastapi", "app.web.deps"]
    assert imported_modules(APP / "web" / "factory.py"), "the web factory imports nothing?"
