// Compare: both modes trained on the same split, their curves overlaid, a results table and the recommendation.

import { api } from "./api.js";
import { modeName } from "./modes.js";
import { $, $$, duration, el, emit, percent, plural, showMessage } from "./dom.js";

const MODES = ["transfer", "finetune"];
const STAGES = { embed: "Reading the images", head: "Training the classifier", finetune: "Fine-tuning", export: "Saving the model" };
const ACTIVE = new Set(["queued", "running"]);
const jobKey = (pid) => `teachbox.job.${pid}`;

const megabytes = (bytes) => `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`;
const points = (gap) => `${gap >= 0 ? "+" : "−"}${Math.abs(Math.round(gap * 100))} points`;

/** The table's rows: a heading and how to show one mode's value. */
const ROWS = [
  ["Validation accuracy", (m) => `${percent(m.val_accuracy)} (95% interval ${percent(m.val_interval[0])}–${percent(m.val_interval[1])})`],
  ["Accuracy per class", (m) => Object.entries(m.per_class).map(([label, v]) => `${label} ${v === null ? "–" : percent(v)}`).join(", ")],
  ["Training time", (m) => duration(m.train_seconds)],
  ["Model size", (m) => megabytes(m.model_bytes)],
  ["Predict time (one image)", (m) => `${m.predict_ms_p50.toFixed(1)} ms`],
  ["Training − validation accuracy", (m) => `${points(m.train_val_gap.best)} (${m.train_val_gap.best > 0.1 ? "memorises" : "generalises"})`],
];

export class ComparePanel {
  constructor(training) {
    this.training = training;
    this.button = $("#compare");
    this.result = $("#compare-result");
    this.runsBlock = $("#compare-runs");
    this.kept = $("#compare-kept");
    this.source = null;
    this.job = null;
    this.button.addEventListener("click", () => this.start());
  }

  reset() {
    this.disconnect();
    this.job = null;
    this.result.hidden = true;
    this.runsBlock.hidden = true;
    this.button.disabled = false;
  }

  async start() {
    const { training } = this;
    showMessage(training.errorLine, "");
    const missing = training.missing();
    let params;
    try {
      if (missing) throw new Error(missing);
      params = training.params();
    } catch (error) {
      showMessage(training.errorLine, error.message);
      return;
    }
    delete params.mode;
    // The form's epochs belong to the chosen mode; each run uses its own default unless they were changed.
    if (!training.epochsTouched) delete params.epochs;
    this.button.disabled = true;
    try {
      const job = await api.startCompare(training.pid, params);
      localStorage.setItem(jobKey(training.pid), job.id);
      emit("job-started", job);
      this.follow({ ...job, kind: "compare" });
    } catch (error) {
      showMessage(training.errorLine, error.message);
      this.button.disabled = false;
    }
  }

  /** Show a comparison job: follow it while it runs, else its result or how it ended. */
  show(job) {
    if (ACTIVE.has(job.status)) this.follow(job);
    else this.finished(job);
  }

  follow(job) {
    this.disconnect();
    this.job = job;
    const { training } = this;
    training.jobId = job.id;
    training.busy("Comparing: waiting for the trainer…");
    this.button.disabled = true;
    this.result.hidden = true;
    this.runsBlock.hidden = false;
    this.runs = { transfer: [], finetune: [] };
    this.stages = {};
    for (const mode of MODES) this.setRun(mode, 0, "Waiting");
    training.showCharts([]);
    training.charts.showRuns(this.runs);
    const source = new EventSource(api.eventsUrl(job.id));
    this.source = source;
    const handlers = {
      started: (e) => this.onStarted(e),
      progress: (e) => this.onProgress(e),
      epoch: (e) => this.onEpoch(e),
      log: (e) => {
        training.detail.textContent = e.message;
      },
      done: () => this.onEnd(),
      failed: () => this.onEnd(),
      cancelled: () => this.onEnd(),
      interrupted: () => this.onEnd(),
    };
    for (const [type, handle] of Object.entries(handlers)) {
      source.addEventListener(type, (message) => {
        if (this.source === source) handle(JSON.parse(message.data));
      });
    }
    source.addEventListener("error", () => {
      if (this.source === source && source.readyState === EventSource.CLOSED) this.onEnd();
    });
  }

  disconnect() {
    if (this.source) this.source.close();
    this.source = null;
  }

  setRun(mode, fraction, text) {
    $(`progress[data-run="${mode}"]`).value = Math.min(1, fraction);
    $(`[data-run-status="${mode}"]`).textContent = text;
  }

  onStarted(e) {
    this.stages[e.run] = e.stages;
    this.setRun(e.run, 0, `${plural(e.n_train, "training image")}, ${plural(e.n_val, "validation image")}`);
    this.training.statusLine.textContent = `Comparing: ${modeName(e.run)} (run ${MODES.indexOf(e.run) + 1} of 2)…`;
  }

