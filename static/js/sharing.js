// Share: publish the project's current model at a public link (/s/<token>/), copy it or its
// <iframe> snippet, and revoke it.

import { api } from "./api.js";
import { $, emit } from "./dom.js";

export class SharePanel {
  constructor() {
    this.button = $("#share-model");
    this.details = $("#share-details");
    this.url = $("#share-url");
    this.embed = $("#share-embed");
    this.pid = null;
    this.version = 0;
    this.button.addEventListener("click", () => this.run(() => this.share()));
    $("#revoke-share").addEventListener("click", () => this.run(() => this.revoke()));
    $("#copy-share-url").addEventListener("click", (event) => copy(event.currentTarget, this.url.value));
    $("#copy-share-embed").addEventListener("click", (event) => copy(event.currentTarget, this.embed.value));
  }

  /** The open project, and whether it has a model to share; shows its link if it has one. */
  async setProject(pid, hasModel) {
    const version = this.changed();
    if (pid !== this.pid) this.show(null);
    this.pid = pid;
    this.button.disabled = !hasModel;
    if (!pid || !hasModel) return this.show(null);
    await this.run(async () => {
      const share = await api.getShare(pid);
      // A Share or Revoke pressed meanwhile, or another project opened, wins over this answer.
      if (version === this.version) this.show(share.shared ? share : null);
    });
  }

  changed() {
    this.version += 1;
    return this.version;
  }

  show(share) {
    this.details.hidden = !share;
    this.button.hidden = Boolean(share);
    this.url.value = share ? share.url : "";
    this.embed.value = share ? share.embed : "";
  }

  async share() {
    this.changed();
    this.show(await api.share(this.pid));
    this.url.select();
  }

  async revoke() {
    this.changed();
    await api.unshare(this.pid);
    this.show(null);
    this.button.focus();
  }

  async run(action) {
    try {
      await action();
    } catch (error) {
      emit("page-error", error.message);
    }
  }
}

async function copy(button, text) {
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Select the text to copy";
  }
  setTimeout(() => {
    button.textContent = label;
  }, 2000);
}
