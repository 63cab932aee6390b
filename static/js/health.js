// Data health: what in the images will mislead training, shown before training, and "would more images help?".

import { api } from "./api.js";
import { $, el, percent } from "./dom.js";
import { correctionButton } from "./insights.js";

const TITLES = {
  too_few_images: "Too few images",
  class_imbalance: "Unbalanced classes",
  duplicate_across_classes: "The same picture in two classes",
  duplicate_across_split: "Copies between training and validation",
  duplicate_within_class: "Copies within a class",
  near_duplicate_across_classes: "Near-copies in two classes",
  near_duplicate_across_split: "Near-copies between training and validation",
  near_duplicate_within_class: "Near-copies within a class",
  small_images: "Small images",
  uniform_class: "A class whose images are all alike",
  unreadable_images: "Unreadable files",
  needs_more_images: "More images would help",
  suspected_mislabels: "Images that may be in the wrong class",
};
// Wait for uploads to settle before checking again.
const SETTLE_MS = 1500;

function curveChart(canvas) {
  const { Chart } = window;
  return new Chart(canvas, {
    type: "line",
    data: { labels: [], datasets: [] },
    options: {
      animation: false,
      maintainAspectRatio: false,
      responsive: true,
      scales: {
        x: { title: { display: true, text: "Share of the training images" } },
        y: { min: 0, max: 1, title: { display: true, text: "Accuracy" }, ticks: { callback: (value) => `${Math.round(value * 100)}%` } },
      },
      plugins: { legend: { position: "bottom", labels: { boxHeight: 2, boxWidth: 18 } } },
    },
  });
}

export class HealthPanel {
  /** `labels.move(imageId, className)` files a suspected mislabel under the class predicted for it. */
  constructor(labels = null) {
    this.labels = labels;
    this.status = $("#health-status");
    this.list = $("#health-findings");
    this.curveBlock = $("#health-curve");
    this.chart = null;
    this.pid = null;
    this.timer = null;
    this.counts = "";
    this.generation = 0;
    $("#health-refresh").addEventListener("click", () => this.refresh());
  }

  show(project) {
    this.pid = project.id;
    this.counts = "";
    this.list.replaceChildren();
    this.curveBlock.hidden = true;
    this.status.textContent = "Add images to the classes to check them before training.";
  }

  /** After uploads and deletions settle, check again (only when the counts changed). */
  classesChanged(summary) {
    const counts = JSON.stringify(summary.map((klass) => [klass.id, klass.count]));
    if (summary.some((klass) => klass.busy) || counts === this.counts) return;
    this.counts = counts;
    clearTimeout(this.timer);
    if (!summary.some((klass) => klass.count > 0)) return;
    this.timer = setTimeout(() => this.refresh(), SETTLE_MS);
  }

  async refresh() {
    if (!this.pid) return;
    const generation = ++this.generation;
    const pid = this.pid;
    this.status.textContent = "Checking the images…";
    try {
      const report = await api.getHealth(pid);
      if (generation === this.generation && pid === this.pid) this.render(report);
    } catch (error) {
      if (generation !== this.generation) return;
      this.list.replaceChildren();
      this.curveBlock.hidden = true;
      this.status.textContent = error.message;
    }
  }

  render(report) {
    const warnings = report.findings.filter((finding) => finding.severity === "warning").length;
    this.status.textContent = report.findings.length
      ? `${warnings ? `${warnings} to fix` : "Nothing to fix"}, ${report.findings.length - warnings} to consider. Checked just now.`
      : "No problems found in the images. Checked just now.";
    this.list.replaceChildren(...report.findings.map((finding) => el("li", { class: `finding ${finding.severity}`, "data-kind": finding.kind },
      el("span", { class: "severity", text: finding.severity === "warning" ? "Fix" : "Note" }),
      el("div", {}, el("strong", { text: TITLES[finding.kind] || finding.kind }), el("p", { text: finding.message }), ...this.suspects(finding)))));
    this.showCurve(report.learning_curve);
  }

  // Suspected mislabels: each thumbnail with its class, what a model that never saw it says, and the one-click fix.
  suspects(finding) {
    if (!finding.suspects?.length) return [];
    const items = finding.suspects.map((suspect) => {
      const figure = suspect.thumbnail_url
        ? el("img", { src: suspect.thumbnail_url, alt: `An image filed as ${suspect.labelled} that looks like ${suspect.predicted}`, loading: "lazy", width: "96", height: "96" })
        : el("span", { class: "no-thumb", text: suspect.image_id || "image" });
      const caption = el("span", {}, "Filed as ", el("strong", { text: suspect.labelled }), ", looks like ", el("strong", { text: suspect.predicted }), ` (${percent(suspect.probability)} sure)`);
      const item = el("li", { "data-testid": "suspect" }, figure, caption);
      if (suspect.image_id && this.labels) item.append(correctionButton(item, suspect, this.labels));
      return item;
    });
    return [el("ul", { class: "misclassified suspects" }, ...items)];
  }

  showCurve(curve) {
    this.curveBlock.hidden = !curve;
    if (!curve) return;
    if (!this.chart) this.chart = curveChart($("#curve-chart"));
    this.chart.data.labels = curve.fractions.map((f, i) => `${percent(f)} (${curve.n_train[i]})`);
    const overall = { label: "All classes", data: curve.accuracy, borderColor: "#1f2937", backgroundColor: "#1f2937", borderWidth: 3, pointRadius: 3 };
    const palette = ["#1a56db", "#c2410c", "#0f7b3f", "#9333ea", "#b42318", "#0e7490"];
    const classes = Object.entries(curve.per_class).map(([label, values], i) => ({
      label, data: values, borderColor: palette[i % palette.length], backgroundColor: palette[i % palette.length], borderWidth: 1.5, borderDash: [4, 3], pointRadius: 2,
    }));
    this.chart.data.datasets = [overall, ...classes];
    this.chart.update("none");
    const more = curve.needs_more.length ? ` Classes that need more images: ${curve.needs_more.join(", ")}.` : "";
    $("#curve-summary").textContent = `${curve.summary}${more}`;
  }
}
