// The model page: loads ../metadata.json and ../model.onnx beside it (the zip's layout, and a
// share link's), and classifies a chosen file or the webcam in this browser with ONNX Runtime Web.

import { bitmapPixels, decodeFile, pixelsToInput } from "./preprocess.js";

const $ = (selector) => document.querySelector(selector);
const page = $(".model-page");
const ort = globalThis.ort;

// Absolute, from the page's own URL: ort resolves a relative path against its own script otherwise.
ort.env.wasm.wasmPaths = new URL("./ort/", document.baseURI).href;
// Threads need a cross-origin-isolated page, which a plain static server does not give.
ort.env.wasm.numThreads = 1;

const state = { metadata: null, session: null, stream: null, facing: "user", busy: false, pictureUrl: null, seq: 0 };

function percent(p) {
  return `${(100 * p).toFixed(1)} %`;
}

function showError(message) {
  const box = $("#error");
  box.textContent = message;
  box.hidden = !message;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function predictionRow(label, probability, top) {
  const row = element("li", top ? "prediction top" : "prediction");
  row.setAttribute("data-testid", "prediction");
  row.dataset.probability = String(probability);
  const bar = element("span", "bar");
  bar.style.width = `${(100 * probability).toFixed(1)}%`; // CSSOM, which a strict CSP allows
  const track = element("span", "bar-track");
  track.setAttribute("role", "presentation");
  track.append(bar);
  row.append(element("span", "prediction-label", label), track, element("span", "prediction-value", percent(probability)));
  return row;
}

function verdict(ranked) {
  const [best] = ranked;
  const threshold = state.metadata.unsure_below;
  const box = $("#verdict");
  const unsure = typeof threshold === "number" && best.probability < threshold;
  box.classList.toggle("unsure", unsure);
  box.textContent = unsure ? `Not sure (best guess: ${best.label})` : best.label;
}

function render(probabilities, source, timing) {
  const ranked = state.metadata.labels
    .map((label, index) => ({ label, probability: probabilities[index] }))
    .sort((a, b) => b.probability - a.probability);
  verdict(ranked);
  const list = $("#predictions");
  list.replaceChildren(...ranked.map((entry, index) => predictionRow(entry.label, entry.probability, index === 0)));
  list.dataset.source = source;
  state.seq += 1;
  list.dataset.seq = String(state.seq); // tests and the benchmark wait for the answer they caused
  list.dataset.preprocessMs = timing.preprocess.toFixed(2);
  list.dataset.modelMs = timing.model.toFixed(2);
  $("#timing").textContent = `This picture: ${timing.preprocess.toFixed(0)} ms to prepare, ${timing.model.toFixed(0)} ms in the model. Model loaded in ${page.dataset.loadMs} ms.`;
}

async function classify(pixels, source) {
  const started = performance.now();
  const size = state.metadata.image_size;
  const input = new ort.Tensor("float32", pixelsToInput(pixels.rgba, pixels.width, pixels.height, state.metadata), [1, 3, size, size]);
  const prepared = performance.now();
  const outputs = await state.session.run({ [state.session.inputNames[0]]: input });
  const probabilities = Array.from(outputs[state.session.outputNames[0]].data);
  render(probabilities, source, { preprocess: prepared - started, model: performance.now() - prepared });
}

function showPicture(file) {
  stopWebcam();
  if (state.pictureUrl) URL.revokeObjectURL(state.pictureUrl);
  state.pictureUrl = URL.createObjectURL(file);
  const picture = $("#picture");
  picture.src = state.pictureUrl;
  picture.alt = file.name;
  picture.hidden = false;
  $("#placeholder").hidden = true;
}

async function classifyFile(file) {
  showError("");
  showPicture(file);
  let pixels;
  try {
    pixels = await decodeFile(file);
  } catch {
    showError(`${file.name} is not an image this browser can read. Choose a JPEG, PNG, WebP, BMP or GIF file.`);
    return;
  }
  await classify(pixels, file.name);
}

async function startWebcam() {
  // While the camera starts (or switches), a second click would start a second stream.
  $("#webcam").disabled = true;
  try {
    await openWebcam();
  } finally {
    $("#webcam").disabled = false;
  }
}

async function openWebcam() {
  showError("");
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: { ideal: state.facing } }, audio: false });
  } catch (error) {
    showError(`The webcam did not start (${error.name}). Allow the camera for this page; browsers only offer it on localhost or https.`);
    return;
  }
  const video = $("#video");
  video.srcObject = state.stream;
  await video.play();
  video.hidden = false;
  $("#picture").hidden = true;
  $("#placeholder").hidden = true;
  $("#webcam").textContent = "Stop webcam";
  $("#switch-camera").hidden = false;
  requestAnimationFrame(webcamFrame);
}

function stopWebcam() {
  if (!state.stream) return;
  for (const track of state.stream.getTracks()) track.stop();
  state.stream = null;
  $("#video").hidden = true;
  $("#webcam").textContent = "Webcam";
  $("#switch-camera").hidden = true;
}

async function webcamFrame() {
  const video = $("#video");
  if (!state.stream) return;
  if (!state.busy && video.videoWidth > 0) {
    state.busy = true;
    try {
      await classify(bitmapPixels(video, video.videoWidth, video.videoHeight), "webcam");
    } finally {
      state.busy = false;
    }
  }
  requestAnimationFrame(webcamFrame);
}

async function switchCamera() {
  state.facing = state.facing === "user" ? "environment" : "user";
  stopWebcam();
  await startWebcam();
}

async function loadModel(name) {
  page.dataset.state = "loading";
  const started = performance.now();
  const response = await fetch(new URL(`../${name}`, document.baseURI));
  if (!response.ok) throw new Error(`${name} answered ${response.status}`);
  state.session = await ort.InferenceSession.create(await response.arrayBuffer(), { executionProviders: ["wasm"] });
  page.dataset.loadMs = (performance.now() - started).toFixed(0);
  page.dataset.model = name;
  page.dataset.state = "ready";
}

async function start() {
  const response = await fetch(new URL("../metadata.json", document.baseURI));
  if (!response.ok) throw new Error(`metadata.json answered ${response.status}`);
  state.metadata = await response.json();
  const labels = state.metadata.labels;
  $("#labels").textContent = `Tells apart ${labels.length} classes: ${labels.join(", ")}.`;
  // `?model=model.int8.onnx` opens the int8 model first (a link can ask for the smaller one).
  const asked = new URLSearchParams(location.search).get("model");
  const first = state.metadata.int8 && asked === "model.int8.onnx" ? asked : "model.onnx";
  if (state.metadata.int8) $("#model-choice-label").hidden = false;
  $("#model-choice").value = first;
  await loadModel(first);
  for (const control of [$("#file-input"), $("#webcam")]) control.disabled = false;
}

$("#file-input").addEventListener("change", (event) => {
  const [file] = event.target.files;
  if (file) classifyFile(file);
});
$("#webcam").addEventListener("click", () => (state.stream ? stopWebcam() : startWebcam()));
$("#switch-camera").addEventListener("click", switchCamera);
$("#model-choice").addEventListener("change", (event) => {
  loadModel(event.target.value).catch((error) => failed(error));
});

function failed(error) {
  page.dataset.state = "error";
  showError(`The model could not be loaded (${error.message}). Serve this folder over http (python -m http.server) and open web/ from there.`);
}

start().catch(failed);
