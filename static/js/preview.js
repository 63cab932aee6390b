// Preview: classify webcam frames live or one uploaded image, with a confidence bar per class.

import { api } from "./api.js";
import { $, el, percent, showMessage } from "./dom.js";
import { Camera } from "./webcam.js";

const LIVE_INTERVAL_MS = 250;
// How many of the least sure images tried are suggested for labelling.
const SUGGESTIONS = 3;

export class Preview {
  /** `labels.classes()` lists the classes; `labels.add(file, classId)` files an image in one. */
  constructor(labels) {
    this.labels = labels;
    this.pid = null;
    this.lastImage = null;
    this.ready = false;
    this.webcamButton = $("#preview-webcam");
    this.upload = $("#preview-upload");
    this.video = $("#preview-video");
    this.image = $("#preview-image");
    this.error = $("#preview-error");
    this.list = $("#predictions");
    this.objectUrl = null;
    this.tried = []; // images chosen in the preview and not yet added: { file, url, top, probability }
    this.triedCount = 0;
    this.camera = new Camera(this.video, $("#preview-camera"), () => this.webcamStopped());
    this.webcamButton.addEventListener("click", () => this.toggleWebcam());
    this.correct = $("#preview-correct");
    this.correct.addEventListener("submit", (event) => {
      event.preventDefault();
      this.addToClass();
    });
    this.upload.addEventListener("change", () => {
      const [file] = this.upload.files;
      this.upload.value = "";
      if (file) this.classifyFile(file);
    });
  }

  /** Enable or disable the preview for the project's model. */
  setModel(pid, ready) {
    if (pid !== this.pid || !ready) this.reset();
    this.pid = pid;
    this.ready = ready;
    this.webcamButton.disabled = !ready;
    this.upload.disabled = !ready;
    $("#preview-file-label").classList.toggle("disabled", !ready);
    $("#preview-hint").textContent = ready
      ? "Point the webcam at something, or choose an image file. The bars show how sure the model is of each class."
      : "Train a model first; then try it here on the webcam or on an image file.";
  }

  reset() {
    this.camera.stop();
    this.list.replaceChildren();
    $("#preview-unsure").hidden = true;
    for (const tried of this.tried) URL.revokeObjectURL(tried.url);
    this.tried = [];
    this.triedCount = 0;
    this.showSuggestions();
    this.correct.hidden = true;
    this.lastImage = null;
    $("#preview-media").hidden = true;
    showMessage(this.error, "");
  }

  async classifyFile(file) {
    this.camera.stop();
    if (this.objectUrl) URL.revokeObjectURL(this.objectUrl);
    this.objectUrl = URL.createObjectURL(file);
    this.image.src = this.objectUrl;
    this.image.hidden = false;
    this.video.hidden = true;
    $("#preview-media").hidden = false;
    await this.classify(file);
  }

  async classify(file) {
    try {
      const result = await api.predict(this.pid, file);
      this.render(result.predictions);
      $("#preview-unsure").hidden = !result.unsure;
      this.offerCorrection(file, result.predictions);
      if (!this.camera.running) this.remember(file, result.predictions);
      showMessage(this.error, "");
      return true;
    } catch (error) {
      showMessage(this.error, error.message);
      return false;
    }
  }

  render(predictions) {
    const sorted = [...predictions].sort((a, b) => b.probability - a.probability);
    const items = sorted.map((p, index) => {
      const bar = el("span", { class: "bar" });
      bar.style.width = percent(p.probability);
      return el(
        "li",
        { class: index === 0 ? "prediction top" : "prediction", "data-testid": "prediction" },
        el("span", { class: "prediction-label", text: p.label }),
        el("span", { class: "bar-track", role: "presentation" }, bar),
        el("span", { class: "prediction-value", text: percent(p.probability) }),
      );
    });
    this.list.replaceChildren(...items);
  }

