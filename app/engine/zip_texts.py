"""The texts of the model zip: predict.py, preprocess.py (the app's own module) and the README."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.engine import preprocess

PREDICT_PY = '''\
"""Classify images with this model (needs only: pip install onnxruntime pillow numpy).

    python predict.py [--top N] [--int8] IMAGE [IMAGE ...]
    python predict.py --check     # this folder's samples give samples/expected.json's answers

A line starts with "not sure:" when the top probability is below metadata.json's `unsure_below`.

Decoding and preprocessing are preprocess.py, the same code the Teachbox app runs.
"""
import argparse
import json
import sys
from pathlib import Path

here = Path(__file__).resolve().parent
sys.path.insert(0, str(here))  # preprocess.py sits beside this file, even under `python -I`

import onnxruntime as ort  # noqa: E402
from PIL import Image, UnidentifiedImageError  # noqa: E402
from preprocess import from_metadata, rgb_to_input, upright_rgb  # noqa: E402

CHECK_TOLERANCE = 1e-4


def classify(session, prep, path):
    with Image.open(path) as image:
        pixels = rgb_to_input(upright_rgb(image), prep)
    return session.run(None, {"input": pixels[None]})[0][0]


def check(session, labels, prep):
    """Run the shipped samples and compare with the probabilities Teachbox computed for them."""
    expected = json.loads((here / "samples" / "expected.json").read_text(encoding="utf-8"))
    status = 0
    for name, answer in expected.items():
        probs = classify(session, prep, here / "samples" / name)
        diff = max(abs(float(p) - answer["probabilities"][label]) for label, p in zip(labels, probs))
        verdict = "matches" if diff <= CHECK_TOLERANCE else "DIFFERS"
        status = status or int(diff > CHECK_TOLERANCE)
        print(f"samples/{name}: {verdict} (expected {answer['top']}, largest probability difference {diff:.1e})")
    return status


def main(argv=None):
    parser = argparse.ArgumentParser(description="Classify images with this Teachbox model.")
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="JPEG, PNG, WebP, BMP or GIF files")
    parser.add_argument("--top", type=int, default=3, help="how many labels to show per image (default 3)")
    parser.add_argument("--int8", action="store_true", help="run model.int8.onnx, the quantised model")
    parser.add_argument("--check", action="store_true", help="check this setup on the shipped samples (model.onnx)")
    args = parser.parse_args(argv)
    if not args.images and not args.check:
        parser.error("give at least one IMAGE to classify, or --check")
    model = here / ("model.int8.onnx" if args.int8 and not args.check else "model.onnx")
    if not model.is_file():
        parser.error(f"{model.name} is not in this folder; train with int8 on to get it, or drop --int8")
    meta = json.loads((here / "metadata.json").read_text(encoding="utf-8"))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    prep, labels = from_metadata(meta), meta["labels"]
    if args.check:
        return check(session, labels, prep)
    status = 0
    for path in args.images:
        try:
            probs = classify(session, prep, path)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            print(f"{path}: cannot read this image ({exc}). Give a JPEG, PNG, WebP, BMP or GIF file.", file=sys.stderr)
            status = 1
            continue
        ranked = sorted(zip(labels, probs), key=lambda pair: -pair[1])[: args.top]
        unsure = ranked[0][1] < meta.get("unsure_below", 0.0)
        print(f"{path}: " + ("not sure: " if unsure else "") + "  ".join(f"{label} {p:.3f}" for label, p in ranked))
    return status


if __name__ == "__main__":
    sys.exit(main())
'''
# Shipped beside predict.py, byte for byte the module the app itself decodes and preprocesses with.
PREPROCESS_PY = Path(preprocess.__file__).read_text(encoding="utf-8")

README_MD = """\
# {title}

An image classifier trained with Teachbox ({mode} on {backbone}).
Expected accuracy on new images: {accuracy} ({method}).
Labels, in output order: {labels}.

The probabilities are calibrated (temperature scaling, folded into the model). When the top
probability is below {unsure_below} (`unsure_below` in `metadata.json`), treat the answer as
"not sure": {sure_line}

## Files

