// The project bar: the current project (remembered in localStorage), switching, renaming, new, save,
// open (a saved project file becomes a new project) and delete.

import { api } from "./api.js";
import { $, emit } from "./dom.js";

const CURRENT = "teachbox.project";
const STARTER_CLASSES = ["Class 1", "Class 2"];
const listOf = (data) => (Array.isArray(data) ? data : data.projects || []);

export class ProjectBar {
  /** `onOpen(project)` runs with the full project (classes included) whenever another one is opened. */
  constructor(onOpen) {
    this.onOpen = onOpen;
    this.select = $("#project-select");
    this.name = $("#project-name");
    this.project = null;
    $("#project-bar").addEventListener("submit", (event) => event.preventDefault());
    this.select.addEventListener("change", () => this.open(this.select.value));
    this.name.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        this.rename();
      } else if (event.key === "Escape") {
        this.name.value = this.project.name;
      }
    });
    this.name.addEventListener("change", () => this.rename());
    $("#project-new").addEventListener("click", () => this.createAndOpen());
    $("#project-delete").addEventListener("click", () => this.remove());
    this.saveLink = $("#project-save");
    this.openButton = $("#project-open");
    this.openFile = $("#project-open-file");
    this.openButton.addEventListener("click", () => this.openFile.click());
    this.openFile.addEventListener("change", () => this.openBundle());
  }

  /** Open a saved project file (from Save project or `teachbox bundle save`) as a new project. */
  async openBundle() {
    const [file] = this.openFile.files;
    this.openFile.value = "";
    if (!file) return;
    const label = this.openButton.textContent;
    this.openButton.disabled = true;
    this.openButton.textContent = "Opening…";
    try {
      const created = await api.openBundle(file);
      await this.open(created.id);
    } catch (error) {
      emit("page-error", error.message);
    } finally {
      this.openButton.disabled = false;
      this.openButton.textContent = label;
    }
  }

  /** Open the remembered project, else the newest one, else a new one with two starter classes. */
  async start() {
    const remembered = localStorage.getItem(CURRENT);
    const projects = listOf(await api.listProjects());
    const known = projects.find((p) => String(p.id) === remembered);
    if (known) return this.open(known.id, projects);
    if (projects.length) return this.open(projects.at(-1).id, projects);
    return this.createAndOpen();
  }

  async createAndOpen() {
    try {
      const projects = listOf(await api.listProjects());
      const taken = new Set(projects.map((p) => p.name));
      let n = projects.length + 1;
      let name = n === 1 ? "My first classifier" : `Classifier ${n}`;
      while (taken.has(name)) name = `Classifier ${++n}`;
      const created = await api.createProject(name);
      const project = await api.getProject(created.id);
      if (!project.classes.length) {
        for (const className of STARTER_CLASSES) await api.createClass(created.id, className);
      }
      await this.open(created.id);
    } catch (error) {
      emit("page-error", error.message);
    }
  }

  async open(pid, projects = null) {
    const [project, list] = await Promise.all([api.getProject(pid), projects ? Promise.resolve(projects) : api.listProjects().then(listOf)]);
    this.project = project;
    localStorage.setItem(CURRENT, String(project.id));
    this.saveLink.href = api.bundleUrl(project.id);
    this.saveLink.download = "";  // the server names the file after the project
    this.fill(list);
    await this.onOpen(project);
  }

  fill(projects) {
    const options = projects.map((p) => new Option(p.name, p.id, false, String(p.id) === String(this.project.id)));
    this.select.replaceChildren(...options);
    this.name.value = this.project.name;
    document.title = `${this.project.name} · Teachbox`;
  }

  async rename() {
    const wanted = this.name.value.trim();
    if (!this.project || wanted === this.project.name) return;
    try {
      if (!wanted) throw new Error("A project needs a name. The old name was kept.");
      const updated = await api.renameProject(this.project.id, wanted);
      this.project.name = updated.name;
      this.fill(listOf(await api.listProjects()));
    } catch (error) {
      this.name.value = this.project.name;
      emit("page-error", error.message);
    }
  }

  async remove() {
    if (!this.project || !window.confirm(`Delete the project "${this.project.name}" with all its images and models? This cannot be undone.`)) return;
    try {
      await api.deleteProject(this.project.id);
      localStorage.removeItem(CURRENT);
      localStorage.removeItem(`teachbox.job.${this.project.id}`);
      await this.start();
    } catch (error) {
      emit("page-error", error.message);
    }
  }
}
