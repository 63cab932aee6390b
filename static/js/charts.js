// Live loss and accuracy curves, train against validation, drawn by the vendored Chart.js.

import { modeName } from "./modes.js";

const TRAIN = { label: "Training", colour: "#1a56db", dash: [] };
const VAL = { label: "Validation", colour: "#c2410c", dash: [6, 4] };
const STAGE_NAMES = { head: "classifier head", finetune: "fine-tuning" };
// A comparison: one colour per mode (named as the server names it); training solid, validation dashed, as in a single run.
const RUN_COLOURS = { transfer: "#1a56db", finetune: "#9333ea" };

function dataset(series) {
  return {
    label: series.label,
    data: [],
    borderColor: series.colour,
    backgroundColor: series.colour,
    borderDash: series.dash,
    borderWidth: 2,
    pointRadius: 0,
    pointHitRadius: 8,
    tension: 0.2,
  };
}

function lineChart(canvas, yAxis) {
  const { Chart } = window;
  return new Chart(canvas, {
    type: "line",
    data: { labels: [], datasets: [dataset(TRAIN), dataset(VAL)] },
    options: {
      animation: false,
      maintainAspectRatio: false,
      responsive: true,
      interaction: { mode: "index", intersect: false },
      scales: {
        x: { title: { display: true, text: "Epoch" }, ticks: { maxTicksLimit: 8, autoSkip: true } },
        y: yAxis,
      },
      plugins: {
        legend: { position: "bottom", labels: { boxHeight: 2, boxWidth: 18 } },
        tooltip: { callbacks: { title: (items) => items[0]?.chart.data.stages?.[items[0].dataIndex] || "" } },
      },
    },
  });
}

export class TrainingCharts {
  constructor(lossCanvas, accCanvas) {
    this.loss = lineChart(lossCanvas, { beginAtZero: true, title: { display: true, text: "Loss" } });
    this.acc = lineChart(accCanvas, {
      min: 0,
      max: 1,
      title: { display: true, text: "Accuracy" },
      ticks: { callback: (value) => `${Math.round(value * 100)}%` },
    });
    this.reset();
  }

  reset() {
    for (const chart of [this.loss, this.acc]) {
      chart.data.labels = [];
      chart.data.stages = [];
      if (this.overlaid) chart.data.datasets = [dataset(TRAIN), dataset(VAL)];
      for (const set of chart.data.datasets) set.data = [];
      chart.update();
    }
    this.overlaid = false;
  }

  /** Both runs of a comparison overlaid, each counted from its own first epoch: `runs` maps mode to epochs. */
  showRuns(runs) {
    const length = Math.max(0, ...Object.values(runs).map((history) => history.length));
    const series = [
      [this.loss, "train_loss", "val_loss"],
      [this.acc, "train_acc", "val_acc"],
    ];
    for (const [chart, trainKey, valKey] of series) {
      chart.data.labels = Array.from({ length }, (_, i) => String(i + 1));
      chart.data.stages = Array.from({ length }, (_, i) => `Epoch ${i + 1} of each run`);
      chart.data.datasets = Object.entries(runs).flatMap(([run, history]) => {
        const name = modeName(run);
        const colour = RUN_COLOURS[run];
        const train = dataset({ label: `${name}, training`, colour, dash: [] });
        const val = dataset({ label: `${name}, validation`, colour, dash: [6, 4] });
        train.data = history.map((epoch) => epoch[trainKey]);
        val.data = history.map((epoch) => epoch[valKey]);
        return [train, val];
      });
      chart.update("none");
    }
    this.overlaid = true;
  }

  /** Add one epoch (an `epoch` event or a history entry); epochs of all stages share one axis. */
  add(epoch, redraw = true) {
    const n = this.loss.data.labels.length + 1;
    const stage = `Epoch ${epoch.epoch} of the ${STAGE_NAMES[epoch.stage] || epoch.stage}`;
    const points = [
      [this.loss, epoch.train_loss, epoch.val_loss],
      [this.acc, epoch.train_acc, epoch.val_acc],
    ];
    for (const [chart, train, val] of points) {
      chart.data.labels.push(String(n));
      chart.data.stages.push(stage);
      chart.data.datasets[0].data.push(train);
      chart.data.datasets[1].data.push(val);
      if (redraw) chart.update("none");
    }
  }

  show(history) {
    this.reset();
    for (const epoch of history) this.add(epoch, false);
    this.loss.update("none");
    this.acc.update("none");
  }
}
