"""The zip's own predict.py, run as a stranger runs it, answers what `teachbox predict` answers,
on every image form the app accepts, made from real photos."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import PIL
import pytest
from PIL import Image

from app.engine import preprocess
from app.engine.context import RunContext
from app.engine.dataset import from_items
from app.engine.embeddings import Embedder
from app.engine.params import TrainParams
from app.engine.pipeline import train_to_zip
from tests.conftest import EXIF_STORED_AS

pytestmark = [pytest.mark.weights, pytest.mark.datasets]

FLOWERS_PER_CLASS = 8
LINE = re.compile(r"^(?P<path>.+): (?P<ranked>.+)$")


@pytest.fixture(scope="module")
def flowers_zip(
    flowers: Path, embedder: Embedder, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, Path]:
    """A real flowers model (photos read in place) and its zip unpacked beside it."""
    items = [
        (path, folder.name)
        for folder in sorted((flowers / "train").iterdir())
        for path in sorted(folder.glob("*.jpg"))[:FLOWERS_PER_CLASS]
    ]
    params = TrainParams(epochs=20, seed=1)
    root = tmp_path_factory.mktemp("flowers-model")
    train_to_zip(
        from_items(items, val_fraction=params.val_split, seed=params.seed),
        params,
        root / "model.zip",
        RunContext(embedder),
    )
    zipfile.ZipFile(root / "model.zip").extractall(root / "unzipped")
    return root / "model.zip", root / "unzipped"


def sixteen_bit(photo: Image.Image) -> Image.Image:
    return Image.fromarray(np.asarray(photo.convert("L"), dtype=np.uint16) * 257)


def with_alpha(photo: Image.Image, mode: str) -> Image.Image:
    """The photo with a transparent left third, so the white background decides those pixels."""
    image = photo.convert(mode)
    alpha = Image.new("L", image.size, 255)
    alpha.paste(0, (0, 0, image.width // 3, image.height))
    image.putalpha(alpha)
    return image


def palette_transparent(photo: Image.Image) -> Image.Image:
    image = photo.quantize(255)
    pixels = np.asarray(image).copy()
    pixels[:, : image.width // 3] = 255
    out = Image.fromarray(pixels, "P")
    out.putpalette([*image.getpalette(), 0, 0, 0])
    out.info["transparency"] = 255
    return out


def save(image: Image.Image, path: Path, **options: object) -> Path:
    image.save(path, **options)
    return path


def exif_oriented(photo: Image.Image, orientation: int) -> Callable[[Path], Path]:
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = photo.transpose(EXIF_STORED_AS[orientation])
    return lambda folder: save(
        stored, folder / f"exif{orientation}.jpg", exif=exif.tobytes(), quality=92
    )


def animated(photo: Image.Image, path: Path) -> Path:
    second = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT).convert("L").convert("RGB")
    photo.save(path, save_all=True, append_images=[second], duration=100, loop=0)
    return path


def image_forms(photo: Image.Image) -> dict[str, Callable[[Path], Path]]:
    """Every form the app accepts, each a writer of one file from the same photo."""
    forms: dict[str, Callable[[Path], Path]] = {
        "rgb-8bit.png": lambda d: save(photo, d / "rgb.png"),
        "grey-16bit.png": lambda d: save(sixteen_bit(photo), d / "grey16.png"),
        "grey-L.png": lambda d: save(photo.convert("L"), d / "grey.png"),
        "LA.png": lambda d: save(with_alpha(photo, "L"), d / "la.png"),
        "RGBA.png": lambda d: save(with_alpha(photo, "RGB"), d / "rgba.png"),
        "palette.png": lambda d: save(photo.quantize(256), d / "palette.png"),
        "palette-transparent.png": lambda d: save(palette_transparent(photo), d / "ptrans.png"),
        "palette-transparent.gif": lambda d: save(palette_transparent(photo), d / "ptrans.gif"),
        "cmyk.jpg": lambda d: save(photo.convert("CMYK"), d / "cmyk.jpg", quality=92),
        "grey.jpg": lambda d: save(photo.convert("L"), d / "grey.jpg", quality=92),
        "animated.gif": lambda d: animated(photo, d / "animated.gif"),
        "photo.webp": lambda d: save(photo, d / "photo.webp", quality=90),
        "rgba.webp": lambda d: save(with_alpha(photo, "RGB"), d / "rgba.webp", quality=90),
        "photo.bmp": lambda d: save(photo, d / "photo.bmp"),
    }
    forms.update({f"exif-{n}.jpg": exif_oriented(photo, n) for n in EXIF_STORED_AS})
    return forms


def parse(stdout: str) -> dict[str, dict[str, float]]:
    """`path: [not sure: ]label p  label p ...` lines to {path: {label: p}}."""
    answers = {}
    for line in stdout.splitlines():
        match = LINE.match(line.replace(": not sure: ", ": ", 1))
        assert match, line
        words = match["ranked"].split()
        answers[match["path"]] = {words[i]: float(words[i + 1]) for i in range(0, len(words), 2)}
    return answers


def isolated_site(tmp_path: Path) -> Path:
    """A folder holding only predict.py's documented dependencies (and their bundled libraries)."""
    site = tmp_path / "site"
    site.mkdir()
    for package in (np, PIL, onnxruntime):
        folder = Path(package.__file__).parent
        for name in (folder.name, f"{folder.name}.libs", "pillow.libs"):
            source = folder.parent / name
            if source.exists() and not (site / name).exists():
                (site / name).symlink_to(source)
    return site


