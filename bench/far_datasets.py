"""Build the real image sets far from ImageNet that bench_finetune_far.py measures, outside the repository.

    .venv/bin/python bench/far_datasets.py --mirror /work/.mirror --out /work/data-far [--sets NAME ...]

Each set is read from a bare git copy of a public GitHub repository (the `fetch` of the
repositories named below) at the commit pinned here; nothing is downloaded and nothing is written
into the repository. `--sets` rebuilds only the sets named (the others are left as they are).
Licences: bccd-cells and deeppcb-defects MIT (their repositories' LICENSE is copied beside the
images); pneumonia-xray and breast-ultrasound CC BY 4.0 (MedMNIST's, the data's; the repositories
holding the copies state none); brain-mri CC0 1.0 (the Kaggle dataset it copies). Every set's
SOURCE.txt names its origin, commit and licence.

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
- breast-ultrasound (medical, greyscale, 28x28): MedMNIST's BreastMNIST (CC BY 4.0; breast
  ultrasound from Al-Dhabyani et al. 2020, "BUSI"), the official arrays committed as
  Datasets/BreastMNIST.npz to github:KamalJain777/AMLS_25_26_SN24205421 by the commit pinned
  below (a later commit deleted it; the repository states no licence). Classes: malignant (label
  0) and benign (label 1, "normal, benign"). Train: the official `train` arrays (147 malignant, 399
  benign, at most --breast-train a class). Val: the official `val` and `test` arrays together (63
  malignant, 171 benign; no choice in the benchmark sees either), balanced by a seeded choice to 63
  a class. MedMNIST split BUSI by image, not by patient.
- brain-mri (medical, greyscale MRI slices, 224x224): the "Brain Tumor MRI Dataset" of M.
  Nickparvar (Kaggle, CC0 1.0; gathered from figshare (Cheng et al.), SARTAJ and Br35H), as
  224x224 JPEG copies committed to github:KomalChaudhari8/BRAIN_TUMOR_APP. Classes glioma,
  meningioma, notumor, pituitary. Train: its Training folder (at most --mri-train a class, seeded
  choice). Val: its Testing folder without the test images that copy a training image (16x16
  grey thumbnails within MRI_NEAR_COPY grey levels of one, compared with every training image: 214
  test files are byte-identical to training files and 502 of 1,311 are near-copies, 357 of the
  405 "notumor" ones), then balanced to the rarest class (48 a class). The source gives no patient
  identity, so other slices of the same patients may still sit on both sides, and "notumor" comes
  from other collections than the tumours (a source cue): the untouched score here is likely
  optimistic for both modes.
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
BREAST_REPO, BREAST_COMMIT = (
    "KamalJain777+AMLS_25_26_SN24205421",
    "b7f638d33cc9e6dc1a0de213b243598105837d5f",  # the commit that added the file (later removed)
)
BREAST_LABELS = ("malignant", "benign")  # MedMNIST's BreastMNIST: 0, and 1 "normal, benign"
MRI_REPO, MRI_COMMIT = "KomalChaudhari8+BRAIN_TUMOR_APP", "1fac2c320ad3f98cb71ce79d5d1490a953eaa1ec"
MRI_LABELS = ("glioma", "meningioma", "notumor", "pituitary")
MRI_NEAR_COPY = 2.0  # mean absolute difference of 16x16 grey thumbnails, in grey levels of 255
WINDOW = 128
SETS = ("bccd-cells", "deeppcb-defects", "pneumonia-xray", "breast-ultrasound", "brain-mri")


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

    def names(self, folder: str) -> list[str]:
        """The paths of the files directly in `folder`."""
        return subprocess.run(
            [
                "git",
                f"--git-dir={self.git_dir}",
                "ls-tree",
                "--name-only",
                self.commit,
                f"{folder}/",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split("\n")[:-1]

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


def build_medmnist(
    arrays: np.lib.npyio.NpzFile,
    out: Path,
    rng: random.Random,
    labels: tuple[str, ...],
    splits: dict[str, tuple[tuple[str, ...], int | None]],
) -> None:
    """Greyscale MedMNIST arrays as PNG folders: `splits` maps train/val to the array prefixes
    it draws from and at most how many images a class (None: as many as the rarest class)."""
    for split, (prefixes, limit) in splits.items():
        images = np.concatenate([arrays[f"{p}_images"] for p in prefixes])
        targets = np.concatenate([arrays[f"{p}_labels"].ravel() for p in prefixes])
        names = [f"{p}_{i:04d}" for p in prefixes for i in range(len(arrays[f"{p}_labels"]))]
        rarest = min(int((targets == label).sum()) for label in range(len(labels)))
        for label, name in enumerate(labels):
            members = list(np.flatnonzero(targets == label))
            chosen = sorted(rng.sample(members, k=min(limit or rarest, len(members))))
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for index in chosen:
                Image.fromarray(images[index], "L").save(folder / f"{names[index]}.png")


def build_xray(tree: GitTree, out: Path, rng: random.Random, n_train: int, n_val: int) -> None:
    arrays = np.load(io.BytesIO(tree.read("pneumoniamnist.npz")))
    splits = {"train": (("train",), n_train), "val": (("test",), n_val)}
    build_medmnist(arrays, out, rng, XRAY_LABELS, splits)


def build_breast(tree: GitTree, out: Path, rng: random.Random, n_train: int) -> None:
    arrays = np.load(io.BytesIO(tree.read("Datasets/BreastMNIST.npz")))
    # MedMNIST's val and test together are the untouched images (no choice here sees either),
    # balanced down to the rarer class: 63 malignant images are all there are.
    splits = {"train": (("train",), n_train), "val": (("val", "test"), None)}
    build_medmnist(arrays, out, rng, BREAST_LABELS, splits)


def thumbnail(data: bytes) -> np.ndarray:
    """A 16x16 grey copy of an image, to find near-copies of the same picture."""
    small = Image.open(io.BytesIO(data)).convert("L").resize((16, 16), Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float32).ravel()


def build_mri(tree: GitTree, out: Path, rng: random.Random, n_train: int) -> None:
    files = {
        (split, label): {
            path: tree.read(path)
            for path in tree.names(f"{folder}/{label}")
            if path.endswith(".jpg")  # not the notebook checkpoints folder one class holds
        }
        for split, folder in (("train", "Training"), ("val", "Testing"))
        for label in MRI_LABELS
    }
    seen = np.stack(
        [thumbnail(data) for label in MRI_LABELS for data in files["train", label].values()]
    )
    untouched = {
        label: [
            path
            for path, data in files["val", label].items()
            if np.abs(seen - thumbnail(data)).mean(axis=1).min() >= MRI_NEAR_COPY
        ]
        for label in MRI_LABELS
    }
    # The source's test images include copies of its training images (a third of them within
    # MRI_NEAR_COPY, 214 byte for byte): those are dropped, then the classes are balanced.
    rarest = min(len(paths) for paths in untouched.values())
    for label in MRI_LABELS:
        chosen = {
            "train": rng.sample(sorted(files["train", label]), k=n_train),
            "val": rng.sample(untouched[label], k=rarest),
        }
        for split, paths in chosen.items():
            folder = out / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for path in sorted(paths):
                (folder / Path(path).name).write_bytes(files[split, label][path])


def copy_licence(tree: GitTree, out: Path, origin: str) -> None:
    (out / "LICENSE").write_bytes(tree.read("LICENSE"))
    (out / "SOURCE.txt").write_text(
        f"{origin} at commit {tree.commit}; built by bench/far_datasets.py\n"
    )


def build_set(name: str, args: argparse.Namespace) -> None:
    out, rng = args.out / name, random.Random(0)
    if name == "bccd-cells":
        bccd = GitTree(args.mirror / BCCD_REPO / "repo", BCCD_COMMIT)
        build_bccd(bccd, out, rng)
        copy_licence(bccd, out, "github.com/Shenggan/BCCD_Dataset (MIT)")
    elif name == "deeppcb-defects":
        pcb = GitTree(args.mirror / PCB_REPO / "repo", PCB_COMMIT)
        build_deeppcb(pcb, out, rng, args.pcb_train, args.pcb_val)
        copy_licence(pcb, out, "github.com/tangsanli5201/DeepPCB (MIT)")
    elif name == "pneumonia-xray":
        xray = GitTree(args.mirror / XRAY_REPO / "repo", XRAY_COMMIT)
        build_xray(xray, out, rng, args.xray_train, args.xray_val)
        (out / "SOURCE.txt").write_text(
            f"github.com/aksufatih/snn-medmnist at commit {XRAY_COMMIT}: MedMNIST PneumoniaMNIST, "
            "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/; cite Yang et al., MedMNIST "
            "v2, Scientific Data 2023, and Kermany et al., Cell 2018); built by "
            "bench/far_datasets.py\n"
        )
    elif name == "breast-ultrasound":
        breast = GitTree(args.mirror / BREAST_REPO / "repo", BREAST_COMMIT)
        build_breast(breast, out, rng, args.breast_train)
        (out / "SOURCE.txt").write_text(
            f"github.com/KamalJain777/AMLS_25_26_SN24205421 at commit {BREAST_COMMIT}, "
            "Datasets/BreastMNIST.npz: MedMNIST BreastMNIST, CC BY 4.0 "
            "(https://creativecommons.org/licenses/by/4.0/; cite Yang et al., MedMNIST v2, "
            "Scientific Data 2023, and Al-Dhabyani et al., Dataset of breast ultrasound images, "
            "Data in Brief 2020); built by bench/far_datasets.py\n"
        )
    elif name == "brain-mri":
        build_mri(GitTree(args.mirror / MRI_REPO / "repo", MRI_COMMIT), out, rng, args.mri_train)
        (out / "SOURCE.txt").write_text(
            f"github.com/KomalChaudhari8/BRAIN_TUMOR_APP at commit {MRI_COMMIT}, Training/ and "
            "Testing/: 224x224 copies of the Brain Tumor MRI Dataset by Masoud Nickparvar "
            "(kaggle.com/datasets/masoudnickparvar/brain-tumor-mri-dataset), CC0 1.0 "
            "(https://creativecommons.org/publicdomain/zero/1.0/); built by "
            "bench/far_datasets.py\n"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sets", nargs="+", choices=SETS, default=list(SETS), help="the sets to (re)build"
    )
    parser.add_argument(
        "--mirror",
        type=Path,
        default=Path("/work/.mirror"),
        help="where the fetched repositories are",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("/work/data-far"), help="where the sets are written"
    )
    parser.add_argument("--pcb-train", type=int, default=300, help="DeepPCB training pairs (cap)")
    parser.add_argument("--pcb-val", type=int, default=150, help="DeepPCB untouched pairs (cap)")
    parser.add_argument(
        "--xray-train", type=int, default=300, help="PneumoniaMNIST training images a class (cap)"
    )
    parser.add_argument(
        "--xray-val", type=int, default=150, help="PneumoniaMNIST untouched images a class (cap)"
    )
    parser.add_argument(
        "--breast-train", type=int, default=400, help="BreastMNIST training images a class (cap)"
    )
    parser.add_argument(
        "--mri-train", type=int, default=300, help="brain MRI training images a class (cap)"
    )
    args = parser.parse_args()
    for name in args.sets:
        shutil.rmtree(args.out / name, ignore_errors=True)
        build_set(name, args)
        for split in ("train", "val"):
            counts = {
                d.name: len(list(d.iterdir())) for d in sorted((args.out / name / split).iterdir())
            }
            print(name, split, counts)


if __name__ == "__main__":
    main()
