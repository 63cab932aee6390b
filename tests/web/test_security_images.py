"""Issue 6, cases 8-15: the image rules through the API, for upload and for predict alike.

tests/engine/test_images.py checks `decode_image` itself; here every hostile file goes through a
real upload and a real predict against a trained model, and must be refused with the same sentence.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image, ImageFile

from app.config import Settings
from app.web.factory import create_app
from tests.conftest import EXIF_STORED_AS, png_header_only
from tests.web.api_helpers import LOCAL, create_class, image_bytes, make_trainable, wait_for_job

NOT_READABLE = "This file is not an image Teachbox can read. Use JPEG, PNG, WebP, BMP or GIF."


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def fits() -> bytes:
    cards = ["SIMPLE  =                    T", "BITPIX  =                    8", "NAXIS   =                    0", "END"]  # fmt: skip
    return "".join(card.ljust(80) for card in cards).ljust(2880).encode()


def truncated_jpeg() -> bytes:
    whole = image_bytes(seed=11, size=(256, 256))
    cut = whole[: len(whole) * 6 // 10]
    Image.open(io.BytesIO(cut)).verify()  # Pillow's verify() alone lets it pass
    return cut


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Iterator[dict[str, Any]]:
    """One project with a trained model (transfer, 2 epochs) and an empty class for the uploads."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("images"), cache_dir=cache_dir, embed_on_upload=False
    )
    with TestClient(create_app(settings), base_url=LOCAL) as client:
        pid, _ = make_trainable(client, per_class=4)
        jid = client.post(f"/api/projects/{pid}/jobs", json={"mode": "transfer", "epochs": 2})
        wait_for_job(client, jid.json()["id"], {"succeeded"})
        cid = create_class(client, pid, "uploads")
        yield {"client": client, "pid": pid, "cid": cid}


def upload_one(trained: dict[str, Any], name: str, data: bytes) -> dict[str, Any]:
    client, pid, cid = trained["client"], trained["pid"], trained["cid"]
    response = client.post(
        f"/api/projects/{pid}/classes/{cid}/images", files={"files": (name, data, "image/jpeg")}
    )
    assert response.status_code == 200, response.text
    return response.json()


def predict(trained: dict[str, Any], name: str, data: bytes) -> Any:
    return trained["client"].post(
        f"/api/projects/{trained['pid']}/predict", files={"file": (name, data, "image/jpeg")}
    )


def assert_refused_everywhere(trained: dict[str, Any], name: str, data: bytes, reason: str) -> None:
    """Rejected by upload with `reason` (nothing stored), and refused by predict with the same 422."""
    before = len(trained["client"].get(f"/api/projects/{trained['pid']}/images").json())
    body = upload_one(trained, name, data)
    assert body == {"added": [], "rejected": [{"filename": name, "reason": reason}]}
    assert len(trained["client"].get(f"/api/projects/{trained['pid']}/images").json()) == before
    refused = predict(trained, name, data)
    assert refused.status_code == 422
    assert refused.json() == {"detail": reason}


