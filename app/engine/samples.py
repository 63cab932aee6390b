"""Sample inputs shipped in the model zip with the outputs the app computes for them, so that a
developer can check their own pipeline (another language, a browser, a phone) against Teachbox.

The samples are made, not taken from the training images: a shared model must not carry its
owner's photos. They are lossless PNGs (decoders agree on them exactly) in three forms that
pipelines get wrong: a non-square RGB picture, transparency, and 16-bit greyscale.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image

from app.engine.images import Preprocessing, model_input

SAMPLES_DIR = "samples"
EXPECTED = f"{SAMPLES_DIR}/expected.json"


def _scene(width: int, height: int, seed: int) -> np.ndarray:
    """Smooth colour gradients, a few discs and mild noise: structure a resize can get wrong."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [
        127
        + 100
        * np.sin(x / rng.uniform(15, 60) + rng.uniform(0, 6))
        * np.cos(y / rng.uniform(15, 60) + rng.uniform(0, 6))
        for _ in range(3)
    ]
    pixels = np.stack(channels, axis=-1)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(10, 60)
        pixels[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = rng.uniform(0, 255, 3)
    pixels += rng.normal(0, 6, pixels.shape)
    return np.clip(pixels, 0, 255)


def _sample_images() -> dict[str, Image.Image]:
    rgb = Image.fromarray(_scene(320, 240, 1).round().astype(np.uint8), "RGB")
    rgba = Image.fromarray(_scene(240, 320, 2).round().astype(np.uint8), "RGB").convert("RGBA")
    alpha = np.full((320, 240), 255, dtype=np.uint8)
    alpha[:, :80] = 0
    alpha[:, 80:120] = 128
    rgba.putalpha(Image.fromarray(alpha, "L"))
    grey = (_scene(300, 300, 3).mean(axis=-1) * 257).round().astype(np.uint16)
    return {"rgb.png": rgb, "transparent.png": rgba, "grey16.png": Image.fromarray(grey)}


SAMPLE_NAMES = tuple(f"{SAMPLES_DIR}/{name}" for name in _sample_images())


def write_samples(folder: Path, onnx_path: Path, labels: list[str], prep: Preprocessing) -> None:
    """The sample PNGs under `folder/samples/` and expected.json: each one's probabilities (label
    order) and the per-channel mean of its preprocessed input, to tell a decoding fault from a
    model fault."""
    (folder / SAMPLES_DIR).mkdir(exist_ok=True)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    expected = {}
    for name, image in _sample_images().items():
        path = folder / SAMPLES_DIR / name
        image.save(path, "PNG")
        tensor = model_input(path.read_bytes(), prep)
        probs = session.run(None, {"input": tensor[None]})[0][0]
        expected[name] = {
            "top": labels[int(np.argmax(probs))],
            "probabilities": {
                label: round(float(p), 6) for label, p in zip(labels, probs, strict=True)
            },
            "input_channel_means": [round(float(c), 6) for c in tensor.mean(axis=(1, 2))],
        }
    (folder / EXPECTED).write_text(json.dumps(expected, indent=2), encoding="utf-8")
