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
    this.button.addEventListener("click", () => this.run(() => this.share()));
    $("#revoke-share").addEventListener("click", () => this.run(() => this.revoke()));
    $("#copy-share-url").addEventListener("click", (event) => copy(event.currentTarget, this.url.value));
    $("#copy-share-embed").addEventListener("click", (event) => copy(event.currentTarget, this.embed.value));
  }

  /** The open project, and whether it has a model to share; shows its link if it has one. */
  async setProject(pid, hasModel) {
    this.pid = pid;
    this.button.disabled = !hasModel;
    this.show(null);
    if (!pid || !hasModel) return;
    await this.run(async () => {
      const share = await api.getShare(pid);
      if (this.pid === pid) this.show(share.shared ? share : null);
    });
  }

  show(share) {
    this.details.hidden = !share;
    this.button.hidden = Boolean(share);
    this.url.value = share ? share.url : "";
    this.embed.value = share ? share.embed : "";
  }

  async share() {
    this.show(await api.share(this.pid));
    this.url.select();
  }

  async revoke() {
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