def run_shipped_predict(folder: Path, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """predict.py under `python -I -S`: no site-packages, no PYTHONPATH, only `site` on the path;
    it then fails unless nothing of Teachbox was imported."""
    bootstrap = (
        "import runpy, sys\n"
        f"sys.path.insert(0, {str(site)!r})\n"
        f"sys.argv = ['predict.py', *{list(args)!r}]\n"
        "try:\n"
        "    runpy.run_path('predict.py', run_name='__main__')\n"
        "finally:\n"
        "    leaked = sorted(m for m in sys.modules if m == 'app' or m.startswith(('app.', 'torch')))\n"
        "    assert not leaked, leaked\n"
    )
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", bootstrap],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
    )


def teachbox_predict(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "predict", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def test_shipped_preprocess_is_the_apps_own(flowers_zip: tuple[Path, Path]) -> None:
    _, folder = flowers_zip
    shipped = (folder / "preprocess.py").read_text(encoding="utf-8")
    assert shipped == Path(preprocess.__file__).read_text(encoding="utf-8")
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(ast.parse(shipped))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in (
            node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
        )
    }
    assert imported <= {"__future__", "dataclasses", "numpy", "PIL"}


def test_predict_py_agrees_with_the_app_on_every_image_form(
    flowers: Path, flowers_zip: tuple[Path, Path], tmp_path: Path
) -> None:
    model, folder = flowers_zip
    paths = []
    for name in ("daisy", "roses", "sunflowers"):
        photo_path = sorted((flowers / "val" / name).glob("*.jpg"))[0]
        with Image.open(photo_path) as photo:
            rgb = photo.convert("RGB")
        forms_dir = tmp_path / name
        forms_dir.mkdir()
        paths += [str(write(forms_dir)) for write in image_forms(rgb).values()]
    labels = (folder / "labels.txt").read_text().split()
    top = str(len(labels))

    app_run = teachbox_predict(str(model), *paths, "--top", top)
    shipped_run = run_shipped_predict(folder, isolated_site(tmp_path), "--top", top, *paths)
    assert app_run.returncode == 0, app_run.stderr
    assert shipped_run.returncode == 0, shipped_run.stderr
    app, shipped = parse(app_run.stdout), parse(shipped_run.stdout)
    assert set(app) == set(shipped) == set(paths)
    for path in paths:
        assert max(app[path], key=app[path].__getitem__) == max(
            shipped[path], key=shipped[path].__getitem__
        ), path
        assert app[path].keys() == shipped[path].keys() == set(labels)
        assert all(abs(app[path][k] - shipped[path][k]) <= 0.01 for k in labels), path
    sixteen = [p for p in paths if p.endswith("grey16.png")]
    grey = [p for p in paths if p.endswith("grey.png")]
    # The 16-bit file is scaled like its 8-bit twin, not clipped to white.
    for wide, narrow in zip(sixteen, grey, strict=True):
        assert all(abs(app[wide][k] - app[narrow][k]) <= 0.01 for k in labels)


