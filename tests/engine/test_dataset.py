"""Reading class folders, the minimums, and the seeded stratified split."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.engine.dataset import MIN_IMAGES_PER_CLASS, from_folder, from_items, stratified_split
from app.engine.errors import TeachboxError
from tests.conftest import make_colour_dataset, write_image


def test_split_is_stratified_and_deterministic(tmp_path: Path) -> None:
    root = make_colour_dataset(tmp_path, per_class=20)
    first, second = from_folder(root, seed=7), from_folder(root, seed=7)
    assert [s.path for s in first.val] == [s.path for s in second.val]
    assert first.counts("val") == {"blue": 3, "red": 3}
    assert not {s.path for s in first.train} & {s.path for s in first.val}
    other = from_folder(root, seed=8)
    assert {s.path for s in other.val} != {s.path for s in first.val}


def test_split_keeps_at_least_one_image_per_class_on_each_side() -> None:
    items = [(Path(f"{i}.jpg"), i % 2) for i in range(6)]
    train, val = stratified_split(items, 0.15, seed=0)
    assert sorted(s.label for s in val) == [0, 1]
    assert sorted(s.label for s in train) == [0, 0, 1, 1]


def test_a_split_keyed_on_content_ignores_names_and_order() -> None:
    """The same images under other made-up names, in another order, split the same way."""
    contents = [f"image-{i}" for i in range(12)]
    # The second set's names sort the other way round from its contents.
    named = [
        {Path(f"/a-{i:02}.jpg"): c for i, c in enumerate(contents)},
        {Path(f"/b-{11 - i:02}.jpg"): c for i, c in enumerate(contents)},
    ]
    splits = []
    for names, order in zip(named, (1, -1), strict=True):
        items = [(path, int(names[path][-1]) % 2) for path in names][::order]
        train, val = stratified_split(items, 0.25, seed=3, key=names.__getitem__)
        splits.append(([names[s.path] for s in train], [names[s.path] for s in val]))
    assert splits[0] == splits[1]


def test_explicit_validation_folder(tmp_path: Path) -> None:
    train = make_colour_dataset(tmp_path / "train", per_class=5)
    val = make_colour_dataset(tmp_path / "val", per_class=2)
    data = from_folder(train, val)
    assert len(data.train) == 10 and len(data.val) == 4
    write_image(tmp_path / "val" / "green" / "g.jpg", (0, 200, 0))
    with pytest.raises(
        TeachboxError, match="The validation folder has classes the training folder lacks: green"
    ):
        from_folder(train, val)


def test_one_class_is_not_enough(tmp_path: Path) -> None:
    make_colour_dataset(tmp_path, classes={"only": (1, 2, 3)})
    with pytest.raises(
        TeachboxError,
        match="Training needs at least 2 classes; there is 1. Add another class with images.",
    ):
        from_folder(tmp_path)


def test_too_few_images_names_the_class(tmp_path: Path) -> None:
    items = [(Path(f"a{i}.jpg"), "cats") for i in range(5)] + [(Path("d.jpg"), "dogs")]
    with pytest.raises(
        TeachboxError,
        match=f"Each class needs at least {MIN_IMAGES_PER_CLASS} images: 'dogs' has 1. Add images to it.",
    ):
        from_items(items)


def test_missing_folder_says_what_to_give(tmp_path: Path) -> None:
    with pytest.raises(
        TeachboxError, match="does not exist. Give a folder with one sub-folder per class."
    ):
        from_folder(tmp_path / "nope")


def test_non_image_files_and_hidden_files_are_ignored(tmp_path: Path) -> None:
    root = make_colour_dataset(tmp_path, per_class=4)
    (root / "red" / "notes.txt").write_text("not an image")
    (root / "red" / ".DS_Store").write_bytes(b"\0")
    data = from_folder(root)
    assert len(data.train) + len(data.val) == 8
