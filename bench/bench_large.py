"""A 10,000-image project: cold transfer training time, peak memory, and retraining after adding 100 images.

    .venv/bin/python bench/bench_large.py [--images 10000] [--source ../shared/datasets/flowers-dev/train]

The images are synthesised from the shared photos with random crops, flips and rescaling into a
temporary folder (deleted afterwards). Each training runs in a fresh process so its peak RSS is
its own.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "datasets" / "flowers-dev" / "train"

CHILD = """
import json, resource, sys, time
from pathlib import Path
from app.engine.dataset import from_folder
from app.engine.embeddings import make_embedder
from app.engine.params import TrainParams
from app.engine.pipeline import train_to_zip
from app.engine.training import RunContext
data_dir, cache, out = map(Path, sys.argv[1:4])
params = TrainParams(seed=0)
tick = time.perf_counter()
data = from_folder(data_dir, None, params.val_split, params.seed)
metadata = train_to_zip(data, params, out, RunContext(make_embedder("mobilenet_v2", cache)))
print(json.dumps({"train_seconds": metadata["metrics"]["train_seconds"], "wall_seconds": time.perf_counter() - tick,
                  "val_accuracy": metadata["metrics"]["val_accuracy"], "n_train": metadata["metrics"]["n_train"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def synthesise(source: Path, target: Path, count: int, seed: int, start: int = 0) -> None:
    """`count` JPEGs spread over the source classes: random crops of 50-100 %, flips, 160-400 px."""
    rng = random.Random(seed)
    classes = sorted(d for d in source.iterdir() if d.is_dir())
    photos = {d.name: sorted(d.glob("*.jpg")) for d in classes}
    for i in range(count):
        name = classes[i % len(classes)].name
        with Image.open(rng.choice(photos[name])) as photo:
            image = photo.convert("RGB")
        width, height = image.size
        scale = rng.uniform(0.5, 1.0)
        crop_w, crop_h = int(width * scale), int(height * scale)
        left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
        image = image.crop((left, top, left + crop_w, top + crop_h))
        if rng.random() < 0.5:
            image = ImageOps.mirror(image)
        side = rng.randint(160, 400)
        image = image.resize((side, round(side * crop_h / crop_w)), Image.Resampling.BILINEAR)
        out = target / name / f"synth_{start + i:05d}.jpg"
        out.parent.mkdir(parents=True, exist_ok=True)
        image.save(out, "JPEG", quality=88)


def train_in_child(data_dir: Path, cache: Path, out: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(data_dir), str(cache), str(out)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="teachbox-large-"))
    try:
        tick = time.perf_counter()
        synthesise(args.source, scratch / "data", args.images, seed=0)
        made = time.perf_counter() - tick
        cache = scratch / "cache"
        cold = train_in_child(scratch / "data", cache, scratch / "model.zip")
        synthesise(args.source, scratch / "data", 100, seed=1, start=args.images)
        warm = train_in_child(scratch / "data", cache, scratch / "model2.zip")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"{args.images} synthetic images from {args.source} (made in {made:.0f} s)")
    print(
        f"| cold transfer training | train_seconds {cold['train_seconds']:.1f} s, wall {cold['wall_seconds']:.1f} s, "
        f"val acc {cold['val_accuracy']:.3f}, peak RSS {cold['peak_rss_mb']:.0f} MB |"
    )
    print(
        f"| retrain after adding 100 images | train_seconds {warm['train_seconds']:.1f} s, wall {warm['wall_seconds']:.1f} s, "
        f"peak RSS {warm['peak_rss_mb']:.0f} MB |"
    )


if __name__ == "__main__":
    main()
