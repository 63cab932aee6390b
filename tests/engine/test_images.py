"""The one decoding function: what it accepts, how it converts, and the exact reasons it refuses."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.engine.errors import ImageRejected
from app.engine.images import Preprocessing, decode_image, model_input
from tests.conftest import EXIF_STORED_AS, png_header_only


def encode(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def marked_image() -> Image.Image:
    """A 40x20 image, red in its top-left quarter, so orientation is visible."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:10, :20] = (255, 0, 0)
    return Image.fromarray(pixels, "RGB")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    # Store the pixels so that, once the EXIF transform is applied, red is top-left again.
    upright = marked_image()
    stored = upright.transpose(EXIF_STORED_AS[orientation]) if orientation > 1 else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    decoded = np.asarray(decode_image(encode(stored, "PNG", exif=exif.tobytes())))
    assert decoded.shape == (20, 40, 3)
    assert tuple(decoded[2, 2]) == (255, 0, 0)
    assert tuple(decoded[17, 37]) == (0, 0, 0)


def test_cmyk_jpeg_becomes_rgb() -> None:
    decoded = decode_image(encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG"))
    assert decoded.mode == "RGB"
    red, green, blue = decoded.getpixel((16, 16))
    assert red > 200 and green < 60 and blue < 60


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    array = np.full((16, 16), 32768, dtype=np.uint16)
    decoded = decode_image(encode(Image.fromarray(array), "PNG"))
    assert decoded.mode == "RGB"
    assert decoded.getpixel((0, 0)) == (128, 128, 128)


def test_transparency_goes_onto_white() -> None:
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 255] * 256)
    palette.info["transparency"] = 0
    assert decode_image(encode(rgba, "PNG")).getpixel((1, 1)) == (255, 255, 255)
    assert decode_image(encode(palette, "PNG", transparency=0)).getpixel((1, 1)) == (255, 255, 255)


def test_one_bit_and_greyscale_become_rgb() -> None:
    assert decode_image(encode(Image.new("1", (8, 8), 1), "PNG")).getpixel((0, 0)) == (
        255,
        255,
        255,
    )
    assert decode_image(encode(Image.new("L", (8, 8), 77), "PNG")).getpixel((0, 0)) == (77, 77, 77)


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (16, 16), (250, 0, 0)), Image.new("RGB", (16, 16), (0, 0, 250))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    red, _, blue = decode_image(data).getpixel((8, 8))
    assert red > 200 and blue < 50


def test_webp_and_bmp_are_accepted() -> None:
    for fmt in ("WEBP", "BMP"):
        assert decode_image(encode(Image.new("RGB", (10, 10), (1, 2, 3)), fmt)).size == (10, 10)


def test_huge_header_is_refused_before_decoding() -> None:
    with pytest.raises(
        ImageRejected, match=r"20000×20000 \(400 megapixels\), over the limit of 40 megapixels"
    ):
        decode_image(png_header_only(20000, 20000))


def test_pixel_cap_applies_to_what_pillow_only_warns_about() -> None:
    with pytest.raises(ImageRejected, match="over the limit of 40 megapixels"):
        decode_image(png_header_only(10000, 10000))
    with pytest.raises(ImageRejected, match="over the limit of 0.005 megapixels"):
        decode_image(encode(Image.new("RGB", (100, 100)), "PNG"), max_pixels=5000)


def test_extreme_aspect_ratio_is_refused() -> None:
    with pytest.raises(ImageRejected, match="65000×1, too long and thin"):
        decode_image(png_header_only(65000, 1))


def test_truncated_jpeg_is_refused_as_corrupt() -> None:
    data = encode(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)),
        "JPEG",
    )
    with pytest.raises(ImageRejected, match="corrupt or truncated"):
        decode_image(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The file is empty"),
        (b"just some text, not a picture", "not an image Teachbox can read"),
        (b"<!DOCTYPE html><html><body>hi</body></html>", "HTML files are not accepted"),
        (
            b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>',
            "SVG files are not accepted",
        ),
        (b"%PDF-1.4\n%...", "PDF files are not accepted"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n", "PostScript/EPS files are not accepted"),
        (b"SIMPLE  =                    T" + b" " * 50, "FITS files are not accepted"),
    ],
)
def test_non_images_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(ImageRejected, match=message):
        decode_image(data)


def test_tiff_is_outside_the_allowlist() -> None:
    with pytest.raises(
        ImageRejected,
        match="TIFF files are not accepted. Convert it to JPEG, PNG, WebP, BMP or GIF",
    ):
        decode_image(encode(Image.new("RGB", (8, 8)), "TIFF"))


def test_model_input_is_normalised_chw() -> None:
    prep = Preprocessing(resize_size=32, crop_size=28, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    array = model_input(encode(Image.new("RGB", (80, 40), (255, 0, 0)), "PNG"), prep)
    assert array.shape == (3, 28, 28) and array.dtype == np.float32
    assert np.allclose(array[0], 1.0) and np.allclose(array[1], -1.0)


def test_small_limits_are_stated_with_digits_that_tell_them_apart() -> None:
    with pytest.raises(ImageRejected) as caught:
        decode_image(png_header_only(320, 263), max_pixels=60_000)
    assert caught.value.reason.startswith(
        "The image is 320×263 (0.0842 megapixels), over the limit of 0.06 megapixels."
    )
    with pytest.raises(ImageRejected) as caught:
        decode_image(png_header_only(317, 317), max_pixels=100_000)
    assert "(0.1005 megapixels), over the limit of 0.1 megapixels" in caught.value.reason
