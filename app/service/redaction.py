"""What a job shows the world: stored image paths become image ids and thumbnail URLs, never server paths.

The training core reports images by path (`misclassified[].path`, `skipped[].path`, a health
finding's `images`); a stored image's file is named `<image id>.<ext>`, so its id is the stem.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from app.service.store import Store

HIDDEN = "[data]"


class Publisher:
    """Rewrites one project's events and metrics for the API."""

    def __init__(self, store: Store, project_id: str) -> None:
        self.project_id = project_id
        self.images_dir = str(store.images_dir(project_id)) + "/"
        self.data_dir = str(store.data_dir)
        self._image_path = re.compile(re.escape(self.images_dir) + r"([0-9a-f]{32})\.\w+")

    def thumbnail_url(self, image_id: str) -> str:
        return f"/api/projects/{self.project_id}/images/{image_id}/thumbnail"

    def text(self, value: str) -> str:
        """A stored image's full path becomes its id; any other server path loses its folders."""
        whole = self._image_path.fullmatch(value)
        if whole:
            return whole[1]
        if value.startswith(self.data_dir + "/") and "\n" not in value and " " not in value:
            return Path(value).name
        return self._image_path.sub(r"\1", value).replace(self.data_dir, HIDDEN)

    def entry(self, value: dict[str, Any]) -> dict[str, Any]:
        """`{"path": ...}` entries (mistakes, skipped files) become `{"image_id", "thumbnail_url"}`."""
        path = value["path"]
        whole = self._image_path.fullmatch(path)
        image_id = whole[1] if whole else None
        # An entry's own empty image_id/thumbnail_url (a health suspect's) gives way to the found ones.
        made = ("path", "image_id", "thumbnail_url")
        rest = {key: self.data(item) for key, item in value.items() if key not in made}
        url = self.thumbnail_url(image_id) if image_id else None
        return {"image_id": image_id, "thumbnail_url": url, **rest}

    def data(self, value: Any) -> Any:
        if isinstance(value, dict):
            if isinstance(value.get("path"), str):
                return self.entry(value)
            return {key: self.data(item) for key, item in value.items()}
        if isinstance(value, list):
            return [self.data(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def event(self, event: BaseModel) -> BaseModel:
        return type(event).model_validate(self.data(event.model_dump(mode="json")))
