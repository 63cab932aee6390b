"""Files written so that a crash never leaves half of one in place."""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

from app.engine.errors import StorageFull


def write_atomic(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        with partial.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        if exc.errno == errno.ENOSPC:
            raise StorageFull(
                "The server's disk is full. Free some space or delete old projects, then try again."
            ) from None
        raise