- `model.onnx`: the model, one self-contained ONNX file (opset {opset}). Input `input`: float32, NCHW,
  RGB, {size}x{size}, batch size free. Output `probabilities`: one row of {n_labels} per image,
  in the order of `labels.txt`. Its `metadata_props` carry the labels and the preprocessing.
{int8_line}{tflite_lines}- `labels.txt`: the labels, one a line, in output order.
- `metadata.json`: labels, preprocessing (`image_size`, `resize_size`, `mean`, `std`), input and
  output, training parameters, `estimate` (expected accuracy with its 95 % interval and how it was
  measured), `unsure_below` and `temperature`, the metrics, the export's parity check, package versions.
- `predict.py`: classify image files (needs only onnxruntime, pillow and numpy).
- `preprocess.py`: decoding and preprocessing, the same code the Teachbox app runs.
- `samples/rgb.png`, `samples/transparent.png`, `samples/grey16.png` and `samples/expected.json`:
  made-up pictures (none of the training images) in three forms pipelines get wrong (non-square,
  transparency, 16-bit), with what Teachbox answers for each: probabilities in label order and
  the per-channel mean of the preprocessed input. Check your own pipeline against them;
  `python predict.py --check` does it for this folder.
- `model.safetensors`: the full PyTorch weights, to continue training (never pickle).
- `README.md`: this file.
- `web/index.html`, `web/model-page.js`, `web/model-page.css`, `web/icon.svg` and `web/preprocess.js`: a web page
  that classifies a chosen image or the webcam in the browser, offline (see "Web page" below).
  `web/preprocess.js` is `preprocess.py` ported to JavaScript, Pillow's resize bit for bit.
- `web/ort/ort.wasm.min.js`, `web/ort/ort-wasm-simd-threaded.mjs`,
  `web/ort/ort-wasm-simd-threaded.wasm` and `web/ort/LICENSE`: ONNX Runtime Web {ort_version}
  (WebAssembly only, MIT licence), which the page runs the model with; nothing comes from a CDN.

## Python

    pip install onnxruntime pillow numpy
    python predict.py photo.jpg            # --top N labels per image; --int8 runs model.int8.onnx
    python predict.py --check              # the samples give the expected answers here

## Web page

    python -m http.server 8000         # in this folder, then open http://localhost:8000/web/

Choose an image, or press Webcam (Switch camera changes between the front and back cameras).
Each class gets a bar, the most likely first; "Not sure" appears when the best probability is
below the model's `unsure_below` (in `metadata.json`, when it has one). The page reads
`../metadata.json` and `../model.onnx` (a choice offers `model.int8.onnx` when it is here), so
copy `web/` together with them; any static server works, and it runs under a strict
Content-Security-Policy (`script-src 'self' 'wasm-unsafe-eval'`, no inline script or style).
Opening `web/index.html` as a file does not work: browsers refuse `fetch` from `file://`.
It answers what `predict.py` answers (within 1e-5 on photos and on `samples/rgb.png` and
`samples/transparent.png`); 16-bit images differ slightly, as the browser decodes them to 8 bits.

## Preprocessing (do exactly this in any other runtime)

