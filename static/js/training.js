// The training panel: mode and Advanced parameters, Train and Cancel, and the live event stream of a job.

import { modeName } from "./modes.js";
import { api } from "./api.js";
import { TrainingCharts } from "./charts.js";
import { $, duration, emit, percent, plural, showMessage } from "./dom.js";
import { estimateText, overfittingWarning } from "./insights.js";

const STAGES = {
  embed: "Reading the images",
  head: "Training the classifier",
  finetune: "Fine-tuning the backbone",
  refit: "Training the final model on every image",
  export: "Saving the model",
};
const ACTIVE = new Set(["queued", "running"]);
const INTERRUPTED = "The server restarted while this model was training, so the training stopped. Press Train model to train again.";
const jobKey = (pid) => `teachbox.job.${pid}`;

export class TrainingPanel {
  constructor(config) {
    this.config = config;
    this.form = $("#train-form");
    this.trainButton = $("#train");
    this.cancelButton = $("#cancel");
    this.progress = $("#progress");
    this.statusLine = $("#train-status");
    this.detail = $("#train-detail");
    this.errorLine = $("#train-error");
    this.warning = $("#overfit-warning");
    this.pid = null;
    this.jobId = null;
    this.source = null;
    this.charts = null;
    this.classes = [];
    this.epochsTouched = false;
    this.bind();
    this.resetParams();
  }

