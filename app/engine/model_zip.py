"""A model zip read back: ONNX Runtime predictions, scoring on a labelled folder, the PyTorch model."""

from __future__ import annotations

import json
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from PIL import Image
from safetensors.torch import load_file

from app.engine.backbones import build_backbone, get_spec
from app.engine.dataset import not_images, scan_folder
from app.engine.errors import ImageRejected, InvalidInput
from app.engine.images import DEFAULT_MAX_PIXELS, Preprocessing, decode_image, model_input
from app.engine.metrics import classification_metrics
from app.engine.network import Classifier, make_head
from app.engine.onnx_runtime import cpu_session
from app.engine.preprocess import from_metadata


def read_zip_member(zip_path: Path, name: str) -> bytes:
    try:
        with zipfile.ZipFile(zip_path) as archive:
            return archive.read(name)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        raise InvalidInput(
            f"{zip_path} is not a Teachbox model zip ({exc}). Give the .zip that `teachbox train` wrote."
        ) from None


@dataclass
class OnnxClassifier:
    """An exported model, loaded once and kept warm: images in, probabilities out."""

    session: ort.InferenceSession
    metadata: dict[str, Any]

    @classmethod
    def from_zip(cls, zip_path: Path) -> OnnxClassifier:
        metadata = json.loads(read_zip_member(zip_path, "metadata.json"))
        session = cpu_session(read_zip_member(zip_path, "model.onnx"), spin=True)
        return cls(session, metadata)

    @property
    def labels(self) -> list[str]:
        return list(self.metadata["labels"])

    @property
    def unsure_below(self) -> float:
        """Answers whose top probability is below this say "not sure" (0 for older models)."""
        return float(self.metadata.get("unsure_below", 0.0))

    @property
    def preprocessing(self) -> Preprocessing:
        return from_metadata(self.metadata)

    def predict_arrays(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input": batch})[0]

    def predict_images(self, images: list[Image.Image]) -> np.ndarray:
        prep = self.preprocessing
        return self.predict_arrays(np.stack([model_input(image, prep) for image in images]))

    def predict_bytes(
        self, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS
    ) -> list[tuple[str, float]]:
        """(label, probability) pairs, most likely first."""
        probs = self.predict_images([decode_image(data, max_pixels)])[0]
        return sorted(
            zip(self.labels, (float(p) for p in probs), strict=True), key=lambda pair: -pair[1]
        )


def evaluate_zip(
    zip_path: Path, data_dir: Path, batch_size: int = 32, max_pixels: int = DEFAULT_MAX_PIXELS
) -> dict[str, Any]:
    """Score the exported model on a class-per-folder tree with ONNX Runtime."""
    classifier = OnnxClassifier.from_zip(zip_path)
    labels = classifier.labels
    _, items = scan_folder(data_dir)
    unknown = sorted({name for _, name in items} - set(labels))
    if unknown:
        raise InvalidInput(
            f"{data_dir} has classes the model does not know: {', '.join(unknown)}. The model knows: {', '.join(labels)}."
        )
    prep = classifier.preprocessing
    probs, targets, paths = [], [], []
    skipped = [{"path": str(path), "reason": reason} for path, reason in not_images(data_dir)]
    for start in range(0, len(items), batch_size):
        arrays = []
        for path, name in items[start : start + batch_size]:
            try:
                arrays.append(model_input(path, prep, max_pixels=max_pixels))
            except ImageRejected as exc:
                skipped.append({"path": str(path), "reason": exc.reason})
                continue
            targets.append(labels.index(name))
            paths.append(path)
        if arrays:
            probs.append(classifier.predict_arrays(np.stack(arrays)))
    if not targets:
        raise InvalidInput(
            f"No readable images were found in {data_dir}. Give a folder with one sub-folder per class."
        )
    metrics = classification_metrics(
        torch.from_numpy(np.concatenate(probs)), torch.tensor(targets), labels, paths
    ).model_dump(mode="json")
    metrics["accuracy"] = metrics.pop("val_accuracy")
    metrics["n_images"] = metrics.pop("n_val")
    metrics["skipped"] = skipped
    return metrics


def load_classifier(zip_path: Path) -> tuple[Classifier, dict[str, Any]]:
    """Rebuild the PyTorch model from a zip's safetensors (no pickle), e.g. to continue training."""
    metadata = json.loads(read_zip_member(zip_path, "metadata.json"))
    spec = get_spec(metadata["backbone"])
    model = Classifier(
        build_backbone(spec.name, pretrained=False),
        make_head(spec.feature_dim, len(metadata["labels"])),
    )
    with tempfile.TemporaryDirectory() as scratch:
        weights = Path(scratch) / "model.safetensors"
        weights.write_bytes(read_zip_member(zip_path, "model.safetensors"))
        model.load_state_dict(load_file(str(weights)))
    return model.eval(), metadata
