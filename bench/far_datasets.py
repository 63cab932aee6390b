"""Build the real image sets far from ImageNet that bench_finetune_far.py measures, outside the repository.

    .venv/bin/python bench/far_datasets.py --mirror /work/.mirror --out /work/data-far

Both come from public GitHub repositories under the MIT licence, read from bare git copies (the
`fetch` of github:Shenggan/BCCD_Dataset and github:tangsanli5201/DeepPCB) at the commits below;
nothing is downloaded here and nothing is written into the repository.

- bccd-cells (microscopy): blood-smear photos (640x480) with boxes for red cells, white cells and
  platelets. Each class image is a fixed 128x128 window of the photo centred on one annotated cell,
  at native scale, so neighbouring cells stay in view and a platelet is a small dot among red cells
  (detail-sensitive). All white cells and platelets; one red cell per photo (seeded choice) to keep
  the classes balanced. Split by photo: the repository's ImageSets/Main/test.txt photos go to val,
  the rest to train, so no photo contributes to both.
- deeppcb-defects (industrial, binarised greyscale): aligned pairs of a tested PCB image and its
  defect-free template (640x640). Each pair gives one 128x128 window holding one annotated defect at
  a seeded random position: the tested image's window is `defect`, the template's same window `ok`.
  The defect is small (often under 20 px) and may lie near the window's edge, where a centre crop
  can cut it away. Split by pair: the repository's trainval.txt pairs go to train, test.txt pairs to
  val; at most --pcb-train and --pcb-val pairs (seeded choice).
- pneumonia-xray (medical, greyscale, 28x28): MedMNIST's PneumoniaMNIST (CC BY 4.0; chest X-rays
  of children from Kermany et al., CC BY 4.0), the class-balanced copy committed to
  github:aksufatih/snn-medmnist (all 1,214 normal training images of the official split and as many
  pneumonia ones; that repository states no licence of its own, the data's is MedMNIST's). Train
  from its `train` arrays, val from its `test` arrays (MedMNIST's official test split), at most
  --xray-train and --xray-val a class (seeded choice).
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image

BCCD_REPO, BCCD_COMMIT = "Shenggan+BCCD_Dataset", "d272fb14cdff6e473fafeeeba32aba5f560e9e43"
PCB_REPO, PCB_COMMIT = "tangsanli5201+DeepPCB", "08e98c4db5922613fb97176eb3d6497d48260cb1"
XRAY_REPO, XRAY_COMMIT = "aksufatih+snn-medmnist", "5df79ab2ac7bf898a8c7bf39830053619defa2f7"
XRAY_LABELS = ("normal", "pneumonia")  # MedMNIST's PneumoniaMNIST: label 0 and label 1
WINDOW = 128
SETS = ("bccd-cells", "deeppcb-defects", "pneumonia-xray")


class GitTree:
    """Files of one commit of a bare git directory."""

    def __init__(self, git_dir: Path, commit: str) -> None:
        self.git_dir, self.commit = git_dir, commit

    def read(self, path: str) -> bytes:
        return subprocess.run(
            ["git", f"--git-dir={self.git_dir}", "show", f"{self.commit}:{path}"],
            check=True,
            capture_output=True,
        ).stdout

    def text(self, path: str) -> str:
        return self.read(path).decode()

    def image(self, path: str) -> Image.Image:
        return Image.open(io.BytesIO(self.read(path))).convert("RGB")


def window(image: Image.Image, cx: float, cy: float) -> Image.Image:
    """The WINDOW x WINDOW square centred on (cx, cy), shifted to stay inside the image."""
    left = int(min(max(0, round(cx - WINDOW / 2)), image.width - WINDOW))
    top = int(min(max(0, round(cy - WINDOW / 2)), image.height - WINDOW))
    return image.crop((left, top, left + WINDOW, top + WINDOW))


def build_bccd(tree: GitTree, out: Path, rng: random.Random) -> None:
    val_ids = set(tree.text("BCCD/ImageSets/Main/test.txt").split())
    names = [
        line.rsplit("/", 1)[-1]
        for line in subprocess.run(
            [
                "git",
                f"--git-dir={tree.git_dir}",
                "ls-tree",
                "--name-only",
                tree.commit,
                "BCCD/Annotations/",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()
    ]
    for name in sorted(names):
        stem = name.removesuffix(".xml")
        root = ET.fromstring(tree.read(f"BCCD/Annotations/{name}"))
        boxes: dict[str, list[tuple[float, float]]] = {}
        for obj in root.iter("object"):
            box = obj.find("bndbox")
            label = (obj.findtext("name") or "").strip()
            if box is None or label not in ("RBC", "WBC", "Platelets"):
                continue
            x0, y0, x1, y1 = (float(box.findtext(k) or 0) for k in ("xmin", "ymin", "xmax", "ymax"))
            boxes.setdefault(label, []).append(((x0 + x1) / 2, (y0 + y1) / 2))
        if not boxes:
            continue
        try:
            photo = tree.image(f"BCCD/JPEGImages/{stem}.jpg")
        except subprocess.CalledProcessError:
            continue  # an annotation without its photo
        if "RBC" in boxes:
            boxes["RBC"] = [rng.choice(boxes["RBC"])]
        split = "val" if stem in val_ids else "train"
        for label, centres in boxes.items():
            folder = out / split / label.lower()
            folder.mkdir(parents=True, exist_ok=True)
            for k, (cx, cy) in enumerate(centres):
                window(photo, cx, cy).save(folder / f"{stem}_{k}.png")


def build_deeppcb(tree: GitTree, out: Path, rng: random.Random, n_train: int, n_val: int) -> None:
    for split, listing, limit in (("train", "trainval.txt", n_train), ("val", "test.txt", n_val)):
        pairs = [
            line.split() for line in tree.text(f"PCBData/{listing}").splitlines() if line.strip()
        ]
        rng.shuffle(pairs)
        for image_path, notes_path in sorted(pairs[:limit]):
            stem = Path(image_path).stem
            boxes = [
                [int(v) for v in line.replace(",", " ").split()[:4]]
                for line in tree.text(f"PCBData/{notes_path}").splitlines()
                if line.strip()
            ]
            x0, y0, x1, y1 = rng.choice(boxes)
            # The window holds the whole defect at a random place (not always centred).
            cx = rng.uniform(x1 - WINDOW / 2 + 4, x0 + WINDOW / 2 - 4)
            cy = rng.uniform(y1 - WINDOW / 2 + 4, y0 + WINDOW / 2 - 4)
            folder = Path(image_path).parent
            for label, suffix in (("defect", "test"), ("ok", "temp")):
                photo = tree.image(f"PCBData/{folder}/{stem}_{suffix}.jpg")
                target = out / split / label
                target.mkdir(parents=True, exist_ok=True)
                window(photo, cx, cy).save(target / f"{stem}.png")


def build_xray(tree: GitTree, out: Path, rng: random.Random, n_train: int, n_val: int) -> None:
    arrays = np.load(io.BytesIO(tree.read("pneumoniamnist.npz")))
    for split, prefix, limit in (("train", "train", n_train), ("val", "test", n_val)):
        images, labels = arrays[f"{prefix}_images"], arrays[f"{prefix}_labels"].ravel()
        for label, name in enumerate(XRAY_LABELS):
            indices = sorted(
                rng.sample(
                    list(np.flatnonzero(labels == label)),
                    k=min(limit, int((labels == label).sum())),
                )
            )
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in indices:
                Image.fromarray(images[index], "L").save(folder / f"{prefix}_{index:04d}.png")


def copy_licence(tree: GitTree, out: Path, origin: str) -> None:
    (out / "LICENSE").write_bytes(tree.read("LICENSE"))
    (out / "SOURCE.txt").write_text(
        f"{origin} at commit {tree.commit}; built by bench/far_datasets.py\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mirror", type=Path, default=Path("/work/.mirror"))
    parser.add_argument("--out", type=Path, default=Path("/work/data-far"))
    parser.add_argument("--pcb-train", type=int, default=300)
    parser.add_argument("--pcb-val", type=int, default=150)
    parser.add_argument("--xray-train", type=int, default=300)
    parser.add_argument("--xray-val", type=int, default=150)
    args = parser.parse_args()
    for name in SETS:
        shutil.rmtree(args.out / name, ignore_errors=True)
    bccd = GitTree(args.mirror / BCCD_REPO / "repo", BCCD_COMMIT)
    build_bccd(bccd, args.out / "bccd-cells", random.Random(0))
    copy_licence(bccd, args.out / "bccd-cells", "github.com/Shenggan/BCCD_Dataset (MIT)")
    pcb = GitTree(args.mirror / PCB_REPO / "repo", PCB_COMMIT)
    build_deeppcb(pcb, args.out / "deeppcb-defects", random.Random(0), args.pcb_train, args.pcb_val)
    copy_licence(pcb, args.out / "deeppcb-defects", "github.com/tangsanli5201/DeepPCB (MIT)")
    xray = GitTree(args.mirror / XRAY_REPO / "repo", XRAY_COMMIT)
    build_xray(xray, args.out / "pneumonia-xray", random.Random(0), args.xray_train, args.xray_val)
    (args.out / "pneumonia-xray" / "SOURCE.txt").write_text(
        f"github.com/aksufatih/snn-medmnist at commit {XRAY_COMMIT}: MedMNIST PneumoniaMNIST, "
        "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/; cite Yang et al., MedMNIST v2, "
        "Scientific Data 2023, and Kermany et al., Cell 2018); built by bench/far_datasets.py\n"
    )
    for name in SETS:
        for split in ("train", "val"):
            counts = {
                d.name: len(list(d.glob("*.png")))
                for d in sorted((args.out / name / split).iterdir())
            }
            print(name, split, counts)


if __name__ == "__main__":
    main()
