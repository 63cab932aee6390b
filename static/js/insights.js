// "Under the hood": per-class accuracy, the confusion matrix, the mistakes, and the overfitting warning.

import { $, el, percent, plural, showMessage } from "./dom.js";

const GAP_WARN = 0.1;
const GAP_GROWTH = 0.05;
const TAIL = 3;

const mean = (values) => values.reduce((a, b) => a + b, 0) / values.length;

/**
 * A plain-language warning when training accuracy pulls away from validation accuracy, else "".
 * With few validation images one image moves the accuracy a lot, so the gap must also exceed the
 * noise of a binomial proportion on `nVal` images before it counts. `kept` is the accuracy of the
 * model finally kept (the engine keeps a better epoch than the last where there is one), once training is over.
 */
export function overfittingWarning(history, { nVal = 0, mode = "transfer", kept = null } = {}) {
  if (history.length < 2 * TAIL) return "";
  const noise = nVal > 0 ? 1.5 * Math.sqrt(0.25 / nVal) : 0;
  const gaps = history.map((h) => h.train_acc - h.val_acc);
  const recent = mean(gaps.slice(-TAIL));
  const early = Math.min(...gaps.slice(0, Math.max(TAIL, Math.floor(gaps.length / 2))));
  const valLosses = history.map((h) => h.val_loss);
  const lossRising = mean(valLosses.slice(-TAIL)) > 1.25 * Math.min(...valLosses) && history.at(-1).train_loss < history[0].train_loss;
  if (!(recent >= Math.max(GAP_WARN, noise) && (recent - early >= GAP_GROWTH || lossRising))) return "";
  const train = mean(history.slice(-TAIL).map((h) => h.train_acc));
  const val = mean(history.slice(-TAIL).map((h) => h.val_acc));
  const tries = [
    "add more images, and more varied ones (other backgrounds, lighting, angles, distances)",
    "train for fewer epochs",
    mode === "finetune" ? "use transfer learning instead of fine-tuning" : "keep transfer learning rather than fine-tuning",
  ];
  const keptNote = kept !== null && kept > val + 0.01
    ? ` Teachbox kept the weights of an earlier epoch that did better on the validation images (${percent(kept)}), not the last ones.`
    : "";
  return (
    `The model started to memorise its training images instead of learning what the classes look like: ` +
    `by the end it got about ${percent(train)} of the training images right but only about ${percent(val)} of the images it had not seen.` +
    `${keptNote} What to try: ${tries.join("; ")}.`
  );
}

function perClassRows(metrics) {
  return metrics.labels.map((label, i) => {
    const value = metrics.per_class?.[label];
    const row = metrics.confusion_matrix[i] || [];
    const total = row.reduce((a, b) => a + b, 0);
    const bar = el("span", { class: "bar" });
    const known = typeof value === "number";
    if (known) bar.style.width = percent(value);
    const text = known ? `${percent(value)} (${row[i]} of ${total})` : "no validation images";
    const cell = el("td", {}, el("span", { class: "bar-track" }, bar), el("span", { class: "bar-value", text }));
    return el("tr", {}, el("th", { scope: "row", text: label }), cell);
  });
}

function confusionTable(metrics) {
  const { labels, confusion_matrix: matrix } = metrics;
  const head = el("tr", {}, el("th", { scope: "col", class: "corner", text: "True ↓ / Predicted →" }), ...labels.map((label) => el("th", { scope: "col", text: label })));
  const rows = matrix.map((row, i) => {
    const total = row.reduce((a, b) => a + b, 0) || 1;
    const cells = row.map((count, j) => {
      const cell = el("td", { class: i === j ? "hit" : count ? "miss" : "", text: String(count), title: `${labels[i]} predicted as ${labels[j]}: ${count}` });
      cell.style.setProperty("--share", String(count / total));
      return cell;
    });
    return el("tr", {}, el("th", { scope: "row", text: labels[i] }), ...cells);
  });
  return [el("thead", {}, head), el("tbody", {}, ...rows)];
}

// The server names each mistake by its image id and thumbnail URL, never by a path on the server.
function mistakeItem(mistake, labels) {
  const url = mistake.thumbnail_url;
  const name = mistake.image_id;
  const caption = el("span", {}, el("strong", { text: mistake.true }), ` taken for `, el("strong", { text: mistake.predicted }), ` (${percent(mistake.probability)} sure)`);
  const figure = url ? el("img", { src: url, alt: `A ${mistake.true} image taken for ${mistake.predicted}`, loading: "lazy", width: "96", height: "96" }) : el("span", { class: "no-thumb", text: name || "image" });
  const item = el("li", {}, figure, caption);
  if (name && labels) item.append(correctionButton(item, mistake, labels));
  return item;
}

/** "87 % (83–90 %)": the estimate and its 95 % interval. */
export function estimateText(estimate) {
  const whole = (value) => Math.round(value * 100);
  return `${whole(estimate.accuracy)} % (${whole(estimate.low)}–${whole(estimate.high)} %)`;
}

// When the label was wrong and the model right: one click moves the image to the predicted class.
// `mistake` needs `image_id` and `predicted` (a mistake of the gallery, a suspect of data health).
export function correctionButton(item, mistake, labels) {
  const status = el("span", { class: "hint", role: "status" });
  const button = el("button", {
    type: "button",
    class: "secondary small",
    "data-testid": "move-to-predicted",
    title: `The label was wrong: move this image to '${mistake.predicted}'`,
    text: `It is a ${mistake.predicted}`,
    onclick: async () => {
      button.disabled = true;
      try {
        await labels.move(mistake.image_id, mistake.predicted);
        status.textContent = `Moved to '${mistake.predicted}'. Train again to learn from it.`;
        button.remove();
      } catch (error) {
        status.textContent = error.message;
        button.disabled = false;
      }
    },
  });
  item.append(status);
  return button;
}

/** Show a model's numbers; `labels.move(imageId, className)` corrects a mistake's label. */
export function showInsights(metrics, labels = null) {
  const ready = metrics && Array.isArray(metrics.labels) && Array.isArray(metrics.confusion_matrix);
  $("#insights-empty").hidden = Boolean(ready);
  $("#insights-body").hidden = !ready;
  if (!ready) return;
  const nVal = metrics.n_val ?? metrics.confusion_matrix.flat().reduce((a, b) => a + b, 0);
  const estimate = metrics.estimate;
  $("#insights-summary").textContent = estimate
    ? `Expected accuracy on new images: ${estimateText(estimate)}, on ${plural(nVal, "image")} predicted by a model that did not train on them (${estimate.method}). The model trained on ${plural(metrics.n_train ?? 0, "image")}. The table, the matrix and the mistakes below count the same predictions.`
    : `Validation accuracy ${percent(metrics.val_accuracy || 0)} on ${plural(nVal, "held-out image")}, ${plural(metrics.n_train ?? 0, "training image")}, ${plural(metrics.epochs_run ?? (metrics.history || []).length, "epoch")}.`;
  $("#per-class").replaceChildren(...perClassRows(metrics));
  $("#confusion").replaceChildren(...confusionTable(metrics));
  const mistakes = metrics.misclassified || [];
  $("#misclassified").replaceChildren(...mistakes.map((mistake) => mistakeItem(mistake, labels)));
  showMessage($("#misclassified-empty"), mistakes.length ? "" : "None: every image was classified correctly.");
}

export function clearInsights() {
  $("#insights-empty").hidden = false;
  $("#insights-body").hidden = true;
}
