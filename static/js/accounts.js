// Accounts (TEACHBOX_AUTH=accounts): who is signed in, the sign-in and join forms, sign-out, and
// an admin's join codes. Without accounts none of this shows.

import { api, ApiError } from "./api.js";
import { $, el, showMessage } from "./dom.js";

const formValues = (form) => Object.fromEntries(new FormData(form).entries());

/** Wire a form whose submit calls `action(values)`; its error line shows the server's sentence. */
function onSubmit(form, errorLine, action) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showMessage(errorLine, "");
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await action(formValues(form));
    } catch (error) {
      showMessage(errorLine, error.message);
    } finally {
      button.disabled = false;
    }
  });
}

function showSignIn() {
  $("#signin").hidden = false;
  onSubmit($("#signin-form"), $("#signin-error"), async (values) => {
    await api.signIn(values.username, values.password);
    location.reload();
  });
  onSubmit($("#join-form"), $("#join-error"), async (values) => {
    await api.join(values.code, values.username, values.password);
    location.reload();
  });
  $("#signin-name").focus();
}

class JoinCodes {
  constructor() {
    this.panel = $("#join-codes");
    this.list = $("#join-code-list");
    this.error = $("#join-codes-error");
    this.toggle = $("#join-codes-toggle");
    this.toggle.hidden = false;
    this.toggle.addEventListener("click", () => this.show(this.panel.hidden));
    onSubmit($("#join-code-new"), this.error, async () => {
      const created = await api.createJoinCode(Number($("#join-code-hours").value));
      $("#join-code-value").textContent = created.code;
      $("#join-code-shown").hidden = false;
      await this.refresh();
    });
  }

  async show(open) {
    this.panel.hidden = !open;
    this.toggle.setAttribute("aria-expanded", String(open));
    if (open) await this.refresh().catch((error) => showMessage(this.error, error.message));
  }

  async refresh() {
    const codes = await api.listJoinCodes();
    const until = (code) => new Date(code.expires_at).toLocaleString();
    this.list.replaceChildren(
      ...codes.map((code) =>
        el(
          "li",
          {},
          el("span", { text: `Open until ${until(code)}, made by ${code.created_by}, used ${code.uses}×` }),
          el("button", { type: "button", class: "secondary danger", text: "End", onclick: () => this.end(code.id) }),
        ),
      ),
    );
    if (!codes.length) this.list.append(el("li", { class: "hint", text: "No join code is open." }));
  }

  async end(codeId) {
    showMessage(this.error, "");
    try {
      await api.endJoinCode(codeId);
      $("#join-code-shown").hidden = true;
      await this.refresh();
    } catch (error) {
      showMessage(this.error, error.message);
    }
  }
}

function showAccount(me) {
  $("#account").hidden = false;
  $("#account-name").textContent = me.admin ? `${me.username} (admin)` : me.username;
  $("#project-bar").hidden = false;
  $("main").hidden = false;
  $("#sign-out").addEventListener("click", async () => {
    await api.signOut();
    location.reload();
  });
  if (me.admin) new JoinCodes();
}

/** True when the page may go on: no accounts on this server, or someone is signed in. */
export async function signedIn(config) {
  if (config.auth !== "accounts") return true;
  try {
    showAccount(await api.me());
    return true;
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 401) throw error;
    showSignIn();
    return false;
  }
}
