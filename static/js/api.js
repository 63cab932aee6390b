// The REST API of Teachbox (issue 3), in one place. Every call throws ApiError with the server's sentence.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function detailText(data, response) {
  const detail = data && data.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) return detail.map((item) => item.msg || String(item)).join(" ");
  return `The server answered ${response.status} ${response.statusText}. Try again.`;
}

async function request(method, url, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body instanceof FormData) {
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, "The Teachbox server cannot be reached. Check that it is still running, then try again.");
  }
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, detailText(data, response));
  return data;
}

const project = (pid) => `/api/projects/${encodeURIComponent(pid)}`;
const klass = (pid, cid) => `${project(pid)}/classes/${encodeURIComponent(cid)}`;
const job = (jid) => `/api/jobs/${encodeURIComponent(jid)}`;

export const api = {
  listProjects: () => request("GET", "/api/projects"),
  createProject: (name) => request("POST", "/api/projects", { name }),
  getProject: (pid) => request("GET", project(pid)),
  renameProject: (pid, name) => request("PATCH", project(pid), { name }),
  deleteProject: (pid) => request("DELETE", project(pid)),
  bundleUrl: (pid) => `${project(pid)}/bundle`,
  openBundle(file) {
    const form = new FormData();
    form.append("file", file, file.name);
    return request("POST", "/api/projects/bundle", form);
  },
  createClass: (pid, name) => request("POST", `${project(pid)}/classes`, { name }),
  renameClass: (pid, cid, name) => request("PATCH", klass(pid, cid), { name }),
  deleteClass: (pid, cid) => request("DELETE", klass(pid, cid)),
  listImages: (pid, cid) => request("GET", `${klass(pid, cid)}/images`),
  uploadImages(pid, cid, files) {
    const form = new FormData();
    for (const file of files) form.append("files", file, file.name);
    return request("POST", `${klass(pid, cid)}/images`, form);
  },
  moveImage: (pid, iid, classId) => request("PATCH", `${project(pid)}/images/${encodeURIComponent(iid)}`, { class_id: classId }),
  deleteImage: (pid, cid, iid) => request("DELETE", `${klass(pid, cid)}/images/${encodeURIComponent(iid)}`),
  listJobs: (pid) => request("GET", `${project(pid)}/jobs`),
  startJob: (pid, params) => request("POST", `${project(pid)}/jobs`, params),
  getJob: (jid) => request("GET", job(jid)),
  cancelJob: (jid) => request("POST", `${job(jid)}/cancel`),
  eventsUrl: (jid) => `${job(jid)}/events`,
  modelUrl: (jid, mode) => `${job(jid)}/model${mode ? `?mode=${encodeURIComponent(mode)}` : ""}`,
  startCompare: (pid, params) => request("POST", `${project(pid)}/compare`, params),
  keepModel: (jid, mode) => request("POST", `${job(jid)}/keep`, { mode }),
  getShare: (pid) => request("GET", `${project(pid)}/share`),
  share: (pid) => request("POST", `${project(pid)}/share`),
  unshare: (pid) => request("DELETE", `${project(pid)}/share`),
  getHealth: (pid, curve = true) => request("GET", `${project(pid)}/health?curve=${curve}`),
  predict(pid, file) {
    const form = new FormData();
    form.append("file", file, file.name || "frame.jpg");
    return request("POST", `${project(pid)}/predict`, form);
  },
};
