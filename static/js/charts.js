// Live loss and accuracy curves, train against validation, drawn by the vendored Chart.js.

const TRAIN = { label: "Training", colour: "#1a56db", dash: [] };
const VAL = { label: "Validation", colour: "#c2410c", dash: [6, 4] };
const STAGE_NAMES = { head: "classifier head", finetune: "fine-tuning" };

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
      for (const set of chart.data.datasets) set.data = [];
      chart.update();
    }
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