  onProgress(e) {
    if (!e.run) {
      this.training.statusLine.textContent = "Checking the data's health between the runs…";
      return;
    }
    const stages = this.stages[e.run] || [e.stage];
    const index = Math.max(0, stages.indexOf(e.stage));
    const within = e.total ? e.done / e.total : 0;
    const epochs = e.epoch ? this.runs[e.run].filter((h) => h.stage === e.stage).length : 0;
    this.setRun(e.run, (index + within) / stages.length, `${STAGES[e.stage] || e.stage}${e.epoch ? `, epoch ${Math.max(e.epoch, epochs)}` : ""}: ${e.done} of ${e.total}`);
  }

  onEpoch(e) {
    this.runs[e.run].push(e);
    this.training.charts.showRuns(this.runs);
    const stages = this.stages[e.run] || [e.stage];
    const index = Math.max(0, stages.indexOf(e.stage));
    this.setRun(e.run, (index + e.epoch / e.epochs) / stages.length, `${STAGES[e.stage] || e.stage}: epoch ${e.epoch} of ${e.epochs} · validation ${percent(e.val_acc)}`);
  }

  /** The stream ended: read the job, which holds the report once it succeeded. */
  async onEnd() {
    const jid = this.job?.id;
    this.disconnect();
    if (!jid) return;
    const job = await api.getJob(jid).catch(() => null);
    if (this.job?.id !== jid) return;
    if (job && ACTIVE.has(job.status)) this.follow(job);
    else if (job) this.finished(job);
    else this.training.idle("Lost track of the comparison. Reload the page to see how it ended.");
  }

  finished(job) {
    this.job = job;
    const { training } = this;
    training.jobId = job.id;
    this.button.disabled = false;
    if (job.status !== "succeeded") {
      const why = { failed: `The comparison failed: ${job.error || "no reason was given"}`, cancelled: "The comparison was cancelled." };
      training.idle(why[job.status] || "The comparison was interrupted: the server stopped. Press Compare both modes to run it again.");
      if (job.status === "failed") training.statusLine.classList.add("failed");
      return;
    }
    const report = job.metrics;
    training.idle(`Compared in ${duration(report.seconds)} on ${plural(report.n_val, "validation image")}.`);
    this.runsBlock.hidden = false;
    for (const mode of MODES) this.setRun(mode, 1, `Done: ${percent(report.modes[mode].val_accuracy)} validation accuracy`);
    training.showCharts([]);
    training.charts.showRuns(Object.fromEntries(MODES.map((mode) => [mode, report.modes[mode].history.filter((h) => h.stage !== "export")])));
    this.render(report, job.kept_mode);
    if (job.kept_mode) this.announce(job.kept_mode);
  }

  render(report, keptMode) {
    const best = report.recommendation;
    const head = el("tr", {}, el("th", { scope: "col", text: "" }), ...MODES.map((mode) => el("th", { scope: "col", class: mode === best ? "recommended" : "", text: mode === best ? `${modeName(mode)} (recommended)` : modeName(mode) })));
    const rows = ROWS.map(([title, show]) => el("tr", {}, el("th", { scope: "row", text: title }), ...MODES.map((mode) => el("td", { class: mode === best ? "recommended" : "", text: show(report.modes[mode]) }))));
    const keep = el("tr", { class: "keep-row" }, el("th", { scope: "row", text: "" }), ...MODES.map((mode) => el("td", { class: mode === best ? "recommended" : "" }, this.keepButton(mode, best, keptMode))));
    $("#compare-table").replaceChildren(el("thead", {}, head), el("tbody", {}, ...rows, keep));
    $("#recommendation").replaceChildren(el("strong", { text: `Recommended: ${modeName(best)}. ` }), report.reason);
    showMessage(this.kept, keptMode ? "" : "Neither model is the project's model yet: keep one to use it in Preview and Export.");
    this.kept.hidden = false;
    this.result.hidden = false;
  }

  keepButton(mode, best, keptMode) {
    const kept = mode === keptMode;
    return el("button", {
      type: "button",
      class: mode === best ? "primary" : "secondary",
      "data-testid": "keep-model",
      "data-mode": mode,
      "aria-pressed": String(kept),
      text: kept ? "Kept as the project's model" : "Keep this model",
      onclick: () => this.keep(mode),
    });
  }

  async keep(mode) {
    const jid = this.job.id;
    for (const button of $$('[data-testid="keep-model"]')) button.disabled = true;
    try {
      const job = await api.keepModel(jid, mode);
      this.job = job;
      this.render(job.metrics, job.kept_mode);
      this.announce(mode);
    } catch (error) {
      showMessage(this.training.errorLine, error.message);
      for (const button of $$('[data-testid="keep-model"]')) button.disabled = false;
    }
  }

  announce(mode) {
    this.kept.textContent = `The ${modeName(mode).toLowerCase()} model is the project's model: Preview and Export use it.`;
    emit("model-ready", { jobId: this.job.id, metrics: { labels: this.job.metrics.labels } });
  }
}
