"""Should resize, crop and normalise move into the ONNX graph, so a browser only decodes? (issue 13)

    .venv/bin/python bench/bench_graph_preprocess.py [--data ../shared/datasets/flowers-dev] [--images 100]

Trains a transfer model on 8 photos per class, then feeds every validation photo (decoded once,
by the app's own code, to 8-bit RGB) two ways: (1) Pillow's resize, crop and normalise
(preprocess.py, what the app and the zip's predict.py run), (2) the same steps as ONNX operators
(opset 18 Resize, linear, antialiased; Slice; Sub/Div) on a uint8 HxWx3 input, run by ONNX
Runtime: the kernel onnxruntime-web would run in a browser. Prints the largest input difference,
the top-1 agreement and the largest probability difference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.engine.context import RunContext  # noqa: E402
from app.engine.dataset import from_items  # noqa: E402
from app.engine.embeddings import make_embedder  # noqa: E402
from app.engine.images import Preprocessing, decode_image  # noqa: E402
from app.engine.model_zip import OnnxClassifier  # noqa: E402
from app.engine.params import TrainParams  # noqa: E402
from app.engine.pipeline import train_to_zip  # noqa: E402
from app.engine.preprocess import rgb_to_input  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "datasets" / "flowers-dev"


def const(name: str, values: list[float] | list[int], dtype: int) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], value=helper.make_tensor(name, dtype, [len(values)], values)
    )


def preprocessing_graph(prep: Preprocessing) -> onnx.ModelProto:
    """uint8 [H, W, 3] RGB -> float32 [1, 3, crop, crop]: the preprocess.py steps as operators."""
    i64, f32 = TensorProto.INT64, TensorProto.FLOAT
    nodes = [
        const("resize_to", [float(prep.resize_size)], f32),
        const("crop", [prep.crop_size, prep.crop_size], i64),
        const("two", [2], i64),
        const("mean", list(prep.mean), f32),
        const("scale", [255.0 * s for s in prep.std], f32),
        const("nc", [1, 3], i64),
        helper.make_node("Shape", ["image"], ["shape"]),
        helper.make_node("Slice", ["shape", "zero", "two_end"], ["hw"]),
        helper.make_node("Cast", ["hw"], ["hw_f"], to=f32),
        helper.make_node("ReduceMin", ["hw_f"], ["short"], keepdims=1),
        helper.make_node("Div", ["resize_to", "short"], ["factor"]),
        helper.make_node("Mul", ["hw_f", "factor"], ["hw_scaled"]),
        helper.make_node("Round", ["hw_scaled"], ["hw_round"]),
        helper.make_node("Cast", ["hw_round"], ["hw_new_raw"], to=i64),
        helper.make_node("Max", ["hw_new_raw", "crop"], ["hw_new"]),
        helper.make_node("Concat", ["nc", "hw_new"], ["sizes"], axis=0),
        helper.make_node("Cast", ["image"], ["image_f"], to=f32),
        helper.make_node("Transpose", ["image_f"], ["chw"], perm=[2, 0, 1]),
        helper.make_node("Unsqueeze", ["chw", "zero"], ["nchw"]),
        helper.make_node(
            "Resize",
            ["nchw", "", "", "sizes"],
            ["resized"],
            mode="linear",
            antialias=1,
            coordinate_transformation_mode="half_pixel",
        ),
        helper.make_node("Sub", ["hw_new", "crop"], ["spare"]),
        helper.make_node("Div", ["spare", "two"], ["start"]),
        helper.make_node("Add", ["start", "crop"], ["end"]),
        const("crop_axes", [2, 3], i64),
        helper.make_node("Slice", ["resized", "start", "end", "crop_axes"], ["cropped"]),
        helper.make_node("Unsqueeze", ["mean", "mean_axes"], ["mean_b"]),
        helper.make_node("Unsqueeze", ["scale", "mean_axes"], ["scale_b"]),
        helper.make_node("Mul", ["mean_b", "c255"], ["mean_255"]),
        helper.make_node("Sub", ["cropped", "mean_255"], ["centred"]),
        helper.make_node("Div", ["centred", "scale_b"], ["input"]),
    ]
    nodes[:0] = [
        const("zero", [0], i64),
        const("two_end", [2], i64),
        const("mean_axes", [1, 2], i64),
        const("c255", [255.0], f32),
    ]
    graph = helper.make_graph(
        nodes,
        "teachbox_preprocess",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["height", "width", 3])],
        [helper.make_tensor_value_info("input", f32, [1, 3, prep.crop_size, prep.crop_size])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--images", type=int, default=100)
    args = parser.parse_args()
    train_items = [
        (p, d.name)
        for d in sorted((args.data / "train").iterdir())
        for p in sorted(d.glob("*.jpg"))[:8]
    ]
    val = sorted(p for d in sorted((args.data / "val").iterdir()) for p in d.glob("*.jpg"))
    val = val[:: max(1, len(val) // args.images)][: args.images]
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "model.zip"
        params = TrainParams(epochs=20, seed=1)
        embedder = make_embedder("mobilenet_v2", Path(scratch) / "cache")
        train_to_zip(from_items(train_items, seed=1), params, out, RunContext(embedder))
        classifier = OnnxClassifier.from_zip(out)
    prep = classifier.preprocessing
    graph = ort.InferenceSession(
        preprocessing_graph(prep).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    pillow, in_graph = [], []
    for path in val:
        rgb = decode_image(path)
        pillow.append(rgb_to_input(rgb, prep))
        in_graph.append(graph.run(None, {"image": np.asarray(rgb, dtype=np.uint8)})[0][0])
    a, b = np.stack(pillow), np.stack(in_graph)
    pa, pb = classifier.predict_arrays(a), classifier.predict_arrays(b)
    agree = int((pa.argmax(1) == pb.argmax(1)).sum())
    print(f"photos: {len(val)}")
    print(f"largest input difference (normalised units): {np.abs(a - b).max():.4f}")
    print(f"mean input difference: {np.abs(a - b).mean():.5f}")
    print(f"top-1 agreement: {agree}/{len(val)}")
    print(f"largest probability difference: {np.abs(pa - pb).max():.4f}")


if __name__ == "__main__":
    main()
