"""The one way Teachbox turns bytes into pixels: the checks that refuse a file, then preprocess.py.

Training, evaluation, prediction and uploads all call `decode_image`, so an image means the same
thing everywhere. Everything that can be checked from the header is checked before decoding; the
decoding and preprocessing themselves are preprocess.py, which the model zip ships verbatim.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from app.engine.errors import ImageRejected, beside_limit
from app.engine.preprocess import (
    Preprocessing,
    normalise,
    resize_and_crop,
    rgb_to_input,
    to_rgb,
    upright_rgb,
)

# Re-exported: callers take the preprocessing steps from here, beside the checks.
__all__ = [
    "Preprocessing",
    "decode_image",
    "list_image_files",
    "list_other_files",
    "model_input",
    "normalise",
    "resize_and_crop",
    "to_rgb",
]

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")
ACCEPTED_FORMATS_TEXT = "JPEG, PNG, WebP, BMP or GIF"
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif"})
DEFAULT_MAX_PIXELS = 40_000_000
MAX_ASPECT_RATIO = 20.0

ImageFile.LOAD_TRUNCATED_IMAGES = False
# Teachbox checks the header against its own pixel cap before decoding (see `_check_size`), so
# Pillow's bomb check, which warns below 2x its limit and raises above, would only blur the reason.
Image.MAX_IMAGE_PIXELS = None

# Signatures of formats people often try, so the refusal can name what was sent.
_KNOWN_OTHER_FORMATS: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"%PDF", "PDF"),
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"SIMPLE  =", "FITS"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"8BPS", "Photoshop (PSD)"),
)


def _sniff_other_format(head: bytes) -> str | None:
    for magic, name in _KNOWN_OTHER_FORMATS:
        if head.startswith(magic):
            return name
    if head[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        return "HEIC/AVIF"
    text = head[:512].lstrip().lower()
    if text.startswith((b"<svg", b"<?xml")) or b"<svg" in text:
        return "SVG"
    if text.startswith((b"<!doctype html", b"<html")):
        return "HTML"
    return None


def _open(data: bytes) -> Image.Image:
    if not data:
        raise ImageRejected("The file is empty. Choose a JPEG, PNG, WebP, BMP or GIF image.")
    other = _sniff_other_format(data[:1024])
    if other is not None:
        raise ImageRejected(
            f"{other} files are not accepted. Convert it to {ACCEPTED_FORMATS_TEXT} and upload it again."
        )
    try:
        return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise ImageRejected(
            f"This file is not an image Teachbox can read. Use {ACCEPTED_FORMATS_TEXT}."
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageRejected(
            f"The image header is damaged ({exc}). Re-save the image and upload it again."
        ) from None


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise ImageRejected("The image has no pixels. Re-save it and upload it again.")
    if width * height > max_pixels:
        megapixels, limit = beside_limit(width * height / 1e6, max_pixels / 1e6)
        raise ImageRejected(
            f"The image is {width}×{height} ({megapixels} megapixels), over the limit of "
            f"{limit} megapixels. Downscale it and upload it again."
        )
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise ImageRejected(
            f"The image is {width}×{height}, too long and thin to classify (more than {MAX_ASPECT_RATIO:.0f}:1). "
            "Crop it closer to a square."
        )


def _draft_for(image: Image.Image, min_shorter_side: int) -> None:
    """Let libjpeg decode at a reduced scale that still keeps the shorter side >= `min_shorter_side`."""
    width, height = image.size
    factor = min(width, height) / min_shorter_side
    if image.format == "JPEG" and factor >= 2:
        image.draft("RGB", (int(width / factor) + 1, int(height / factor) + 1))


def decode_image(
    source: bytes | Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_shorter_side: int | None = None,
) -> Image.Image:
    """Validate and decode an image to upright 8-bit RGB, or raise ImageRejected with a reason."""
    data = source.read_bytes() if isinstance(source, Path) else source
    image = _open(data)
    _check_size(image.width, image.height, max_pixels)
    try:
        if draft_shorter_side is not None:
            _draft_for(image, draft_shorter_side)
        return upright_rgb(image)
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise ImageRejected(
            f"The image is corrupt or truncated ({exc}). Re-save it and upload it again."
        ) from None


def model_input(
    source: bytes | Path | Image.Image,
    prep: Preprocessing,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    fast: bool = False,
) -> np.ndarray:
    """Decode (unless already decoded), resize, crop and normalise one image for the network.

    `fast` lets JPEGs decode at a reduced scale that still keeps twice the resize size.
    """
    if isinstance(source, Image.Image):
        image = source
    else:
        draft = 2 * prep.resize_size if fast else None
        image = decode_image(source, max_pixels=max_pixels, draft_shorter_side=draft)
    return rgb_to_input(image, prep)


def list_image_files(folder: Path) -> list[Path]:
    """Image-looking files directly inside `folder`, sorted by name (hidden files skipped)."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def list_other_files(folder: Path) -> list[tuple[Path, str]]:
    """The files beside the images that Teachbox will not read, each with the reason (hidden files,
    such as .DS_Store, are left out silently)."""
    return [
        (
            p,
            f"{p.suffix or 'a file without an extension'} is not an image Teachbox reads; "
            f"convert it to {ACCEPTED_FORMATS_TEXT}",
        )
        for p in sorted(folder.iterdir())
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in IMAGE_SUFFIXES
    ]
