// The public HTTP API as the page uses it: every call sends the API key when one is set, and every failure
// becomes an ApiError carrying the status and the API's own message (with the field it names).

const KEY_STORAGE = "noble.apiKey";

export class ApiError extends Error {
  constructor(status, message, fields) {
    super(message);
    this.status = status;
    this.fields = fields; // [{loc: [...], msg}] for 422s, else []
  }
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

/** The API's message for a failed response: FastAPI's {detail: string | [{loc, msg}]}. */
export function describeError(status, body) {
  const detail = body && body.detail !== undefined ? body.detail : body;
  if (Array.isArray(detail)) {
    const fields = detail.map((d) => ({ loc: (d.loc || []).filter((p) => p !== "body"), msg: d.msg || "" }));
    const text = fields.map((f) => (f.loc.length ? `${f.loc.join(".")}: ` : "") + f.msg).join("; ");
    return { text: `${status}: ${text}`, fields };
  }
  if (typeof detail === "string") return { text: `${status}: ${detail}`, fields: [] };
  return { text: `${status}: ${JSON.stringify(detail)}`, fields: [] };
}

let onUnauthorized = () => {};
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

/** fetch() with the key; JSON in and out by default. Throws ApiError on any non-2xx answer. */
export async function request(method, path, { json, form, accept = "application/json", signal } = {}) {
  const headers = { Accept: accept };
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form; // multipart: the browser sets the boundary
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body, signal });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(0, `the server did not answer (${err.message})`, []);
  }
  if (!res.ok) {
    let parsed = null;
    try {
      parsed = await res.json();
    } catch (_) {
      parsed = { detail: res.statusText };
    }
    const { text, fields } = describeError(res.status, parsed);
    if (res.status === 401) onUnauthorized(text);
    throw new ApiError(res.status, text, fields);
  }
  if (accept === "application/json") return res.json();
  return res.blob();
}

export const api = {
  models: () => request("GET", "/v1/models"),
  sample: (body, opts = {}) => request("POST", "/v1/sample", { json: body, ...opts }),
  sampleFile: (body, accept) => request("POST", "/v1/sample", { json: body, accept }),
  population: (name, n, seed, opts = {}) =>
    request("GET", `/v1/models/${encodeURIComponent(name)}/population?n=${n}&seed=${seed}`, opts),
  simulate: (body, opts = {}) => request("POST", "/v1/simulate", { json: body, ...opts }),
  fit: (file, options) => {
    const form = new FormData();
    form.append("recording", file, file.name);
    form.append("options", JSON.stringify(options));
    return request("POST", "/v1/fit", { form });
  },
  jobs: () => request("GET", "/v1/jobs?limit=100"),
  job: (id) => request("GET", `/v1/jobs/${id}`),
  submitJob: (body) => request("POST", "/v1/jobs", { json: body }),
  cancelJob: (id) => request("DELETE", `/v1/jobs/${id}`),
  jobFiles: (id) => request("GET", `/v1/jobs/${id}/files`),
  jobFileJson: (id, name) => request("GET", `/v1/jobs/${id}/files/${encodeURIComponent(name)}`),
  jobFileBlob: (id, name) =>
    request("GET", `/v1/jobs/${id}/files/${encodeURIComponent(name)}`, { accept: "*/*" }),
  jobArchive: (id) => request("GET", `/v1/jobs/${id}/result?format=zip`, { accept: "*/*" }),
};

/** Save a Blob under a file name (downloads go through fetch so the API key is sent). */
export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

/** Show an error (or clear it with null) in an element next to the control that caused it. */
export function showError(el, err) {
  if (!el) return;
  if (!err) {
    el.textContent = "";
    el.hidden = true;
    return;
  }
  el.textContent = err instanceof ApiError ? err.message : String(err.message || err);
  el.hidden = false;
}
