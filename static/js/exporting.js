// Export: the model zip of the latest trained job and how to use it.

import { api } from "./api.js";
import { $ } from "./dom.js";

/** How to run the zip's predict.py; its output line shows the top three labels with probabilities. */
function snippet(filename, labels) {
  const example = labels.length ? `\n# prints lines like: photo.jpg ${labels.slice(0, 3).map((label, i) => `${label} ${(labels.length === 2 ? [0.942, 0.058] : [0.942, 0.041, 0.017])[i]}`).join("  ")}` : "";
  return `unzip ${filename} -d my-model\npip install onnxruntime pillow numpy\npython my-model/predict.py photo.jpg${example}`;
}

export class Export {
  constructor() {
    this.link = $("#download-model");
    this.hint = $("#export-hint");
    this.snippet = $("#predict-snippet");
    $("#copy-snippet").addEventListener("click", (event) => this.copy(event.currentTarget));
  }

  setModel(jobId, metrics = {}) {
    if (jobId) {
      const filename = `teachbox-model-${String(jobId).slice(0, 8)}.zip`;
      this.link.href = api.modelUrl(jobId);
      this.link.download = filename;
      this.link.removeAttribute("aria-disabled");
      const labels = metrics.labels || [];
      this.hint.textContent = labels.length ? `The model tells these classes apart: ${labels.join(", ")}.` : "The trained model is ready.";
      this.snippet.textContent = snippet(filename, labels);
    } else {
      this.link.removeAttribute("href");
      this.link.removeAttribute("download");
      this.link.setAttribute("aria-disabled", "true");
      this.hint.textContent = "Train a model first; then download it as a zip.";
      this.snippet.textContent = snippet("teachbox-model.zip", []);
    }
  }

  async copy(button) {
    try {
      await navigator.clipboard.writeText(this.snippet.textContent);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Select the text to copy";
    }
    setTimeout(() => {
      button.textContent = "Copy";
    }, 2000);
  }
}
