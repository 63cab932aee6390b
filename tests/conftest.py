"""Fixtures shared by every test folder: the shared photo sets, small real image files, one
embeddings cache per session and one small trained model zip."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.engine.backbones import BACKBONES, hub_checkpoint_dir
from app.engine.context import RunContext
from app.engine.dataset import from_folder
from app.engine.embeddings import Embedder, make_embedder
from app.engine.params import TrainParams
from app.engine.pipeline import train_to_zip
from tests.postgres_helpers import PostgresServer, start_postgres

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"


def shared_dataset(name: str) -> Path:
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(
            f"{path} is absent: the shared photo sets live beside the repository in ../shared/datasets"
        )
    return path


@pytest.fixture(scope="session")
def flowers() -> Path:
    return shared_dataset("flowers-dev")


@pytest.fixture(scope="session")
def clothing() -> Path:
    return shared_dataset("clothing-dev")


# For EXIF orientations 2-8: the transpose to store an upright picture with, so that applying the
# orientation gives the upright picture back.
EXIF_STORED_AS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def write_image(
    path: Path,
    colour: tuple[int, int, int],
    size: tuple[int, int] = (64, 48),
    seed: int = 0,
    fmt: str = "JPEG",
) -> Path:
    """A real image file: a flat colour with seeded noise, so that near-identical files still differ."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(
        np.array(colour, dtype=np.int16) + rng.integers(-25, 26, (size[1], size[0], 3)), 0, 255
    ).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, "RGB").save(path, fmt)
    return path


def make_colour_dataset(
    root: Path, per_class: int = 8, classes: dict[str, tuple[int, int, int]] | None = None
) -> Path:
    """A class-per-folder tree of small synthetic photos that a frozen backbone separates easily."""
    classes = classes or {"red": (200, 30, 30), "blue": (30, 40, 200)}
    for index, (name, colour) in enumerate(classes.items()):
        for i in range(per_class):
            write_image(root / name / f"{name}_{i:03d}.jpg", colour, seed=index * 1000 + i)
    return root


@pytest.fixture
def colour_dataset(tmp_path: Path) -> Path:
    return make_colour_dataset(tmp_path / "data")


def make_digits_dataset(
    root: Path, train_per_class: int, val_per_class: int, seed: int = 0
) -> tuple[Path, Path, Path]:
    """scikit-learn's 1,797 scanned handwritten digits (8x8, greyscale: far from ImageNet's photos)
    as 64x64 PNGs, blocky as upscaled, split per class into train, validation and the unseen rest."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    folders = root / "train", root / "val", root / "test"
    for label in range(10):
        indices = rng.permutation(np.flatnonzero(digits.target == label))
        splits = np.split(indices, [train_per_class, train_per_class + val_per_class])
        for folder, chosen in zip(folders, splits, strict=True):
            (folder / str(label)).mkdir(parents=True, exist_ok=True)
            for index in chosen:
                pixels = np.round(digits.images[index] * 255 / 16).astype(np.uint8)
                image = Image.fromarray(pixels, "L").resize((64, 64), Image.Resampling.NEAREST)
                image.save(folder / str(label) / f"{index:04d}.png")
    return folders


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims a size, with almost no pixel data: only a header check refuses it
    with the pixel-cap sentence (decoding it would fail as truncated instead)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Browser tests last: Playwright's sync API keeps an event loop running in the main thread
    # for the whole session, and tests that call asyncio.run() cannot share the thread with it.
    items.sort(key=lambda item: "browser" in item.keywords)
    checkpoint = hub_checkpoint_dir() / BACKBONES["mobilenet_v2"].filename
    if checkpoint.is_file():
        return
    skip = pytest.mark.skip(
        reason=f"{checkpoint} is missing: run `make setup` (it calls `teachbox weights`)"
    )
    for item in items:
        if "weights" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def embedder(cache_dir: Path) -> Embedder:
    return make_embedder("mobilenet_v2", cache_dir)


@pytest.fixture(scope="session")
def session_colours(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_colour_dataset(tmp_path_factory.mktemp("colours") / "data", per_class=10)


@pytest.fixture(scope="session")
def trained_zip(
    tmp_path_factory: pytest.TempPathFactory, session_colours: Path, embedder: Embedder
) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("model") / "model.zip"
    params = TrainParams(epochs=15, seed=3)
    metadata = train_to_zip(
        from_folder(session_colours, None, params.val_split, params.seed),
        params,
        out,
        RunContext(embedder),
    )
    return out, metadata


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL for the session (skipped with the reason when it is not installed);
    each test takes a new empty database of it with `new_database()`."""
    server = start_postgres()
    yield server
    server.close()