  bind() {
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.train();
    });
    this.cancelButton.addEventListener("click", () => this.cancel());
    $("#reset-params").addEventListener("click", () => this.resetParams());
    for (const radio of this.form.elements.mode) radio.addEventListener("change", () => this.onModeChange());
    this.field("epochs").addEventListener("input", () => {
      this.epochsTouched = true;
    });
    this.field("backbone").addEventListener("change", () => this.onBackboneChange());
  }

  field(name) {
    return this.form.elements[name];
  }

  get mode() {
    return this.form.elements.mode.value;
  }

  // ------------------------------------------------------------------ parameters

  resetParams() {
    const defaults = this.config.defaults[this.mode];
    for (const [name, value] of Object.entries(defaults)) {
      const input = this.field(name);
      if (!input) continue;
      if (input.type === "checkbox") input.checked = Boolean(value);
      else input.value = String(value);
    }
    this.epochsTouched = false;
    this.onBackboneChange();
    this.onModeChange();
  }

  onModeChange() {
    const finetune = this.mode === "finetune";
    for (const node of this.form.querySelectorAll(".finetune-only")) {
      node.classList.toggle("inactive", !finetune);
      for (const input of node.querySelectorAll("input, select")) input.disabled = !finetune;
    }
    if (!this.epochsTouched) this.field("epochs").value = String(this.config.defaults[this.mode].epochs);
  }

  onBackboneChange() {
    const limits = this.config.unfreeze[this.field("backbone").value];
    const blocks = this.field("unfreeze_blocks");
    if (!limits || !blocks) return;
    blocks.max = String(limits.max);
    if (Number(blocks.value) > limits.max) blocks.value = String(limits.max);
  }

  params() {
    const body = { mode: this.mode, backbone: this.field("backbone").value };
    if (this.field("int8")) body.int8 = this.field("int8").checked;
    for (const name of ["epochs", "batch_size", "learning_rate", "unfreeze_blocks"]) {
      const input = this.field(name);
      if (!input || input.disabled) continue;
      const label = this.form.querySelector(`label[for="${input.id}"]`).textContent;
      if (!input.checkValidity()) throw new Error(`${label}: ${input.validationMessage}`);
      if (input.dataset.above !== undefined && Number(input.value) <= Number(input.dataset.above)) {
        throw new Error(`${label}: the value must be greater than ${input.dataset.above}.`);
      }
      body[name] = Number(input.value);
    }
    return body;
  }

  /** The same minimums the server checks, said before a request is made. */
  missing() {
    const { minImages } = this.config;
    if (this.classes.length < 2) return "Training needs at least 2 classes. Add another class with images.";
    if (this.classes.some((klass) => klass.busy)) return "Wait until the uploads finish.";
    const short = this.classes.filter((klass) => klass.count < minImages);
    if (short.length) {
      const list = short.map((klass) => `'${klass.name}' has ${klass.count}`).join(", ");
      const one = short.length === 1;
      return `Each class needs at least ${minImages} images: ${list}. Add images to ${one ? "it" : "them"}, or remove ${one ? "that class" : "those classes"}.`;
    }
    return null;
  }

  notTrained() {
    return `Not trained yet. Give every class at least ${this.config.minImages} images, then press Train model.`;
  }

  setClasses(classes) {
    this.classes = classes;
    if (!this.running) showMessage(this.errorLine, "");
  }

  // ------------------------------------------------------------------ jobs

  get running() {
    return this.source !== null;
  }

  /** Show the project's job: reconnect to a running one, else show its latest model or last outcome. */
  async show(project) {
    this.disconnect();
    this.pid = project.id;
    this.jobId = null;
    this.runMode = null;
    for (const radio of this.form.elements.mode) radio.checked = radio.defaultChecked;
    this.resetParams();
    this.idle(this.notTrained());
    this.charts?.reset();
    $("#charts").hidden = true;
    showMessage(this.warning, "");
    const model = project.model_job_id ? await this.fetchJob(project.model_job_id) : null;
    const stored = localStorage.getItem(jobKey(project.id));
    const attempt = stored && stored !== project.model_job_id ? await this.fetchJob(stored) : null;
    if (this.pid !== project.id) return; // another project was opened meanwhile
    const newest = [attempt, model].filter(Boolean).sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)))[0];
    const last = project.active_job || newest;
    // An earlier model stays usable for preview and export while a later attempt runs or after it failed.
    if (model && last && model.id !== last.id) emit("model-ready", { jobId: model.id, metrics: model.metrics || {} });
    if (!last) return;
    if (last.kind === "compare") {
      localStorage.setItem(jobKey(project.id), last.id);
      emit("compare-job", last); // comparing.js shows it
      return;
    }
    this.jobId = last.id;
    this.applyParams(last.params || {});
    if (ACTIVE.has(last.status)) {
      // Remembered, so that after a restart a reload still says what became of it.
      localStorage.setItem(jobKey(project.id), last.id);
      this.connect(last.id);
    } else this.showFinished(last);
  }

  /** Show the parameters a job was started with, so the form says what is running or ran. */
  applyParams(params) {
    if (!params.mode) return;
    for (const radio of this.form.elements.mode) radio.checked = radio.value === params.mode;
    this.epochsTouched = false;
    this.onModeChange();
    for (const name of ["epochs", "batch_size", "learning_rate", "unfreeze_blocks", "backbone"]) {
      if (params[name] !== null && params[name] !== undefined && this.field(name)) this.field(name).value = String(params[name]);
    }
    if (this.field("int8")) this.field("int8").checked = Boolean(params.int8);
    this.onBackboneChange();
    this.runMode = params.mode;
    this.epochsTouched = Number(this.field("epochs").value) !== this.config.defaults[this.mode].epochs;
  }

  async fetchJob(jid) {
    try {
      return await api.getJob(jid);
    } catch {
      if (localStorage.getItem(jobKey(this.pid)) === jid) localStorage.removeItem(jobKey(this.pid));
      return null;
    }
  }

  async train() {
    showMessage(this.errorLine, "");
    const missing = this.missing();
    if (missing) {
      showMessage(this.errorLine, missing);
      return;
    }
    let params;
    try {
      params = this.params();
    } catch (error) {
      showMessage(this.errorLine, error.message);
      return;
    }
    this.trainButton.disabled = true;
    try {
      const job = await api.startJob(this.pid, params);
      this.runMode = params.mode;
      localStorage.setItem(jobKey(this.pid), job.id);
      this.jobId = job.id;
      emit("job-started", job);
      this.connect(job.id);
    } catch (error) {
      showMessage(this.errorLine, error.message);
      this.trainButton.disabled = false;
    }
  }

  async cancel() {
    if (!this.jobId) return;
    this.cancelButton.disabled = true;
    this.statusLine.textContent = "Cancelling…";
    try {
      await api.cancelJob(this.jobId);
    } catch (error) {
      showMessage(this.errorLine, error.message);
      this.cancelButton.disabled = false;
    }
  }

  connect(jid) {
    this.disconnect();
    this.busy("Waiting for the trainer…");
    this.showCharts([]);
    showMessage(this.warning, "");
    this.history = [];
    const source = new EventSource(api.eventsUrl(jid));
    this.source = source;
    const handlers = {
      started: (e) => this.onStarted(e),
      progress: (e) => this.onProgress(e),
      epoch: (e) => this.onEpoch(e),
      log: (e) => this.onLog(e),
      done: (e) => this.onDone(e),
      failed: (e) => this.onEnd("failed", `Training failed: ${e.error}`),
      cancelled: (e) => this.onEnd("cancelled", e.message || "Training was cancelled."),
      interrupted: () => this.onEnd("interrupted", INTERRUPTED),
    };
    for (const [type, handle] of Object.entries(handlers)) {
      source.addEventListener(type, (message) => {
        if (this.source === source) handle(JSON.parse(message.data));
      });
    }
    source.addEventListener("error", () => this.onStreamError(source, jid));
    source.addEventListener("open", () => {
      if (this.source === source && this.reconnecting) this.checkAfterReconnect(source, jid);
    });
  }

  /** After a lost connection, a job may have ended without a terminal event (the server restarted). */
  async checkAfterReconnect(source, jid) {
    this.reconnecting = false;
    this.detail.textContent = "";
    const job = await api.getJob(jid).catch(() => null);
    if (this.source === source && job && !ACTIVE.has(job.status)) {
      this.disconnect();
      this.showFinished(job);
    }
  }

  disconnect() {
    if (this.source) this.source.close();
    this.source = null;
  }

  async onStreamError(source, jid) {
    if (this.source !== source) return;
    if (source.readyState === EventSource.CONNECTING) {
      this.reconnecting = true;
      this.detail.textContent = "Connection lost; reconnecting…";
      return;
    }
    // The stream was closed without a terminal event: ask the job what became of it.
    this.disconnect();
    try {
      const job = await api.getJob(jid);
      if (ACTIVE.has(job.status)) this.connect(jid);
      else this.showFinished(job);
    } catch (error) {
      this.idle(`Lost track of the training job: ${error.message}`);
    }
  }

  onStarted(e) {
    this.stages = e.stages;
    this.started = e;
    this.runMode = e.mode;
    this.nVal = e.n_val;
    this.history = [];
    this.charts?.reset();
    const images = e.validation === "cross-validation"
      ? `${plural(e.n_train, "image")}, each checked by a model that did not train on it (cross-validation), then all used for the final model`
      : `${plural(e.n_train, "training image")}, ${plural(e.n_val, "validation image")}`;
    this.detail.textContent = `${modeName(e.mode)} with ${e.backbone} on ${e.device.toUpperCase()}: ${images}.`;
    this.statusLine.textContent = "Training started.";
  }

  stageTitle(stage) {
    const index = this.stages ? this.stages.indexOf(stage) : -1;
    const step = index >= 0 ? `Step ${index + 1} of ${this.stages.length}: ` : "";
    return `${step}${STAGES[stage] || stage}`;
  }

  onProgress(e) {
    const epochs = this.epochsOf(e.stage);
    const total = Math.max(1, e.total);
    // Within fine-tuning the bar covers all its epochs; elsewhere the units of the stage.
    const fraction = e.epoch && epochs ? (e.epoch - 1 + e.done / total) / epochs : e.done / total;
    this.progress.max = 1;
    this.progress.value = Math.min(1, fraction);
    const epoch = e.epoch ? `, epoch ${e.epoch}${epochs ? ` of ${epochs}` : ""}` : "";
    const unit = e.stage === "embed" ? "images" : "batches";
    const eta = e.eta_s !== null && e.eta_s !== undefined && e.done < e.total ? ` · about ${duration(e.eta_s)} left` : "";
    this.statusLine.textContent = `${this.stageTitle(e.stage)}${epoch} (${e.done} of ${e.total} ${unit})${eta}`;
  }

  epochsOf(stage) {
    if (stage === "finetune" && this.started) return this.started.epochs;
    const last = this.history.findLast((h) => h.stage === stage);
    return last ? last.epochs : null;
  }

  onEpoch(e) {
    this.history.push(e);
    this.charts.add(e);
    this.progress.max = 1;
    this.progress.value = e.epoch / e.epochs;
    this.statusLine.textContent = `${this.stageTitle(e.stage)}: epoch ${e.epoch} of ${e.epochs} · validation accuracy ${percent(e.val_acc)}`;
    showMessage(this.warning, overfittingWarning(this.history, { nVal: this.nVal, mode: this.runMode }));
  }

  onLog(e) {
    this.detail.textContent = e.message;
  }

  onDone(e) {
    this.disconnect();
    this.progress.max = 1;
    this.progress.value = 1;
    const metrics = { ...e.metrics, val_accuracy: e.val_accuracy, train_seconds: e.train_seconds };
    this.finish(metrics);
  }

  finish(metrics) {
    const estimate = metrics.estimate;
    this.idle(estimate
      ? `Trained in ${duration(metrics.train_seconds || 0)}. Expected accuracy on new images: ${estimateText(estimate)}.`
      : `Trained in ${duration(metrics.train_seconds || 0)}: ${percent(metrics.val_accuracy || 0)} of the validation images are classified correctly.`);
    const history = metrics.history || this.history || [];
    if (history.length) this.showCharts(history);
    this.nVal = metrics.n_val ?? this.nVal;
    showMessage(this.warning, overfittingWarning(history, { nVal: this.nVal, mode: this.runMode, kept: metrics.val_accuracy ?? null }));
    emit("model-ready", { jobId: this.jobId, metrics });
  }

  onEnd(status, message) {
    this.disconnect();
    this.idle(message);
    if (status === "failed") this.statusLine.classList.add("failed");
    emit("job-ended", { jobId: this.jobId, status });
  }

  showFinished(job) {
    if (job.status === "succeeded") {
      this.finish(job.metrics || {});
    } else {
      const messages = {
        failed: `The last training failed: ${job.error || "no reason was given"}.`,
        cancelled: "The last training was cancelled.",
        interrupted: INTERRUPTED,
      };
      this.idle(messages[job.status] || this.notTrained());
    }
  }

  showCharts(history) {
    $("#charts").hidden = false;
    if (!this.charts) this.charts = new TrainingCharts($("#loss-chart"), $("#acc-chart"));
    this.charts.show(history);
  }

  busy(message) {
    this.statusLine.textContent = message;
    this.statusLine.classList.remove("failed");
    this.detail.textContent = "";
    this.progress.removeAttribute("value");
    this.trainButton.disabled = true;
    this.trainButton.textContent = "Training…";
    this.cancelButton.hidden = false;
    this.cancelButton.disabled = false;
  }

  idle(message) {
    this.statusLine.textContent = message;
    this.statusLine.classList.remove("failed");
    this.trainButton.disabled = false;
    this.trainButton.textContent = "Train model";
    this.cancelButton.hidden = true;
    if (!this.jobId) this.progress.value = 0;
  }
}
