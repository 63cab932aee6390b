// The class cards: name, uploads (picker, folder, drop, webcam burst), thumbnails, count, add and remove.

import { api } from "./api.js";
import { $, el, emit, plural, showMessage } from "./dom.js";
import { chunk, filesFromDrop, worthSending } from "./files.js";
import { Camera } from "./webcam.js";

const BURST_INTERVAL_MS = 100;
const BURST_UPLOAD_EVERY = 10;

const imagesOf = (data) => (Array.isArray(data) ? data : data.images || []);

class ClassCard {
  constructor(list, klass) {
    this.list = list;
    this.id = klass.id;
    this.name = klass.name;
    this.count = klass.image_count || 0;
    this.images = [];
    this.queue = Promise.resolve();
    this.pending = 0;
    this.node = list.template.content.firstElementChild.cloneNode(true);
    this.node.dataset.classId = klass.id;
    this.bind();
    this.render();
  }

  get pid() {
    return this.list.pid;
  }

  part(selector) {
    return $(selector, this.node);
  }

  bind() {
    const uid = `class-${this.id}`;
    const name = this.part(".class-name");
    name.id = `${uid}-name`;
    this.part("[data-for=name]").htmlFor = name.id;
    name.value = this.name;
    name.addEventListener("keydown", (event) => this.onNameKey(event));
    name.addEventListener("change", () => this.commitName());
    this.part("[data-action=remove]").addEventListener("click", () => this.remove());
    for (const role of ["files", "folder"]) {
      const input = this.part(`[data-role=${role}]`);
      input.addEventListener("change", () => {
        this.upload(Array.from(input.files).filter(worthSending));
        input.value = "";
      });
    }
    this.bindDrop(this.node);
    this.bindWebcam();
    this.part("[data-action=clear-rejected]").addEventListener("click", () => this.showRejected([], true));
  }

  render() {
    const label = this.name;
    this.part(".count-value").textContent = String(this.count);
    this.part(".count-unit").textContent = this.count === 1 ? "image" : "images";
    this.part("[data-action=remove]").setAttribute("aria-label", `Remove class ${label}`);
    this.part("[data-role=files]").setAttribute("aria-label", `Choose image files for ${label}`);
    this.part("[data-role=folder]").setAttribute("aria-label", `Choose a folder of images for ${label}`);
    this.part("[data-action=webcam]").setAttribute("aria-label", `Webcam capture for ${label}`);
    this.part(".thumbs").setAttribute("aria-label", `Images of ${label}`);
  }

  error(message) {
    showMessage(this.part(".field-error"), message);
  }

  status(message) {
    this.part(".status").textContent = message;
  }

  // ------------------------------------------------------------------ name

  onNameKey(event) {
    const input = event.currentTarget;
    if (event.key === "Enter") {
      event.preventDefault();
      this.commitName();
    } else if (event.key === "Escape") {
      input.value = this.name;
      this.error("");
    }
  }

  async commitName() {
    const input = this.part(".class-name");
    const wanted = input.value.trim();
    if (wanted === this.name || wanted === this.savingName) return;
    if (!wanted) {
      input.value = this.name;
      this.error("A class needs a name. The old name was kept.");
      return;
    }
    this.savingName = wanted;
    try {
      const updated = await api.renameClass(this.pid, this.id, wanted);
      this.name = updated.name;
      input.value = this.name;
      this.error("");
      this.render();
      this.list.changed();
    } catch (error) {
      this.error(error.message);
      input.value = this.name;
    } finally {
      this.savingName = null;
    }
  }

  // ------------------------------------------------------------------ images

  async loadImages() {
    try {
      this.images = imagesOf(await api.listImages(this.pid, this.id));
      this.count = this.images.length;
      this.renderThumbs();
      this.render();
    } catch (error) {
      this.error(error.message);
    }
  }

  thumb(image) {
    const label = image.filename || "image";
    const img = el("img", { src: image.thumbnail_url, alt: label, loading: "lazy", decoding: "async", width: "64", height: "64" });
    const remove = el("button", { type: "button", class: "thumb-delete", "aria-label": `Delete ${label}`, title: `Delete ${label}`, text: "×" });
    remove.addEventListener("click", () => this.deleteImage(image, remove));
    return el("li", { class: "thumb" }, img, remove);
  }