  // "This is actually …": the image just classified goes into the class chosen, the top answer first.
  offerCorrection(file, predictions) {
    const best = [...predictions].sort((a, b) => b.probability - a.probability)[0];
    const classes = this.labels.classes();
    const select = $("#preview-class");
    const ids = classes.map((klass) => klass.id).join(",");
    const fresh = select.dataset.ids !== ids;
    if (fresh) {
      select.replaceChildren(...classes.map((klass) => el("option", { value: klass.id, text: klass.name })));
      select.dataset.ids = ids;
    }
    // A new file starts from the model's answer; a webcam keeps what the user picked.
    const top = classes.find((klass) => klass.name === best?.label);
    if (top && (fresh || !this.camera.running)) select.value = top.id;
    if (!this.camera.running) $("#preview-correct-status").textContent = "";
    this.lastImage = file;
    this.correct.hidden = classes.length === 0;
  }

  // Images tried from files (not webcam frames), so that the least sure can be suggested for labelling.
  remember(file, predictions) {
    const best = [...predictions].sort((a, b) => b.probability - a.probability)[0];
    if (!best) return;
    this.tried.push({ file, url: URL.createObjectURL(file), top: best.label, probability: best.probability });
    this.triedCount += 1;
    this.showSuggestions();
  }

  showSuggestions() {
    const least = [...this.tried].sort((a, b) => a.probability - b.probability).slice(0, SUGGESTIONS);
    // Shown once there is a choice to make: two files tried, one still not added.
    $("#preview-suggestions").hidden = this.triedCount < 2 || least.length === 0;
    $("#preview-suggestion-list").replaceChildren(...least.map((tried) => this.suggestion(tried)));
  }

  suggestion(tried) {
    const classes = this.labels.classes();
    const select = el("select", { "aria-label": "Class" }, ...classes.map((klass) => el("option", { value: klass.id, text: klass.name })));
    const top = classes.find((klass) => klass.name === tried.top);
    if (top) select.value = top.id;
    const status = el("span", { class: "hint", role: "status" });
    const button = el("button", {
      type: "button",
      class: "secondary small",
      "data-testid": "add-suggestion",
      text: "Add",
      onclick: async () => {
        button.disabled = true;
        try {
          await this.labels.add(tried.file, select.value);
          this.tried = this.tried.filter((other) => other !== tried);
          URL.revokeObjectURL(tried.url);
          this.showSuggestions();
        } catch (error) {
          status.textContent = error.message;
          button.disabled = false;
        }
      },
    });
    return el("li", { "data-testid": "suggestion" },
      el("img", { src: tried.url, alt: `An image the model took for ${tried.top}`, width: "96", height: "96" }),
      el("span", {}, el("strong", { text: tried.top }), ` (${percent(tried.probability)} sure)`),
      el("label", {}, "Add to ", select), button, status);
  }

  async addToClass() {
    const select = $("#preview-class");
    const status = $("#preview-correct-status");
    const name = select.selectedOptions[0]?.textContent;
    if (!this.lastImage || !select.value) return;
    try {
      await this.labels.add(this.lastImage, select.value);
      status.textContent = `Added to '${name}'. Train again to learn from it.`;
      this.tried = this.tried.filter((tried) => tried.file !== this.lastImage);
      this.showSuggestions();
    } catch (error) {
      status.textContent = error.message;
    }
  }

  async toggleWebcam() {
    if (this.camera.running) {
      this.camera.stop();
      return;
    }
    try {
      await this.camera.start();
    } catch (error) {
      showMessage(this.error, error.message);
      return;
    }
    this.video.hidden = false;
    this.image.hidden = true;
    $("#preview-media").hidden = false;
    $("#preview-camera-label").hidden = false;
    this.webcamButton.setAttribute("aria-pressed", "true");
    this.webcamButton.textContent = "Stop webcam";
    this.loop();
  }

  async loop() {
    while (this.camera.running && this.ready) {
      const started = performance.now();
      const frame = await this.camera.grab(320, "frame.jpg");
      if (frame && !(await this.classify(frame))) break;
      const wait = LIVE_INTERVAL_MS - (performance.now() - started);
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  webcamStopped() {
    this.webcamButton.setAttribute("aria-pressed", "false");
    this.webcamButton.textContent = "Webcam";
    $("#preview-camera-label").hidden = true;
    this.video.hidden = true;
    if (this.image.hidden) $("#preview-media").hidden = true;
  }
}
