"""Data health: each warning triggered by a synthetic set built for it, the learning curve, and the real photo sets."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageEnhance

from app.cli.main import main
from app.engine.dataset import from_folder, from_items
from app.engine.embeddings import Embedder
from app.engine.head import Embedded
from app.engine.health.counts import count_findings
from app.engine.health.curve import learning_curve, nested_subsets, trend_of
from app.engine.health.duplicates import NEAR_DUPLICATE_SIMILARITY
from app.engine.health.findings import FindingKind
from app.engine.health.report import HealthReport, analyse_health
from app.engine.params import TrainParams


def write_scene(
    path: Path,
    seed: int,
    size: tuple[int, int] = (160, 120),
    brightness: float = 1.0,
    quality: int = 90,
) -> Path:
    """A distinct photo-like picture: a two-colour gradient with six random shapes."""
    rng = np.random.default_rng(seed)
    width, height = size
    ramp = np.linspace(0, 1, height)[:, None, None]
    pixels = (rng.integers(0, 256, 3) * (1 - ramp) + rng.integers(0, 256, 3) * ramp).repeat(
        width, 1
    )
    image = Image.fromarray(pixels.astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        box = [
            x0,
            y0,
            x0 + int(rng.integers(10, width // 2)),
            y0 + int(rng.integers(10, height // 2)),
        ]
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    ImageEnhance.Brightness(image).enhance(brightness).save(path, "JPEG", quality=quality)
    return path


def scenes(root: Path, name: str, seeds: range, **kwargs: object) -> list[tuple[Path, str]]:
    return [
        (write_scene(root / name / f"{name}_{seed}.jpg", seed, **kwargs), name) for seed in seeds
    ]


def kinds(report: HealthReport, severity: str | None = None) -> set[FindingKind]:
    return {f.kind for f in report.findings if severity is None or f.severity == severity}


def finding(report: HealthReport, kind: FindingKind):
    [found] = [f for f in report.findings if f.kind == kind]
    return found


# ---------------------------------------------------------------- counts (no images needed)


def test_too_few_images_and_imbalance_say_what_to_do() -> None:
    findings = count_findings(["cats", "dogs", "owls"], {"cats": 40, "dogs": 12, "owls": 4})
    assert [(f.kind, f.severity, f.classes) for f in findings] == [
        (FindingKind.TOO_FEW_IMAGES, "warning", ["owls"]),
        (FindingKind.TOO_FEW_IMAGES, "info", ["dogs"]),
        (FindingKind.CLASS_IMBALANCE, "warning", ["cats", "dogs", "owls"]),
    ]
    assert findings[0].message == (
        "'owls' has 4 images; a class needs at least 10 to be recognised reliably and 30 for stable "
        "numbers. Add 6 or more."
    )
    assert findings[2].message == (
        "'cats' has 40 images and 'owls' only 4 (10.0×), so the model will lean towards 'cats'. "
        "Add images to 'dogs' and 'owls' or remove some from 'cats'."
    )


def test_balanced_classes_with_enough_images_raise_nothing() -> None:
    assert count_findings(["a", "b"], {"a": 30, "b": 35}) == []
    [mild] = count_findings(["a", "b"], {"a": 30, "b": 64})
    assert (mild.kind, mild.severity) == (FindingKind.CLASS_IMBALANCE, "info")


# ---------------------------------------------------------------- the learning curve (embeddings only)


def test_subsets_are_stratified_nested_and_seeded() -> None:
    labels = [0] * 12 + [1] * 4 + [2] * 1
    subsets = nested_subsets(labels, (0.25, 0.5, 0.75, 1.0), seed=3)
    assert [len(s) for s in subsets] == [3 + 1 + 1, 6 + 2 + 1, 9 + 3 + 1, 17]
    for smaller, larger in itertools.pairwise(subsets):
        assert set(smaller) <= set(larger)
    assert subsets == nested_subsets(labels, (0.25, 0.5, 0.75, 1.0), seed=3)
    assert subsets != nested_subsets(labels, (0.25, 0.5, 0.75, 1.0), seed=4)


def blobs(
    shifts: list[float], n_train: int, n_val: int, dim: int = 1280, seed: int = 0
) -> Embedded:
    """Embedding-like clusters (non-negative, 1280-d), one per class, `shift` apart from the origin."""
    generator = torch.Generator().manual_seed(seed)
    centres = torch.randn(len(shifts), dim, generator=generator) * torch.tensor(shifts)[:, None]

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(len(shifts)).repeat_interleave(n)
        return (centres[y] + torch.randn(len(y), dim, generator=generator)).relu(), y

    return Embedded(*draw(n_train), *draw(n_val))


def test_curve_rises_when_the_classes_need_more_examples() -> None:
    curve = learning_curve(
        blobs([0.08, 0.08, 0.08], 120, 150), ["a", "b", "c"], TrainParams(seed=0, epochs=20)
    )
    assert curve.n_train == [90, 180, 270, 360] and curve.fractions == [0.25, 0.5, 0.75, 1.0]
    assert curve.accuracy[-1] > curve.accuracy[0] + 0.1
    assert curve.trend == {"a": "rising", "b": "rising", "c": "rising"} and curve.needs_more == [
        "a",
        "b",
        "c",
    ]
    assert curve.summary.startswith("Accuracy still rises by ")


def test_curve_names_only_the_class_that_still_improves() -> None:
    # 'easy' sits far from the others; 'x' and 'y' are close, so telling them apart takes many examples.
    generator = torch.Generator().manual_seed(1)
    base = torch.randn(1280, generator=generator)
    centres = torch.stack(
        [base * 3, *(base + 0.12 * torch.randn(1280, generator=generator) for _ in range(2))]
    )

    def draw(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(3).repeat_interleave(n)
        return (centres[y] + torch.randn(len(y), 1280, generator=generator)).relu(), y

    curve = learning_curve(
        Embedded(*draw(80), *draw(60)), ["easy", "x", "y"], TrainParams(seed=0, epochs=20)
    )
    assert curve.per_class["easy"] == [1.0, 1.0, 1.0, 1.0] and curve.trend["easy"] == "flat"
    assert "easy" not in curve.needs_more and curve.needs_more


def test_curve_is_flat_when_the_data_is_already_enough() -> None:
    curve = learning_curve(blobs([1.0, 1.0], 40, 20), ["a", "b"], TrainParams(seed=0, epochs=10))
    assert curve.accuracy == [1.0, 1.0, 1.0, 1.0]
    assert curve.needs_more == [] and set(curve.trend.values()) == {"flat"}
    assert curve.summary == (
        "Accuracy has levelled off (+0.0 points per doubling of the training images): more images of the same "
        "kind would help little; more varied images, or fine-tuning, might."
    )


def test_a_change_smaller_than_the_noise_is_flat() -> None:
    assert trend_of(0.05, 0.8, 400) == "rising"
    assert trend_of(0.05, 0.8, 10) == "flat"  # one image of ten is ten points
    assert trend_of(-0.2, 0.5, 100) == "falling"
    assert trend_of(None, None, 0) == "flat"


# ---------------------------------------------------------------- synthetic sets built to trigger each warning


@pytest.mark.weights
def test_duplicates_across_the_split_and_across_classes(tmp_path: Path, embedder: Embedder) -> None:
    train = scenes(tmp_path / "train", "boats", range(0, 10)) + scenes(
        tmp_path / "train", "cars", range(100, 110)
    )
    val = scenes(tmp_path / "val", "boats", range(10, 13)) + scenes(
        tmp_path / "val", "cars", range(110, 113)
    )
    copy_in_val = shutil.copy(
        tmp_path / "train/boats/boats_0.jpg", tmp_path / "val/boats/copy_of_0.jpg"
    )
    copy_in_cars = shutil.copy(
        tmp_path / "train/boats/boats_1.jpg", tmp_path / "train/cars/boat_1_as_car.jpg"
    )
    edited = write_scene(tmp_path / "val/boats/edited_2.jpg", 2, brightness=1.08, quality=75)
    data = from_items(
        [*train, (Path(copy_in_cars), "cars")],
        val_items=[*val, (Path(copy_in_val), "boats"), (edited, "boats")],
    )

    report = analyse_health(data, embedder=embedder, curve=False)
    assert (
        kinds(report, "warning")
        == {
            FindingKind.DUPLICATE_ACROSS_SPLIT,
            FindingKind.DUPLICATE_ACROSS_CLASSES,
            FindingKind.NEAR_DUPLICATE_ACROSS_SPLIT,
        }
    )  # no suspected mislabels: on these made-up scenes no prediction is reliable enough to accuse a label
    across_split = finding(report, FindingKind.DUPLICATE_ACROSS_SPLIT)
    assert across_split.images == sorted(
        [str(tmp_path / "train/boats/boats_0.jpg"), str(copy_in_val)]
    )
    assert across_split.message == (
        "1 validation image has an exact copy among the training images, so validation accuracy looks "
        "better than it is. Delete one copy of each."
    )
    across_classes = finding(report, FindingKind.DUPLICATE_ACROSS_CLASSES)
    assert across_classes.classes == ["boats", "cars"] and across_classes.pairs[0].similarity == 1.0
    assert across_classes.message.startswith(
        "1 picture appears in two classes (for example 'boats_1.jpg' in 'boats' and "
        "'boat_1_as_car.jpg' in 'cars')"
    )
    near = finding(report, FindingKind.NEAR_DUPLICATE_ACROSS_SPLIT)
    assert near.images == sorted([str(tmp_path / "train/boats/boats_2.jpg"), str(edited)])
    assert near.pairs[0].similarity >= max(
        NEAR_DUPLICATE_SIMILARITY, report.near_duplicate_threshold
    )
    assert near.pairs[0].splits == ["train", "val"]


@pytest.mark.weights
def test_small_images_are_flagged_per_class(tmp_path: Path, embedder: Embedder) -> None:
    items = (
        scenes(tmp_path, "large", range(0, 12))
        + scenes(tmp_path, "tiny", range(20, 29), size=(80, 60))
        + scenes(tmp_path, "tiny", range(29, 32))
    )
    report = analyse_health(from_items(items, seed=1), embedder=embedder, curve=False)
    small = finding(report, FindingKind.SMALL_IMAGES)
    assert (small.severity, small.classes, len(small.images)) == ("warning", ["tiny"], 9)
    assert small.message == (
        "9 of 12 images in 'tiny' are under 112 pixels on their shorter side (the model looks at 224×224), so "
        "they are blown up and blurry and the model may learn blur as a sign of this class. Use larger photos."
    )


@pytest.mark.weights
def test_a_class_of_near_identical_pictures_is_flagged(tmp_path: Path, embedder: Embedder) -> None:
    items = scenes(tmp_path, "kitchen", range(0, 12)) + scenes(tmp_path, "garden", range(50, 62))
    pixels = np.asarray(Image.open(write_scene(tmp_path / "desk.jpg", 7)), dtype=np.int16)
    (tmp_path / "desk").mkdir()
    for i in range(12):  # one scene in one light: only the sensor noise differs
        noisy = np.clip(
            pixels + np.random.default_rng(i).integers(-6, 7, pixels.shape), 0, 255
        ).astype(np.uint8)
        Image.fromarray(noisy).save(tmp_path / "desk" / f"desk_{i}.jpg")
        items.append((tmp_path / "desk" / f"desk_{i}.jpg", "desk"))
    report = analyse_health(from_items(items, seed=0), embedder=embedder, curve=False)
    uniform = finding(report, FindingKind.UNIFORM_CLASS)
    assert uniform.classes == ["desk"] and uniform.message.startswith(
        "The images of 'desk' are nearly all alike (mean similarity"
    )
    assert report.class_similarity["desk"] > report.class_similarity["kitchen"]


@pytest.mark.weights
def test_unreadable_files_are_reported(tmp_path: Path, embedder: Embedder) -> None:
    items = scenes(tmp_path, "a", range(0, 10)) + scenes(tmp_path, "b", range(10, 20))
    broken = tmp_path / "b" / "broken.jpg"
    broken.write_text("not a picture")
    report = analyse_health(
        from_items([*items, (broken, "b")], seed=0), embedder=embedder, curve=False
    )
    unreadable = finding(report, FindingKind.UNREADABLE_IMAGES)
    assert unreadable.images == [str(broken)] and unreadable.classes == ["b"]
    assert unreadable.message.startswith(
        "1 file cannot be read and will be skipped. 'broken.jpg': This file is not an image"
    )


@pytest.mark.weights
def test_a_clean_varied_set_has_no_warnings_and_a_curve(tmp_path: Path, embedder: Embedder) -> None:
    items = [
        (p, name)
        for name, start in (("a", 0), ("b", 100), ("c", 200))
        for p, _ in scenes(tmp_path, name, range(start, start + 30))
    ]
    report = analyse_health(
        from_items(items, seed=0), embedder=embedder, params=TrainParams(epochs=10)
    )
    assert kinds(report, "warning") == set()
    assert report.counts == {"train": {"a": 26, "b": 26, "c": 26}, "val": {"a": 4, "b": 4, "c": 4}}
    assert report.learning_curve is not None and report.learning_curve.n_train == [18, 39, 60, 78]


@pytest.mark.weights
def test_cli_health_prints_findings_and_writes_json(
    tmp_path: Path, cache_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, start, count in (("many", 0, 40), ("few", 100, 8)):
        scenes(tmp_path / "data", name, range(start, start + count))
    assert (
        main(
            [
                "health",
                str(tmp_path / "data"),
                "--json",
                str(tmp_path / "h.json"),
                "--cache-dir",
                str(cache_dir),
                "--epochs",
                "5",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("48 images in 2 classes (41 train, 7 validation).")
    assert "warning  'few' has 8 images; a class needs at least 10" in out
    assert "Would more images help?" in out and "  many " in out
    saved = json.loads((tmp_path / "h.json").read_text())
    assert {f["kind"] for f in saved["findings"]} >= {"too_few_images", "class_imbalance"}
    assert saved["learning_curve"]["epochs"] == 5


# ---------------------------------------------------------------- the real photo sets


@pytest.mark.weights
@pytest.mark.datasets
@pytest.mark.slow
def test_flowers_near_copies_across_the_split_are_found(flowers: Path, embedder: Embedder) -> None:
    report = analyse_health(from_folder(flowers / "train", flowers / "val"), embedder=embedder)
    across = finding(report, FindingKind.NEAR_DUPLICATE_ACROSS_SPLIT)
    names = {(Path(p.a).name, Path(p.b).name) for p in across.pairs}
    assert (
        "10466290366_cc72e33532.jpg",
        "10994032453_ac7f8d9e2e.jpg",
    ) in names  # one daisy photo, in train and in val
    assert across.severity == "warning" and set(across.classes) <= {"daisy", "sunflowers"}
    assert not kinds(report) & {
        FindingKind.DUPLICATE_ACROSS_SPLIT,
        FindingKind.DUPLICATE_ACROSS_CLASSES,
        FindingKind.NEAR_DUPLICATE_ACROSS_CLASSES,
        FindingKind.SMALL_IMAGES,
        FindingKind.UNIFORM_CLASS,
        FindingKind.TOO_FEW_IMAGES,
        FindingKind.CLASS_IMBALANCE,
    }
    curve = report.learning_curve
    assert curve is not None and curve.n_train == [75, 150, 225, 300]
    assert curve.accuracy[-1] >= 0.85 and curve.accuracy[-1] >= curve.accuracy[0]
    assert set(curve.per_class) == set(report.labels) and set(curve.needs_more) <= set(
        report.labels
    )


@pytest.mark.weights
@pytest.mark.datasets
@pytest.mark.slow
def test_clothing_has_no_duplicates(clothing: Path, embedder: Embedder) -> None:
    report = analyse_health(
        from_folder(clothing / "train", clothing / "val"), embedder=embedder, curve=False
    )
    assert not {k for k in kinds(report) if "duplicate" in k.value}
    assert report.near_duplicate_threshold == pytest.approx(NEAR_DUPLICATE_SIMILARITY, abs=0.005)