@pytest.fixture
def decoded_sizes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The size of every image Pillow actually decodes while the test runs (a spy, not a stand-in)."""
    sizes: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load

    def spying_load(image: ImageFile.ImageFile) -> Any:
        sizes.append(image.size)
        return load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spying_load)
    return sizes


# 8. A PNG whose header says 20000x20000 -> rejected before decoding.


def test_case_08_a_png_claiming_20000x20000_is_refused_before_decoding(
    trained: dict[str, Any], decoded_sizes: list[tuple[int, int]]
) -> None:
    reason = "The image is 20000×20000 (400 megapixels), over the limit of 40 megapixels. Downscale it and upload it again."
    assert_refused_everywhere(trained, "huge.png", png_header_only(20000, 20000), reason)
    assert (20000, 20000) not in decoded_sizes


# 9. A 10000x10000 image (100 MP, which Pillow only warns about) -> rejected by the pixel cap.


def test_case_09_a_real_100_megapixel_image_is_refused_by_the_pixel_cap(
    trained: dict[str, Any], decoded_sizes: list[tuple[int, int]]
) -> None:
    data = encode(Image.new("1", (10000, 10000), 1), "PNG")  # a real, complete image, 1 bit deep
    assert Image.open(io.BytesIO(data)).size == (10000, 10000)
    reason = "The image is 10000×10000 (100 megapixels), over the limit of 40 megapixels. Downscale it and upload it again."
    assert_refused_everywhere(trained, "big.png", data, reason)
    assert (10000, 10000) not in decoded_sizes


# 10. 65000x1 -> rejected (extreme aspect ratio).


def test_case_10_an_extreme_aspect_ratio_is_refused(trained: dict[str, Any]) -> None:
    data = encode(Image.new("L", (65000, 1), 128), "PNG")
    reason = "The image is 65000×1, too long and thin to classify (more than 20:1). Crop it closer to a square."
    assert_refused_everywhere(trained, "line.png", data, reason)


# 11. A truncated JPEG -> rejected as corrupt (decode it fully; verify() alone lets it pass).


def test_case_11_a_truncated_jpeg_is_refused_as_corrupt(trained: dict[str, Any]) -> None:
    data = truncated_jpeg()
    reason = upload_one(trained, "cut.jpg", data)["rejected"][0]["reason"]
    assert reason.startswith("The image is corrupt or truncated (")
    assert reason.endswith("). Re-save it and upload it again.")
    assert_refused_everywhere(trained, "cut.jpg", data, reason)


# 12. An empty file, text, HTML or SVG with a .jpg name -> rejected as not an image.

NOT_IMAGES = {
    "empty.jpg": (b"", "The file is empty. Choose a JPEG, PNG, WebP, BMP or GIF image."),
    "notes.jpg": (b"just some text, not an image\n", NOT_READABLE),
    "page.jpg": (
        b"<!DOCTYPE html><html><script>alert(1)</script></html>",
        "HTML files are not accepted. Convert it to JPEG, PNG, WebP, BMP or GIF and upload it again.",
    ),
    "drawing.jpg": (
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>',
        "SVG files are not accepted. Convert it to JPEG, PNG, WebP, BMP or GIF and upload it again.",
    ),
    "bare-svg.jpg": (
        b'<svg xmlns="http://www.w3.org/2000/svg"><rect width="9" height="9"/></svg>',
        "SVG files are not accepted. Convert it to JPEG, PNG, WebP, BMP or GIF and upload it again.",
    ),
}


@pytest.mark.parametrize("name", NOT_IMAGES)
def test_case_12_files_that_are_not_images_are_refused(trained: dict[str, Any], name: str) -> None:
    data, reason = NOT_IMAGES[name]
    assert_refused_everywhere(trained, name, data, reason)


# 13. TIFF, PDF, EPS, FITS and other formats outside the allowlist -> rejected.


def _other_formats() -> dict[str, tuple[bytes, str]]:
    picture = Image.new("RGB", (32, 32), (200, 30, 30))

    def named(kind: str) -> str:
        return f"{kind} files are not accepted. Convert it to JPEG, PNG, WebP, BMP or GIF and upload it again."

    return {
        "tiff": (encode(picture, "TIFF"), named("TIFF")),
        "pdf": (encode(picture, "PDF"), named("PDF")),
        "eps": (encode(picture, "EPS"), named("PostScript/EPS")),
        "fits": (fits(), named("FITS")),
        "psd": (b"8BPS\x00\x01" + bytes(40), named("Photoshop (PSD)")),
        "jpeg2000": (b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(40), named("JPEG 2000")),
        "heic": (b"\x00\x00\x00\x18ftypheic" + bytes(40), named("HEIC/AVIF")),
        "ico": (encode(picture, "ICO"), NOT_READABLE),
        "ppm": (encode(picture, "PPM"), NOT_READABLE),
        "tga": (encode(picture, "TGA"), NOT_READABLE),
        "pcx": (encode(picture, "PCX"), NOT_READABLE),
        "sgi": (encode(picture, "SGI"), NOT_READABLE),
    }


OTHER_FORMATS = _other_formats()


@pytest.mark.parametrize("kind", OTHER_FORMATS)
def test_case_13_formats_outside_the_allowlist_are_refused(
    trained: dict[str, Any], kind: str
) -> None:
    data, reason = OTHER_FORMATS[kind]
    assert_refused_everywhere(trained, f"picture.{kind}.jpg", data, reason)


# 14. EXIF orientations 2-8 -> upright; CMYK, 16-bit, palette with transparency, RGBA, 1-bit ->
#     consistent RGB; an animated GIF -> its first frame.

QUADRANTS = {(0, 0): (220, 20, 20), (1, 0): (20, 200, 20), (0, 1): (20, 20, 220), (1, 1): (240, 240, 240)}  # fmt: skip


def upright_picture() -> Image.Image:
    """96x64, a different flat colour in each quarter, so any flip or turn shows."""
    pixels = np.zeros((64, 96, 3), dtype=np.uint8)
    for (column, row), colour in QUADRANTS.items():
        pixels[row * 32 : row * 32 + 32, column * 48 : column * 48 + 48] = colour
    return Image.fromarray(pixels, "RGB")


def served(trained: dict[str, Any], image_id: str, thumbnail: bool = False) -> Image.Image:
    suffix = "/thumbnail" if thumbnail else ""
    response = trained["client"].get(f"/api/projects/{trained['pid']}/images/{image_id}{suffix}")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG" and image.mode == "RGB"
    return image


def quadrant_colours(image: Image.Image) -> dict[tuple[int, int], tuple[int, ...]]:
    width, height = image.size
    return {
        (column, row): image.getpixel(
            (width // 4 + column * width // 2, height // 4 + row * height // 2)
        )
        for column, row in QUADRANTS
    }


def close(actual: tuple[int, ...], expected: tuple[int, ...], tolerance: int = 24) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected, strict=True))


def probabilities(response: Any) -> dict[str, float]:
    assert response.status_code == 200, response.text
    return {p["label"]: p["probability"] for p in response.json()["predictions"]}


@pytest.mark.parametrize("orientation", sorted(EXIF_STORED_AS))
def test_case_14_exif_orientations_are_served_and_predicted_upright(
    trained: dict[str, Any], orientation: int
) -> None:
    upright = upright_picture()
    stored = upright.transpose(EXIF_STORED_AS[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    jpeg = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    [added] = upload_one(trained, f"turned-{orientation}.jpg", jpeg)["added"]
    for thumbnail in (False, True):
        image = served(trained, added["id"], thumbnail)
        assert image.width > image.height
        colours = quadrant_colours(image)
        assert all(close(colours[q], QUADRANTS[q]) for q in QUADRANTS), colours
    # What predict (and training) decode: the same pixels as the upright picture, exactly (PNG).
    turned = predict(trained, "turned.png", encode(stored, "PNG", exif=exif.tobytes()))
    straight = predict(trained, "upright.png", encode(upright, "PNG"))
    assert probabilities(turned) == pytest.approx(probabilities(straight), abs=1e-6)


def _modes() -> dict[str, tuple[bytes, dict[tuple[int, int], tuple[int, int, int]]]]:
    """Files in awkward modes, and the RGB they must become at (x, y) of a 64x64 picture."""
    white, red = (255, 255, 255), (255, 0, 0)
    half_clear = Image.new("RGBA", (64, 64), (255, 0, 0, 255))
    half_clear.paste((0, 0, 255, 0), (0, 0, 32, 64))
    palette = Image.new("P", (64, 64), 0)
    palette.putpalette([0, 0, 255] + [255, 0, 0] * 255)
    palette.paste(1, (32, 0, 64, 64))
    frames = [Image.new("RGB", (64, 64), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    return {
        "cmyk.jpg": (
            encode(Image.new("CMYK", (64, 64), (0, 255, 255, 0)), "JPEG"),
            {(32, 32): red},
        ),
        "sixteen-bit.png": (
            encode(Image.fromarray(np.full((64, 64), 32768, dtype=np.uint16)), "PNG"),
            {(32, 32): (128, 128, 128)},
        ),
        "palette-transparent.png": (
            encode(palette, "PNG", transparency=0),
            {(8, 32): white, (56, 32): red},
        ),
        "rgba.png": (encode(half_clear, "PNG"), {(8, 32): white, (56, 32): red}),
        "one-bit.png": (encode(Image.new("1", (64, 64), 1), "PNG"), {(32, 32): white}),
        "grey-alpha.png": (encode(Image.new("LA", (64, 64), (0, 0)), "PNG"), {(32, 32): white}),
        "animated.gif": (
            encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0),
            {(32, 32): red},
        ),
    }


MODES = _modes()


@pytest.mark.parametrize("name", MODES)
def test_case_14_awkward_modes_become_consistent_rgb(trained: dict[str, Any], name: str) -> None:
    data, expected = MODES[name]
    [added] = upload_one(trained, name, data)["added"]
    image = served(trained, added["id"])
    assert image.size == (64, 64)
    for point, colour in expected.items():
        assert close(image.getpixel(point), colour), (point, image.getpixel(point), colour)
    assert probabilities(predict(trained, name, data))


# 15. Served images are re-encoded, with a fixed content type and X-Content-Type-Options: nosniff.


def test_case_15_served_images_are_reencoded_with_a_fixed_type_and_nosniff(
    trained: dict[str, Any],
) -> None:
    payload = b"<html><script>alert(document.cookie)</script></html>"
    png = encode(Image.new("RGB", (48, 48), (10, 120, 200)), "PNG", pnginfo=_text_chunk(payload))
    exif = Image.Exif()
    exif[0x010E] = payload.decode()  # ImageDescription
    jpeg = encode(
        Image.new("RGB", (48, 48), (90, 20, 160)),
        "JPEG",
        comment=payload,
        exif=exif.tobytes(),
        icc_profile=b"ICC-" + payload,
    )
    polyglots = {
        "polyglot.png": png + payload,
        "polyglot.gif": _gif_with_comment(payload),
        "polyglot.jpg": jpeg + payload,
    }
    client, pid = trained["client"], trained["pid"]
    for name, data in polyglots.items():
        [added] = upload_one(trained, name, data)["added"]
        for url in (
            f"/api/projects/{pid}/images/{added['id']}",
            f"/api/projects/{pid}/images/{added['id']}/thumbnail",
            f"/api/projects/{pid}/classes/{trained['cid']}/images/{added['id']}",
        ):
            response = client.get(url)
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/jpeg"
            assert response.headers["x-content-type-options"] == "nosniff"
            assert "script-src 'self'" in response.headers["content-security-policy"]
            assert response.content.startswith(b"\xff\xd8") and b"<script" not in response.content
            assert b"Exif\x00\x00" not in response.content  # nor the upload's metadata (EXIF, ICC)
            assert b"ICC_PROFILE" not in response.content
            assert Image.open(io.BytesIO(response.content)).format == "JPEG"


def _text_chunk(text: bytes) -> Any:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Comment", text.decode())
    return info


def _gif_with_comment(text: bytes) -> bytes:
    return encode(Image.new("RGB", (48, 48), (200, 120, 10)), "GIF", comment=text)


def test_case_08_to_13_leave_the_stored_images_alone(trained: dict[str, Any]) -> None:
    """After all the refusals above, the training images are all still there and served."""
    client, pid = trained["client"], trained["pid"]
    images = client.get(f"/api/projects/{pid}/images").json()
    assert len([i for i in images if i["class_id"] != trained["cid"]]) == 8
    for image in images:
        assert client.get(image["url"]).status_code == 200