Decode; take the first frame of an animation; apply the EXIF orientation; convert to 8-bit RGB
(16-bit images scaled, not clipped; transparency onto white); resize the shorter side to {resize}
pixels (bilinear, antialiased); centre-crop {size}x{size}; scale to [0, 1]; subtract `mean` and
divide by `std` per channel; lay out as channels, rows, columns. A resize other than Pillow's
(a browser canvas, a phone's bitmap scaler) changes pixels slightly, and so probabilities a little.

## JavaScript (onnxruntime-web)

`web/preprocess.js` does the preprocessing exactly (`pixelsToInput(rgba, width, height,
metadata)` on pixels decoded with `createImageBitmap(file, {{imageOrientation: "from-image",
colorSpaceConversion: "none", premultiplyAlpha: "none"}})`, as `decodeFile` does). The shorter
version below uses the canvas's own resize, which moves probabilities a little:

```js
import * as ort from "onnxruntime-web";
const session = await ort.InferenceSession.create("model.onnx");
const mean = {mean}, std = {std}, size = {size}, resize = {resize};

function toInput(image) {{  // an <img>, <video> frame or ImageBitmap
  const scale = resize / Math.min(image.width, image.height);
  const w = Math.max(size, Math.round(image.width * scale));
  const h = Math.max(size, Math.round(image.height * scale));
  const canvas = new OffscreenCanvas(size, size), ctx = canvas.getContext("2d");
  ctx.fillStyle = "white"; ctx.fillRect(0, 0, size, size);  // transparency onto white
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(image, -Math.floor((w - size) / 2), -Math.floor((h - size) / 2), w, h);
  const rgba = ctx.getImageData(0, 0, size, size).data, data = new Float32Array(3 * size * size);
  for (let i = 0; i < size * size; i++)
    for (let c = 0; c < 3; c++) data[c * size * size + i] = (rgba[4 * i + c] / 255 - mean[c]) / std[c];
  return new ort.Tensor("float32", data, [1, 3, size, size]);
}}

const {{ probabilities }} = await session.run({{ input: toInput(document.querySelector("img")) }});
```

## Android (ONNX Runtime Mobile, Kotlin)

```kotlin
val env = OrtEnvironment.getEnvironment()
val session = env.createSession(assets.open("model.onnx").readBytes())
// pixels: FloatArray(3 * {size} * {size}), filled as in "Preprocessing" above
val input = OnnxTensor.createTensor(env, FloatBuffer.wrap(pixels), longArrayOf(1, 3, {size}, {size}))
val probabilities = (session.run(mapOf("input" to input))[0].value as Array<FloatArray>)[0]
```

{tflite_section}## iOS (ONNX Runtime Mobile, Swift: pod 'onnxruntime-objc')

```swift
let env = try ORTEnv(loggingLevel: .warning)
let session = try ORTSession(env: env, modelPath: modelPath, sessionOptions: nil)
// pixels: [Float] of 3 * {size} * {size}, filled as in "Preprocessing" above
let data = NSMutableData(bytes: pixels, length: pixels.count * MemoryLayout<Float>.size)
let input = try ORTValue(tensorData: data, elementType: .float, shape: [1, 3, {size}, {size}])
let outputs = try session.run(withInputs: ["input": input], outputNames: ["probabilities"], runOptions: nil)
```
"""

INT8_LINE = """\
- `model.int8.onnx`: the same model quantised to int8 with ONNX Runtime (about 3x smaller, for
  edge devices); same input and output; its accuracy change is in `metadata.json` under `int8`.
"""


def tflite_lines(report: dict[str, Any], size: int) -> str:
    """The Files entries for the TFLite models, or the sentence saying why there are none."""
    if "skipped" in report:
        return f"- No `model.tflite`: {report['skipped']}\n"
    lines = (
        f"- `model.tflite`: the same model for LiteRT (TensorFlow Lite) on phones and boards, float32;\n"
        f"  input float32 NCHW [1, 3, {size}, {size}], output [1, n] probabilities, as `model.onnx`. Its\n"
        f"  agreement with PyTorch on the validation images is in `metadata.json` under `parity.tflite`.\n"
    )
    int8 = report.get("int8")
    if int8:
        quant = int8["input_quantization"] or {}
        lines += (
            f"- `model.int8.tflite`: full int8 (weights and activations), for boards and NPUs; input int8:\n"
            f"  `round(x / {quant.get('scale', 1):.8g}) + {quant.get('zero_point', 0)}` of the float input, clipped to\n"
            f"  [-128, 127]; output float32 probabilities. Top-1 agreement with PyTorch: {int8['top1_agreement']:.3f}.\n"
        )
    return lines


def tflite_section(report: dict[str, Any], size: int) -> str:
    """The Android snippet for model.tflite with the LiteRT Interpreter (Kotlin), when it is here."""
    if "skipped" in report:
        return ""
    return f"""## Android (LiteRT Interpreter, Kotlin: com.google.ai.edge.litert:litert)

```kotlin
val model = FileUtil.loadMappedFile(context, "model.tflite")  // from assets/
val interpreter = Interpreter(model)
// pixels: FloatArray(3 * {size} * {size}), filled as in "Preprocessing" above (NCHW, like model.onnx)
val input = ByteBuffer.allocateDirect(4 * pixels.size).order(ByteOrder.nativeOrder())
input.asFloatBuffer().put(pixels)
val probabilities = Array(1) {{ FloatArray(labels.size) }}
interpreter.run(input, probabilities)
```

"""
