"""An upload made safe to keep: validated, fully decoded once, measured upright, with our own thumbnail."""

from __future__ import annotations

import io
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from app.config import Settings
from app.engine.embeddings import content_hash
from app.engine.errors import beside_limit
from app.engine.images import ACCEPTED_FORMATS, decode_image

THUMBNAIL_SIZE = 256


THUMBNAIL_QUALITY = 85


DOWNLOAD_QUALITY = 92


MAX_FILENAME = 200


SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif"}


# EXIF orientations 5-8 rotate by 90 degrees, so the upright image has width and height swapped.
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})


@dataclass(frozen=True)
class PreparedImage:
    """An accepted upload: its original bytes, what they are, and our re-encoded thumbnail."""

    data: bytes
    suffix: str
    width: int
    height: int
    sha256: str
    thumbnail: bytes


def clean_filename(raw: str | None) -> str:
    """The last path component of an uploaded name, without control or bidi characters, shortened."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if not unicodedata.category(ch).startswith("C")).strip()
    return name[:MAX_FILENAME] or "image"


def jpeg_bytes(image: Image.Image, quality: int) -> bytes:
    """The pixels alone as JPEG: Pillow would otherwise copy an uploaded comment (GIF, JPEG) along."""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, comment=b"")
    return buffer.getvalue()


def _upright_size(header: Image.Image) -> tuple[int, int]:
    orientation = header.getexif().get(0x0112, 1)
    return (
        (header.height, header.width) if orientation in _TRANSPOSING_ORIENTATIONS else header.size
    )


def prepare_image(data: bytes, max_pixels: int) -> PreparedImage:
    """Validate and fully decode an upload (raises ImageRejected) and make its thumbnail."""
    image = decode_image(data, max_pixels, draft_shorter_side=THUMBNAIL_SIZE)
    header = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    width, height = _upright_size(header)
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    thumbnail = jpeg_bytes(image, THUMBNAIL_QUALITY)
    return PreparedImage(
        data, SUFFIXES[str(header.format)], width, height, content_hash(data), thumbnail
    )


def reencode(path: Path, max_pixels: int) -> bytes:
    """A stored image decoded and written again as JPEG, so that served bytes are always ours."""
    return jpeg_bytes(decode_image(path, max_pixels), DOWNLOAD_QUALITY)


def file_too_large(size: int, settings: Settings) -> str:
    megabytes, limit = beside_limit(size / 1e6, settings.max_file_mb)
    return f"The file is {megabytes} MB, over the limit of {limit} MB per file. Downscale it and upload it again."
