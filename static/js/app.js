// The page's entry point: wires the project bar, class cards, training, insights, preview, export and share.

import { signedIn } from "./accounts.js";
import { api } from "./api.js";
import { ClassList } from "./classes.js";
import { ComparePanel } from "./comparing.js";
import { $, on, showMessage } from "./dom.js";
import { Export } from "./exporting.js";
import { HealthPanel } from "./health.js";
import { clearInsights, showInsights } from "./insights.js";
import { Preview } from "./preview.js";
import { ProjectBar } from "./projects.js";
import { SharePanel } from "./sharing.js";
import { TrainingPanel } from "./training.js";

const config = JSON.parse($("main").dataset.config);
// Corrected labels, from the mistakes gallery and the preview: the class cards show them at once.
const labels = {
  classes: () => classes.summary(),
  async move(imageId, className) {
    const target = classes.summary().find((klass) => klass.name === className);
    if (!target) throw new Error(`There is no class named '${className}' any more.`);
    await api.moveImage(projects.project.id, imageId, target.id);
    await classes.refresh();
  },
  async add(file, classId) {
    const result = await api.uploadImages(projects.project.id, classId, [file]);
    if (result.rejected.length) throw new Error(result.rejected[0].reason);
    await classes.refresh();
  },
};
const pageError = $("#page-error");
const classes = new ClassList($("#class-list"), $("#class-card-template"), $("#add-class"));
const training = new TrainingPanel(config);
const preview = new Preview(labels);
const exporter = new Export();
const sharing = new SharePanel();
const compare = new ComparePanel(training);
const health = new HealthPanel(labels);

on("page-error", (message) => showMessage(pageError, message));
on("job-started", () => {
  clearInsights();
  compare.reset();
});
on("compare-job", (job) => compare.show(job));
on("classes-changed", (summary) => {
  training.setClasses(summary);
  health.classesChanged(summary);
});
on("model-ready", ({ jobId, metrics }) => {
  preview.setModel(projects.project.id, true);
  exporter.setModel(jobId, metrics);
  sharing.setProject(projects.project.id, true);
  showInsights(metrics, labels);
});

async function openProject(project) {
  showMessage(pageError, "");
  preview.setModel(project.id, false);
  exporter.setModel(null);
  sharing.setProject(project.id, false);
  clearInsights();
  compare.reset();
  health.show(project);
  await classes.show(project);
  await training.show(project);
}

const projects = new ProjectBar(openProject);

// A file dropped beside a card must not replace the page.
window.addEventListener("dragover", (event) => {
  if (event.defaultPrevented) return;
  event.preventDefault();
  event.dataTransfer.dropEffect = "none";
});
window.addEventListener("drop", (event) => event.preventDefault());

signedIn(config)
  .then((go) => go && projects.start())
  .then(
    () => document.body.classList.add("ready"),
    (error) => showMessage(pageError, error.message),
  );
