"""What the Schemathesis runs leave unchecked, and why: shared by the run without accounts and the one with."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from schemathesis import Case
from schemathesis.specs.openapi.checks import positive_data_acceptance


def excluded_checks(case: Case) -> list[Callable[..., Any]] | None:
    """No schema can say "a bundle Teachbox wrote": any bytes are a valid `binary`, and refusing
    them is the point (tests/web/test_bundles.py checks each refusal and its sentence)."""
    if case.operation.path == "/api/projects/bundle":
        return [positive_data_acceptance]
    return None
