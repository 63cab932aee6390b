"""The model page shipped in every zip's `web/` folder (and served at a share link): its files.

The page is static/model-page/ (HTML, its script, its stylesheet and preprocess.js, the port of
preprocess.py to JavaScript) and the vendored ONNX Runtime Web under web/ort/. It reads
`../metadata.json` and `../model.onnx`, so it runs from the unzipped folder under any static
server and, unchanged, from `/s/<token>/web/`.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE_DIR = ROOT / "static" / "model-page"
ORT_DIR = ROOT / "static" / "vendor" / "onnxruntime-web"
ORT_WEB_VERSION = "1.30.0"
WEB_DIR = "web"
PAGE_FILES = ("index.html", "model-page.js", "preprocess.js", "model-page.css", "icon.svg")
ORT_FILES = (
    "ort.wasm.min.js",
    "ort-wasm-simd-threaded.mjs",
    "ort-wasm-simd-threaded.wasm",
    "LICENSE",
)


def page_files() -> dict[str, Path]:
    """Each file of the page by its path under web/ (`ort/...` for the runtime), with its source."""
    files = {name: PAGE_DIR / name for name in PAGE_FILES}
    files.update({f"ort/{name}": ORT_DIR / name for name in ORT_FILES})
    return files


WEB_MEMBERS = tuple(f"{WEB_DIR}/{name}" for name in page_files())