def test_predict_py_explains_its_usage_and_bad_files(
    flowers_zip: tuple[Path, Path], tmp_path: Path
) -> None:
    _, folder = flowers_zip
    site = isolated_site(tmp_path)
    bare = run_shipped_predict(folder, site)
    assert bare.returncode == 2
    assert "usage: predict.py" in bare.stderr and "IMAGE" in bare.stderr
    (tmp_path / "notes.txt").write_text("not a picture")
    bad = run_shipped_predict(
        folder, site, str(tmp_path / "missing.jpg"), str(tmp_path / "notes.txt")
    )
    assert bad.returncode == 1
    assert f"{tmp_path / 'missing.jpg'}: cannot read this image" in bad.stderr
    assert f"{tmp_path / 'notes.txt'}: cannot read this image" in bad.stderr
    assert "Traceback" not in bad.stderr
    no_int8 = run_shipped_predict(folder, site, "--int8", str(tmp_path / "notes.txt"))
    assert no_int8.returncode == 2
    assert "model.int8.onnx is not in this folder" in no_int8.stderr


def test_shipped_samples_check_a_pipeline(flowers_zip: tuple[Path, Path], tmp_path: Path) -> None:
    model, folder = flowers_zip
    expected = json.loads((folder / "samples" / "expected.json").read_text())
    assert sorted(expected) == ["grey16.png", "rgb.png", "transparent.png"]
    samples = [str(folder / "samples" / name) for name in expected]
    labels = (folder / "labels.txt").read_text().split()
    app_run = teachbox_predict(str(model), *samples, "--top", str(len(labels)))
    assert app_run.returncode == 0, app_run.stderr
    for path, answer in parse(app_run.stdout).items():
        want = expected[Path(path).name]
        assert max(answer, key=answer.__getitem__) == want["top"]
        assert all(abs(answer[k] - want["probabilities"][k]) < 1e-3 for k in labels)

    site = isolated_site(tmp_path)
    checked = run_shipped_predict(folder, site, "--check")
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.count(" matches (expected ") == 3
    tampered = tmp_path / "tampered"
    shutil.copytree(folder, tampered)
    wrong = expected | {
        "rgb.png": {**expected["rgb.png"], "probabilities": dict.fromkeys(labels, 0.2)}
    }
    (tampered / "samples" / "expected.json").write_text(json.dumps(wrong))
    differs = run_shipped_predict(tampered, site, "--check")
    assert differs.returncode == 1
    assert "samples/rgb.png: DIFFERS" in differs.stdout


def with_threshold(model: Path, folder: Path, out: Path, threshold: float) -> tuple[Path, Path]:
    """The same model, its metadata.json's unsure_below set to `threshold`: as a zip and as a folder."""
    shutil.copytree(folder, out / "unzipped")
    meta_path = out / "unzipped" / "metadata.json"
    meta = json.loads(meta_path.read_text()) | {"unsure_below": threshold}
    meta_path.write_text(json.dumps(meta))
    with zipfile.ZipFile(model) as source, zipfile.ZipFile(out / "model.zip", "w") as target:
        for name in source.namelist():
            data = meta_path.read_bytes() if name == "metadata.json" else source.read(name)
            target.writestr(name, data)
    return out / "model.zip", out / "unzipped"


def test_both_say_not_sure_below_the_models_threshold(
    flowers: Path, flowers_zip: tuple[Path, Path], tmp_path: Path
) -> None:
    model, folder = flowers_zip
    assert 0.0 <= json.loads((folder / "metadata.json").read_text())["unsure_below"] <= 1.0
    photos = [str(p) for p in sorted((flowers / "val" / "roses").glob("*.jpg"))[:6]]
    tops = {
        p: max(answer.values())
        for p, answer in parse(teachbox_predict(str(model), *photos).stdout).items()
    }
    threshold = sorted(tops.values())[3]  # three photos below it, three at or above
    zip_path, unzipped = with_threshold(model, folder, tmp_path, threshold)
    for run in (
        teachbox_predict(str(zip_path), *photos),
        run_shipped_predict(unzipped, isolated_site(tmp_path), *photos),
    ):
        assert run.returncode == 0, run.stderr
        unsure = {line.split(": ")[0] for line in run.stdout.splitlines() if ": not sure: " in line}
        assert unsure == {p for p, top in tops.items() if top < threshold - 1e-3}
        assert len(unsure) == 3
