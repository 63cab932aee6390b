"""Labelled image lists: reading a class-per-folder tree, checking minimums, and a seeded stratified split."""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.engine.errors import InvalidInput
from app.engine.images import list_image_files, list_other_files

SortKey = Callable[[Path], str]
MIN_CLASSES = 2
# Two for training plus one held out for validation is the least that can be measured at all.
MIN_IMAGES_PER_CLASS = 3


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int


@dataclass
class Dataset:
    """A training set and a validation set over the same labels.

    `val_held_out` is true when the validation images were given apart (a validation folder, or a
    comparison's shared split): transfer learning then keeps them out of training and measures on
    them. Otherwise the split is only a suggestion: transfer learning cross-validates on every
    image and trains on all of them, while fine-tuning keeps the split for its choices.
    """

    labels: list[str]
    train: list[Sample]
    val: list[Sample]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    val_held_out: bool = False

    @property
    def labelled(self) -> list[Sample]:
        """Every labelled image transfer learning trains its shipped model on."""
        return self.train if self.val_held_out else self.train + self.val

    def counts(self, split: str = "train") -> dict[str, int]:
        samples = self.train if split == "train" else self.val
        tally = {label: 0 for label in self.labels}
        for sample in samples:
            tally[self.labels[sample.label]] += 1
        return tally

    def without(self, bad_paths: set[Path]) -> Dataset:
        """The same dataset minus images found unreadable while embedding them."""
        return Dataset(
            self.labels,
            [s for s in self.train if s.path not in bad_paths],
            [s for s in self.val if s.path not in bad_paths],
            self.skipped,
            self.val_held_out,
        )


def scan_folder(data_dir: Path) -> tuple[list[str], list[tuple[Path, str]]]:
    """Class names (sub-folder names, sorted) and every (image path, class name) inside them."""
    if not data_dir.is_dir():
        raise InvalidInput(
            f"The data folder {data_dir} does not exist. Give a folder with one sub-folder per class."
        )
    class_dirs = sorted(d for d in data_dir.iterdir() if d.is_dir() and not d.name.startswith("."))
    items = [(path, d.name) for d in class_dirs for path in list_image_files(d)]
    return [d.name for d in class_dirs], items


def not_images(data_dir: Path) -> list[tuple[Path, str]]:
    """Files in the class folders that are not images Teachbox reads, with the reason."""
    return [
        entry
        for d in sorted(data_dir.iterdir())
        if d.is_dir() and not d.name.startswith(".")
        for entry in list_other_files(d)
    ]


def check_readable(data: Dataset, unreadable: dict[Path, str]) -> None:
    """Once unreadable images are dropped, each class still needs two to train on and one to
    validate with; else name the class and its unreadable files."""
    short = []
    for index, name in enumerate(data.labels):
        train = [s.path for s in data.train if s.label == index]
        val = [s.path for s in data.val if s.label == index]
        bad = [path.name for path in train + val if path in unreadable]
        n_train = sum(path not in unreadable for path in train)
        n_val = sum(path not in unreadable for path in val)
        # A validation folder may lack a class; only one whose validation images all failed is short.
        if n_train >= MIN_IMAGES_PER_CLASS - 1 and (n_val >= 1 or not val):
            continue
        short.append(
            f"'{name}' has {n_train} readable to train on and {n_val} to validate with"
            + (f" (unreadable: {', '.join(bad[:5])})" if bad else "")
        )
    if short:
        raise InvalidInput(
            f"Each class needs at least {MIN_IMAGES_PER_CLASS - 1} readable images to train on and 1 to "
            f"validate with: {'; '.join(short)}. Remove or replace the unreadable files, or add images."
        )


def check_minimums(counts: dict[str, int]) -> None:
    """Raise a sentence that says what is missing when there is too little to train on."""
    if len(counts) < MIN_CLASSES:
        raise InvalidInput(
            f"Training needs at least {MIN_CLASSES} classes; there is {len(counts)}. Add another class with images."
        )
    short = [f"'{name}' has {n}" for name, n in counts.items() if n < MIN_IMAGES_PER_CLASS]
    if short:
        raise InvalidInput(
            f"Each class needs at least {MIN_IMAGES_PER_CLASS} images: {', '.join(short)}. Add images to "
            + ("it." if len(short) == 1 else "them.")
        )


def stratified_split(
    items: list[tuple[Path, int]], val_fraction: float, seed: int, key: SortKey = str
) -> tuple[list[Sample], list[Sample]]:
    """Hold out `val_fraction` of each class (at least one image), the same way for the same seed.

    Images are put in the order of `key` before the seeded shuffle, so the split depends on the
    images and not on the order they came in: their paths by default, or (where paths are made up,
    as the server's are) their content hashes.
    """
    by_label: dict[int, list[Path]] = defaultdict(list)
    for path, label in sorted(items, key=lambda item: (item[1], key(item[0]))):
        by_label[label].append(path)
    rng = random.Random(seed)
    train: list[Sample] = []
    val: list[Sample] = []
    for label in sorted(by_label):
        paths = by_label[label]
        rng.shuffle(paths)
        n_val = min(len(paths) - 1, max(1, round(len(paths) * val_fraction)))
        val.extend(Sample(p, label) for p in paths[:n_val])
        train.extend(Sample(p, label) for p in paths[n_val:])
    return train, val


def from_items(
    items: list[tuple[Path, str]],
    labels: list[str] | None = None,
    val_items: list[tuple[Path, str]] | None = None,
    val_fraction: float = 0.15,
    seed: int = 0,
    key: SortKey = str,
) -> Dataset:
    """A Dataset from explicit (path, class name) pairs, split unless validation items are given."""
    labels = labels or sorted({name for _, name in items})
    index = {name: i for i, name in enumerate(labels)}
    counts = {name: 0 for name in labels}
    for _, name in items:
        counts[name] += 1
    if val_items is None:
        check_minimums(counts)
        train, val = stratified_split([(p, index[n]) for p, n in items], val_fraction, seed, key)
        return Dataset(labels, train, val)
    check_minimums({name: n + 1 for name, n in counts.items()} if counts else counts)
    unknown = sorted({n for _, n in val_items} - set(labels))
    if unknown:
        raise InvalidInput(
            f"The validation folder has classes the training folder lacks: {', '.join(unknown)}. Rename or remove them."
        )
    return Dataset(
        labels,
        [Sample(p, index[n]) for p, n in items],
        [Sample(p, index[n]) for p, n in val_items],
        val_held_out=True,
    )


def from_folder(
    data_dir: Path, val_dir: Path | None = None, val_fraction: float = 0.15, seed: int = 0
) -> Dataset:
    labels, items = scan_folder(data_dir)
    val_items = scan_folder(val_dir)[1] if val_dir is not None else None
    dataset = from_items(items, labels, val_items, val_fraction, seed)
    dataset.skipped = not_images(data_dir) + (not_images(val_dir) if val_dir is not None else [])
    return dataset