  renderThumbs() {
    this.part(".thumbs").replaceChildren(...this.images.map((image) => this.thumb(image)));
  }

  appendThumbs(images) {
    this.part(".thumbs").append(...images.map((image) => this.thumb(image)));
  }

  async deleteImage(image, button) {
    button.disabled = true;
    try {
      await api.deleteImage(this.pid, this.id, image.id);
      const index = this.images.indexOf(image);
      this.images.splice(index, 1);
      this.count = Math.max(0, this.count - 1);
      this.renderThumbs();
      this.render();
      this.list.changed();
      const items = this.part(".thumbs").children;
      const neighbour = items[Math.min(index, items.length - 1)];
      (neighbour ? $(".thumb-delete", neighbour) : this.part("[data-role=files]")).focus();
    } catch (error) {
      button.disabled = false;
      this.error(error.message);
    }
  }

  /** Queue files for upload; requests go one after another so the count and status stay truthful. */
  upload(files) {
    if (!files.length) return this.queue;
    this.pending += files.length;
    this.error("");
    this.queue = this.queue.then(() => this.send(files));
    return this.queue;
  }

  async send(files) {
    const rejected = [];
    let added = 0;
    for (const part of chunk(files)) {
      this.status(`Uploading… ${plural(this.pending, "image")} to go.`);
      try {
        const result = await api.uploadImages(this.pid, this.id, part);
        added += result.added.length;
        this.images.push(...result.added);
        this.count = this.images.length;
        rejected.push(...result.rejected);
        this.appendThumbs(result.added);
        this.render();
      } catch (error) {
        rejected.push(...part.map((file) => ({ filename: file.name, reason: error.message })));
      }
      this.pending -= part.length;
    }
    this.status(this.pending ? `Uploading… ${plural(this.pending, "image")} to go.` : `Added ${plural(added, "image")}.`);
    this.showRejected(rejected);
    this.list.changed();
  }

  showRejected(rejected, replace = false) {
    const list = this.part(".rejected-list");
    const items = rejected.map((r) => el("li", {}, el("span", { class: "filename", text: r.filename || "(no name)" }), `: ${r.reason}`));
    if (replace) list.replaceChildren(...items);
    else list.append(...items);
    this.part(".rejected").hidden = list.children.length === 0;
  }

  bindDrop(zone) {
    let depth = 0;
    zone.addEventListener("dragenter", (event) => {
      if (!event.dataTransfer.types.includes("Files")) return;
      depth += 1;
      zone.classList.add("dragging");
    });
    zone.addEventListener("dragleave", () => {
      depth = Math.max(0, depth - 1);
      if (!depth) zone.classList.remove("dragging");
    });
    zone.addEventListener("dragover", (event) => {
      if (!event.dataTransfer.types.includes("Files")) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "copy";
    });
    zone.addEventListener("drop", async (event) => {
      event.preventDefault();
      depth = 0;
      zone.classList.remove("dragging");
      this.upload(await filesFromDrop(event.dataTransfer));
    });
  }

  // ------------------------------------------------------------------ webcam

  bindWebcam() {
    const panel = this.part(".webcam-panel");
    const toggle = this.part("[data-action=webcam]");
    const video = $("video", panel);
    const select = this.part("[data-role=camera]");
    select.id = `class-${this.id}-camera`;
    video.setAttribute("aria-label", "Webcam picture");
    this.camera = new Camera(video, select, () => {
      panel.hidden = true;
      toggle.setAttribute("aria-expanded", "false");
      toggle.textContent = "Webcam";
    });
    toggle.addEventListener("click", () => this.toggleWebcam(panel, toggle));
    const record = this.part("[data-action=record]");
    record.addEventListener("pointerdown", (event) => {
      if (event.button !== 0) return;
      record.setPointerCapture(event.pointerId);
      this.startBurst(record);
    });
    for (const type of ["pointerup", "pointercancel", "lostpointercapture"]) record.addEventListener(type, () => this.stopBurst(record));
    record.addEventListener("keydown", (event) => {
      if ((event.key === " " || event.key === "Enter") && !event.repeat) {
        event.preventDefault();
        this.startBurst(record);
      }
    });
    record.addEventListener("keyup", (event) => {
      if (event.key === " " || event.key === "Enter") this.stopBurst(record);
    });
    record.addEventListener("blur", () => this.stopBurst(record));
    record.addEventListener("contextmenu", (event) => event.preventDefault());
  }

