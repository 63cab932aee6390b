"""The model page in Chromium (WebAssembly): model load time and per-image latency, float vs int8,
and how closely its answers match Python's on the same photos.

    .venv/bin/python bench/bench_browser.py [--photos 50] [--loads 3]

One run: train a transfer model with int8 on 8 flowers-dev photos per class, unzip it, serve the
folder with a static server (strict CSP), then in headless Chromium (/usr/bin/chromium, one
WebAssembly thread, as a plain static server allows) open `web/` `--loads` times per model for
the load time (fetching the model and creating the session, WebAssembly start included), and feed
`--photos` validation photos through the file input for the latency (the page's own timings:
preprocessing in JavaScript, then `session.run`). Python runs the same files through
preprocess.py and ONNX Runtime on the same model, for the agreement figures.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.engine.context import RunContext  # noqa: E402
from app.engine.dataset import from_folder  # noqa: E402
from app.engine.embeddings import make_embedder  # noqa: E402
from app.engine.images import model_input  # noqa: E402
from app.engine.params import TrainParams  # noqa: E402
from app.engine.pipeline import train_to_zip  # noqa: E402
from app.engine.preprocess import from_metadata  # noqa: E402
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.browser.model_page import (  # noqa: E402
    READ_ROWS,
    strict_static_server,
    wait_until_ready,
)

FLOWERS = ROOT.parent / "shared" / "datasets" / "flowers-dev"
MODELS = ("model.onnx", "model.int8.onnx")


def photos(folder: Path, per_class: int) -> list[Path]:
    return [
        path
        for class_dir in sorted(p for p in folder.iterdir() if p.is_dir())
        for path in sorted(class_dir.iterdir())[:per_class]
    ]


def train_model(scratch: Path) -> Path:
    root = scratch / "train"
    for path in photos(FLOWERS / "train", 8):
        (root / path.parent.name).mkdir(parents=True, exist_ok=True)
        (root / path.parent.name / path.name).symlink_to(path)
    params = TrainParams(epochs=20, seed=1, int8=True)
    out = scratch / "model.zip"
    embedder = make_embedder(params.backbone, scratch / "cache")
    train_to_zip(from_folder(root, None, 0.25, params.seed), params, out, RunContext(embedder))
    return out


def python_probabilities(folder: Path, model: str, images: list[Path]) -> np.ndarray:
    import json

    prep = from_metadata(json.loads((folder / "metadata.json").read_text()))
    session = ort.InferenceSession(str(folder / model), providers=["CPUExecutionProvider"])
    batch = np.stack([model_input(path, prep) for path in images])
    return np.concatenate(
        [session.run(None, {"input": batch[i : i + 16]})[0] for i in range(0, len(batch), 16)]
    )


def load_times(browser, url: str, model: str, loads: int) -> list[float]:
    times = []
    for _ in range(loads):
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{url}?model={model}")
        wait_until_ready(page)
        assert page.locator(".model-page").get_attribute("data-model") == model
        times.append(float(page.locator(".model-page").get_attribute("data-load-ms") or "nan"))
        context.close()
    return times


def run_photos(browser, url: str, model: str, images: list[Path], labels: list[str]):
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{url}?model={model}")
    wait_until_ready(page)
    preprocess, inference, probabilities = [], [], []
    for seq, path in enumerate(images, start=1):
        page.get_by_test_id("file-input").set_input_files(str(path))
        page.wait_for_selector(f'#predictions[data-seq="{seq}"]')
        listing = page.locator("#predictions")
        preprocess.append(float(listing.get_attribute("data-preprocess-ms") or "nan"))
        inference.append(float(listing.get_attribute("data-model-ms") or "nan"))
        by_label = {row["label"]: row["probability"] for row in page.evaluate(READ_ROWS)}
        probabilities.append([by_label[label] for label in labels])
    context.close()
    return preprocess, inference, np.array(probabilities)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--photos", type=int, default=50, help="validation photos (spread over the 5 classes)"
    )
    parser.add_argument(
        "--loads", type=int, default=3, help="page loads per model for the load time"
    )
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        model_zip = train_model(scratch)
        folder = scratch / "unzipped"
        with zipfile.ZipFile(model_zip) as archive:
            archive.extractall(folder)
            labels = archive.read("labels.txt").decode().split("\n")[:-1]
        images = photos(FLOWERS / "val", -(-args.photos // 5))[: args.photos]
        sizes = {model: (folder / model).stat().st_size / 1e6 for model in MODELS}
        results = {}
        with strict_static_server(folder) as base, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            url = f"{base}/web/"
            for model in MODELS:
                loads = load_times(browser, url, model, args.loads)
                preprocess, inference, browser_probs = run_photos(
                    browser, url, model, images, labels
                )
                python_probs = python_probabilities(folder, model, images)
                results[model] = {
                    "load": statistics.median(loads),
                    "preprocess": statistics.median(preprocess),
                    "model": statistics.median(inference),
                    "top1": int((browser_probs.argmax(1) == python_probs.argmax(1)).sum()),
                    "diff": float(np.abs(browser_probs - python_probs).max()),
                }
            browser.close()
    print(f"{len(images)} photos, {args.loads} loads per model, Chromium {browser.version}")
    print(
        "| model | size | load (median) | preprocess / image | session.run / image | top-1 = Python | largest probability difference |"
    )
    print("|---|---|---|---|---|---|---|")
    for model, r in results.items():
        print(
            f"| {model} | {sizes[model]:.1f} MB | {r['load']:.0f} ms | {r['preprocess']:.1f} ms | "
            f"{r['model']:.1f} ms | {r['top1']}/{len(images)} | {r['diff']:.1e} |"
        )
    f, q = results["model.onnx"], results["model.int8.onnx"]
    print(
        f"int8 / float: load {q['load'] / f['load']:.2f}x, session.run {q['model'] / f['model']:.2f}x, size {sizes['model.int8.onnx'] / sizes['model.onnx']:.2f}x"
    )


if __name__ == "__main__":
    main()
