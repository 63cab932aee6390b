"""What a share link serves: the project's current model and the part of its metadata the page
reads, straight from the model zip, so that training again changes what the link serves."""

from __future__ import annotations

import json
import zipfile
from typing import Any

from app.engine.errors import NotFound
from app.service.store import Store

MODEL_FILES = ("model.onnx", "model.int8.onnx")
# The page needs these; the rest of metadata.json (training metrics, image names) stays private.
PUBLIC_METADATA = (
    "format",
    "labels",
    "image_size",
    "resize_size",
    "interpolation",
    "mean",
    "std",
    "input",
    "output",
    "backbone",
    "unsure_below",
    "int8",
)


def link_gone() -> NotFound:
    return NotFound(
        "This share link does not exist or was revoked. Ask the model's owner for a new link."
    )


def shared_project_id(store: Store, token: str) -> str:
    project_id = store.shared_project(token)
    if project_id is None:
        raise link_gone()
    return project_id


def _read_member(store: Store, project_id: str, name: str) -> bytes:
    job = store.latest_model_job(project_id)
    if job is None:
        raise link_gone()
    try:
        with zipfile.ZipFile(store.model_path(job)) as archive:
            return archive.read(name)
    except (KeyError, OSError, zipfile.BadZipFile):
        raise NotFound(f"This shared model has no {name}.") from None


def public_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    return {key: metadata[key] for key in PUBLIC_METADATA if key in metadata}


def shared_file(store: Store, token: str, name: str) -> bytes:
    """metadata.json (its public part), model.onnx or model.int8.onnx of the link's current model."""
    project_id = shared_project_id(store, token)
    if name == "metadata.json":
        metadata = json.loads(_read_member(store, project_id, name))
        return json.dumps(public_metadata(metadata)).encode()
    if name not in MODEL_FILES:
        raise NotFound(
            f"A share link serves only web/, metadata.json and {', '.join(MODEL_FILES)}."
        )
    return _read_member(store, project_id, name)