  async toggleWebcam(panel, toggle) {
    if (this.camera.running) {
      this.camera.stop();
      return;
    }
    panel.hidden = false;
    toggle.setAttribute("aria-expanded", "true");
    toggle.textContent = "Close webcam";
    try {
      await this.camera.start();
      this.error("");
    } catch (error) {
      panel.hidden = true;
      toggle.setAttribute("aria-expanded", "false");
      toggle.textContent = "Webcam";
      this.error(error.message);
    }
  }

  startBurst(button) {
    if (this.burst || !this.camera.running) return;
    const frames = [];
    let taken = 0;
    button.classList.add("recording");
    button.textContent = "Recording…";
    const flush = () => this.upload(frames.splice(0));
    const tick = async () => {
      const file = await this.camera.grab(320, `webcam-${Date.now()}-${taken}.jpg`);
      if (!file) return;
      frames.push(file);
      taken += 1;
      this.status(`Recording: ${plural(taken, "frame")}.`);
      if (frames.length >= BURST_UPLOAD_EVERY) flush();
    };
    tick();
    this.burst = { timer: setInterval(tick, BURST_INTERVAL_MS), flush };
  }

  stopBurst(button) {
    if (!this.burst) return;
    clearInterval(this.burst.timer);
    // Let a frame being encoded land before the last upload.
    const { flush } = this.burst;
    this.burst = null;
    setTimeout(flush, BURST_INTERVAL_MS);
    button.classList.remove("recording");
    button.textContent = "Hold to record";
  }

  // ------------------------------------------------------------------ removal

  async remove() {
    if (this.count > 0 && !window.confirm(`Remove the class "${this.name}" and its ${plural(this.count, "image")}?`)) return;
    try {
      await api.deleteClass(this.pid, this.id);
      this.camera.stop();
      this.list.removeCard(this);
    } catch (error) {
      this.error(error.message);
    }
  }
}

export class ClassList {
  constructor(container, template, addButton) {
    this.container = container;
    this.template = template;
    this.cards = [];
    this.pid = null;
    addButton.addEventListener("click", () => this.addClass());
    this.addButton = addButton;
  }

  async show(project) {
    for (const card of this.cards) card.camera.stop();
    this.pid = project.id;
    this.cards = project.classes.map((klass) => new ClassCard(this, klass));
    this.container.replaceChildren(...this.cards.map((card) => card.node));
    this.changed();
    await Promise.all(this.cards.map((card) => card.loadImages()));
    this.changed();
  }

  /** Reload every card's images, after images moved or were added from elsewhere on the page. */
  async refresh() {
    await Promise.all(this.cards.map((card) => card.loadImages()));
    this.changed();
  }

  nextName() {
    const taken = new Set(this.cards.map((card) => card.name));
    let n = this.cards.length + 1;
    while (taken.has(`Class ${n}`)) n += 1;
    return `Class ${n}`;
  }

  async addClass() {
    this.addButton.disabled = true;
    try {
      const klass = await api.createClass(this.pid, this.nextName());
      const card = new ClassCard(this, { ...klass, image_count: 0 });
      this.cards.push(card);
      this.container.append(card.node);
      const name = card.part(".class-name");
      name.focus();
      name.select();
      this.changed();
    } catch (error) {
      emit("page-error", error.message);
    } finally {
      this.addButton.disabled = false;
    }
  }

  removeCard(card) {
    const index = this.cards.indexOf(card);
    this.cards.splice(index, 1);
    card.node.remove();
    const neighbour = this.cards[Math.min(index, this.cards.length - 1)];
    (neighbour ? neighbour.part(".class-name") : this.addButton).focus();
    this.changed();
  }

  /** The thumbnail of an image of any class, by its id. */
  thumbnailFor(imageId) {
    for (const card of this.cards) {
      const image = card.images.find((candidate) => candidate.id === imageId);
      if (image) return image.thumbnail_url;
    }
    return null;
  }

  summary() {
    return this.cards.map((card) => ({ id: card.id, name: card.name, count: card.count, busy: card.pending > 0 }));
  }

  changed() {
    emit("classes-changed", this.summary());
  }
}
