"""TFLite export benchmark: the same trained model exported without and with TFLite, side by side.

    .venv/bin/python bench/bench_tflite.py [--data ../shared/datasets/flowers-dev]   # needs the tflite extra

Trains transfer mode once on DATA/train (validating on DATA/val), then times export_model_zip
with int8 on, first ONNX only and then with TFLite, and prints each file's size and how it agrees
with PyTorch on the validation images (float32 and int8, ONNX and TFLite).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import zipfile
from pathlib import Path

from app.engine.context import RunContext
from app.engine.dataset import from_folder
from app.engine.embeddings import make_embedder
from app.engine.export import export_model_zip
from app.engine.params import TrainParams
from app.engine.tflite import tflite_missing
from app.engine.training import fit

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "flowers-dev"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    args = parser.parse_args()
    missing = tflite_missing()
    if missing:
        raise SystemExit(missing)
    params = TrainParams(int8=True)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        dataset = from_folder(args.data / "train", args.data / "val", params.val_split, params.seed)
        result = fit(dataset, params, RunContext(make_embedder("mobilenet_v2", folder / "cache")))
        print(
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
            f"{len(result.train_paths)} training and {len(result.val_paths)} validation images"
        )
        timings = {}
        for tflite in (False, True):
            tick = time.perf_counter()
            metadata = export_model_zip(result, folder / f"{tflite}.zip", tflite=tflite)
            timings[tflite] = time.perf_counter() - tick
        print(f"export, ONNX + int8 ONNX:          {timings[False]:7.1f} s")
        print(
            f"export, with both TFLite files:    {timings[True]:7.1f} s  "
            f"({timings[True] / timings[False]:.1f}x; TFLite adds {timings[True] - timings[False]:.1f} s)"
        )
        sizes = {i.filename: i.file_size for i in zipfile.ZipFile(folder / "True.zip").infolist()}
        for name in ("model.onnx", "model.int8.onnx", "model.tflite", "model.int8.tflite"):
            print(f"{name:20s} {sizes[name] / 1e6:6.2f} MB")
        onnx, tfl = metadata["parity"], metadata["parity"]["tflite"]
        int8 = metadata["int8"]
        print(
            f"ONNX float32 vs PyTorch:   top-1 all agree {onnx['top1_agree']}, max |dp| {onnx['max_abs_diff']:.1e} ({onnx['images']} images)"
        )
        print(
            f"TFLite float32 vs PyTorch: top-1 all agree {tfl['float32']['top1_agree']}, max |dp| {tfl['float32']['max_abs_diff']:.1e}"
        )
        print(
            f"TFLite int8 vs PyTorch:    top-1 agreement {tfl['int8']['top1_agreement']:.3f}, max |dp| {tfl['int8']['max_abs_diff']:.3f}"
        )
        print(
            f"ONNX int8 vs ONNX float32: top-1 agreement {int8['top1_agreement']:.3f}, accuracy change {int8['accuracy_change']:+.3f}"
        )
        print(f"validation accuracy (PyTorch): {result.metrics.val_accuracy:.3f}")


if __name__ == "__main__":
    main()
