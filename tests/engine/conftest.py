"""Engine fixtures: one embeddings cache per session and one small trained model zip."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.backbones import BACKBONES, hub_checkpoint_dir
from app.dataset import from_folder
from app.embeddings import Embedder, make_embedder
from app.pipeline import train_to_zip
from app.schemas import TrainParams
from app.training import RunContext
from tests.conftest import make_colour_dataset


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
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
