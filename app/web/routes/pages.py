"""The browser page: one HTML page whose training form is rendered from `TrainParams`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from annotated_types import Ge, Gt, Le
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from pydantic.fields import FieldInfo

from app.engine.backbones import BACKBONES, DEFAULT_BACKBONE
from app.engine.dataset import MIN_IMAGES_PER_CLASS
from app.engine.params import DEFAULT_EPOCHS, MODE_INFO, Mode, TrainParams

router = APIRouter(include_in_schema=False)

# The knobs shown under "Advanced", in order; the others keep their defaults (few knobs, as Teachable Machine).
ADVANCED_FIELDS = ("epochs", "batch_size", "learning_rate", "unfreeze_blocks", "backbone", "int8")
LABELS = {"unfreeze_blocks": "Blocks to unfreeze", "int8": "Also export an int8 model"}
FINETUNE_ONLY = frozenset({"unfreeze_blocks"})
BACKBONE_TITLES = {
    "mobilenet_v2": "MobileNetV2 (default)",
    "mobilenet_v3_large": "MobileNetV3 Large",
    "mobilenet_v3_small": "MobileNetV3 Small (fastest)",
}


@dataclass(frozen=True)
class FieldView:
    """One input of the Advanced panel, with the range and help text of its `TrainParams` field."""

    name: str
    label: str
    help: str
    kind: str
    default: Any
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    step: str = "1"
    options: tuple[tuple[str, str], ...] = ()
    finetune_only: bool = False


def _bound(info: FieldInfo, rule: type[Ge | Gt | Le]) -> float | None:
    """The field's bound of this kind (`ge`, `gt` or `le`), if it has one."""
    for item in info.metadata:
        if isinstance(item, rule):
            bound: float = getattr(item, rule.__name__.lower())  # an int stays an int on the page
            return bound
    return None


def _field_view(name: str, info: FieldInfo) -> FieldView:
    view = FieldView(
        name=name,
        label=LABELS.get(name, name.replace("_", " ").capitalize()),
        help=info.description or "",
        kind="number",
        default=info.default,
        finetune_only=name in FINETUNE_ONLY,
    )
    if name == "backbone":
        options = tuple((name, BACKBONE_TITLES.get(name, name)) for name in BACKBONES)
        return replace(view, kind="select", default=DEFAULT_BACKBONE, options=options)
    if info.annotation is bool:
        return replace(view, kind="checkbox", default=bool(info.default))
    default = {
        "epochs": DEFAULT_EPOCHS[Mode.TRANSFER],
        "unfreeze_blocks": BACKBONES[DEFAULT_BACKBONE].default_unfreeze_blocks,
    }.get(name, info.default)
    return replace(
        view,
        default=default,
        step="any" if info.annotation is float else "1",
        minimum=_bound(info, Ge),
        above=_bound(info, Gt),
        maximum=_bound(info, Le),
    )


@cache
def advanced_fields() -> tuple[FieldView, ...]:
    return tuple(_field_view(name, TrainParams.model_fields[name]) for name in ADVANCED_FIELDS)


@cache
def page_config() -> dict[str, Any]:
    """What the page's scripts need to know about the parameters: defaults per mode and per backbone."""
    defaults = {field.name: field.default for field in advanced_fields()}
    return {
        "defaults": {mode.value: {**defaults, "epochs": DEFAULT_EPOCHS[mode]} for mode in Mode},
        "minImages": MIN_IMAGES_PER_CLASS,
        "modeNames": {mode.value: info.name for mode, info in MODE_INFO.items()},
        "unfreeze": {
            name: {"default": spec.default_unfreeze_blocks, "max": len(spec.block_names)}
            for name, spec in BACKBONES.items()
        },
    }


def _modes() -> list[dict[str, str]]:
    return [
        {"value": mode.value, "title": info.name, "help": info.help}
        for mode, info in MODE_INFO.items()
    ]


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> HTMLResponse:
    config = page_config() | {"auth": request.app.state.settings.auth}
    context = {"modes": _modes(), "fields": advanced_fields(), "config": config}
    return request.app.state.templates.TemplateResponse(request, "index.html", context)


@router.get("/docs", response_class=HTMLResponse)
def docs(request: Request) -> HTMLResponse:
    """Swagger UI, served from static/vendor and started by a static script: no CDN, no inline code."""
    context = {"openapi_url": request.app.openapi_url}
    return request.app.state.templates.TemplateResponse(request, "docs.html", context)
