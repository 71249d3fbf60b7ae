// Fit view: upload a recording, follow the fit job generation by generation, then show every sweep's overlay
// (recording, fitted hh model, surrogate), the parameter table with intervals and the acceptance checks, and the
// physiology checks from the traces (fit.json `physiology`): a line per overlay caption and summary rows.
import { api, saveBlob, showError } from "./api.js";
import { overlayPlot } from "./plots.js";
import { esc } from "./population.js";

const POLL_MS = 500;

export class FitView {
  constructor(root, onJobChange) {
    this.root = root;
    this.onJobChange = onJobChange;
    this.jobId = null;
    this.timer = null;
    const q = (id) => root.querySelector(`#${id}`);
    this.el = {
      form: q("fit-form"), file: q("fit-file"), drop: q("fit-drop"), fileName: q("fit-file-name"),
      generations: q("fit-generations"), restarts: q("fit-restarts"), popsize: q("fit-popsize"),
      stage1: q("fit-stage1"), polish: q("fit-polish"), seed: q("fit-seed"), sweeps: q("fit-sweeps"), submit: q("fit-submit"),
      fileError: q("fit-file-error"), optionsError: q("fit-options-error"), progress: q("fit-progress"),
      progressText: q("fit-progress-text"), cancel: q("fit-cancel"), result: q("fit-result"),
    };
    this._wire();
  }

  _wire() {
    const { el } = this;
    el.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.submit();
    });
    el.file.addEventListener("change", () => {
      el.fileName.textContent = el.file.files.length ? el.file.files[0].name : "no file chosen";
      showError(el.fileError, null);
    });
    el.drop.addEventListener("dragover", (ev) => {
      ev.preventDefault();
      el.drop.classList.add("over");
    });
    el.drop.addEventListener("dragleave", () => el.drop.classList.remove("over"));
    el.drop.addEventListener("drop", (ev) => {
      ev.preventDefault();
      el.drop.classList.remove("over");
      if (ev.dataTransfer.files.length) {
        el.file.files = ev.dataTransfer.files;
        el.file.dispatchEvent(new Event("change"));
      }
    });
    el.cancel.addEventListener("click", async () => {
      if (!this.jobId) return;
      try {
        await api.cancelJob(this.jobId);
      } catch (err) {
        showError(el.optionsError, err);
      }
    });
  }

  options() {
    const { el } = this;
    const opts = { stage1: el.stage1.value, seed: Number(el.seed.value) };
    const num = (input, key) => {
      if (input.value !== "") opts[key] = Number(input.value);
    };
    num(el.generations, "generations");
    num(el.restarts, "restarts");
    num(el.popsize, "popsize");
    num(el.polish, "polish_generations");
    const sweeps = parseSweeps(el.sweeps.value);
    if (sweeps.length) opts.sweeps = sweeps;
    return opts;
  }

  async submit() {
    const { el } = this;
    showError(el.fileError, null);
    showError(el.optionsError, null);
    if (!el.file.files.length) {
      showError(el.fileError, new Error("choose a recording (ABF, NWB, CSV or NPZ) first"));
      return;
    }
    el.submit.disabled = true;
    el.result.hidden = true;
    try {
      const job = await api.fit(el.file.files[0], this.options());
      this.follow(job.id);
      this.onJobChange();
    } catch (err) {
      // The API names the field: the recording, or one of the options.
      const onOptions = err.fields && err.fields.some((f) => f.loc[0] === "options");
      showError(onOptions ? el.optionsError : el.fileError, err);
      el.submit.disabled = false;
    }
  }

  /** Follow a fit job (also one opened from the jobs list) until it ends, then show its result. */
  follow(jobId) {
    const { el } = this;
    this.jobId = jobId;
    clearTimeout(this.timer);
    el.progress.hidden = false;
    el.cancel.hidden = false;
    el.progress.value = 0;
    const tick = async () => {
      let job;
      try {
        job = await api.job(jobId);
      } catch (err) {
        showError(el.optionsError, err);
        this.timer = setTimeout(tick, 2 * POLL_MS);
        return;
      }
      el.progress.max = Math.max(1, job.progress.total);
      el.progress.value = job.progress.done;
      el.progressText.textContent = `job ${job.id.slice(0, 8)}: ${job.state}` +
        (job.message ? ` — ${job.message}` : "") + ` (${Math.round(100 * job.progress.fraction)} %)`;
      this.root.dataset.jobState = job.state;
      if (job.state === "queued" || job.state === "running") {
        this.timer = setTimeout(tick, POLL_MS);
        return;
      }
      el.submit.disabled = false;
      el.cancel.hidden = true;
      this.onJobChange();
      if (job.state === "succeeded") await this.showResult(jobId);
      else showError(el.optionsError, new Error(`the fit ${job.state}: ${(job.errors || []).join(" ") || job.message || ""}`));
    };
    tick();
  }

  async showResult(jobId) {
    const { el } = this;
    const [fit, overlay, files, job] = await Promise.all([api.jobFileJson(jobId, "fit.json"),
      api.jobFileJson(jobId, "overlay.json"), api.jobFiles(jobId), api.job(jobId)]);
    el.result.hidden = false;
    el.result.innerHTML = `
      <h3>Fit of ${esc(job.spec.filename || overlay.source)} <small class="muted">(job ${job.id.slice(0, 8)})</small></h3>
      <p>objective ${fit.objective.toFixed(3)} (mean squared z) · χ² ${fit.chi2.toFixed(1)} ·
        checks: <strong class="${fit.checks.all_ok ? "ok" : "bad"}">${fit.checks.all_ok ? "all pass" : "not all pass"}</strong>
        · ${fit.timing_s.total.toFixed(0)} s · surrogate stage: ${esc(fit.stage1.status || "off")}</p>
      <div class="downloads" id="fit-downloads"></div>
      <div class="fit-tables">
        <div><h4>Parameters</h4>${paramTable(fit.parameters)}</div>
        <div><h4>Acceptance checks</h4>${checksTable(fit.checks, fit.physiology)}</div>
      </div>
      ${(fit.notes || []).length ? `<details><summary>Notes (${fit.notes.length})</summary><ul>${fit.notes.map((n) => `<li>${esc(n)}</li>`).join("")}</ul></details>` : ""}
      <h4>Every sweep: recording (black), fitted hh model (red), surrogate (blue, dashed)</h4>
      <div class="overlays" id="fit-overlays"></div>`;
    const dl = el.result.querySelector("#fit-downloads");
    for (const f of files.files) {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = `${f.name} (${(f.bytes / 1024).toFixed(0)} kB)`;
      b.addEventListener("click", async () => saveBlob(await api.jobFileBlob(jobId, f.name), f.name));
      dl.appendChild(b);
    }
    const box = el.result.querySelector("#fit-overlays");
    for (const sw of overlay.sweeps) {
      const cell = document.createElement("figure");
      cell.className = "overlay";
      const plot = document.createElement("div");
      cell.appendChild(plot);
      const cap = document.createElement("figcaption");
      const c = sw.checks || {};
      const parts = [];
      if (c.spike_count) parts.push(`spikes ${c.spike_count.data} vs ${c.spike_count.model ?? "–"} ${c.spike_count.ok ? "✓" : "✗"}`);
      if (c.latency) parts.push(`latency ${fmt(c.latency.data_ms)} vs ${fmt(c.latency.model_ms)} ms ${c.latency.ok ? "✓" : "✗"}`);
      if (sw.rms_z !== null && sw.rms_z !== undefined) parts.push(`rms z ${sw.rms_z.toFixed(2)}`);
      cap.textContent = parts.join(" · ");
      if (c.physiology && Object.keys(c.physiology).length) {
        const line = document.createElement("div");
        line.className = "phys-checks";
        line.innerHTML = physLine(c.physiology);
        cap.appendChild(line);
      }
      cell.appendChild(cap);
      box.appendChild(cell);
      overlayPlot(plot, sw, Math.max(280, Math.floor(cell.getBoundingClientRect().width) - 6)); // its grid cell
    }
    this.root.dataset.resultSweeps = String(overlay.sweeps.length);
  }
}

/** "0, 4, 8-12" -> [0, 4, 8, 9, 10, 11, 12] (as `noble fit --sweeps` reads it). */
export function parseSweeps(text) {
  const out = [];
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const m = part.match(/^(\d+)\s*-\s*(\d+)$/);
    if (m) for (let k = Number(m[1]); k <= Number(m[2]); k++) out.push(k);
    else out.push(Number(part));
  }
  return out;
}

function fmt(x, d = 1) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(d);
}

function num(x) {
  if (x === null || x === undefined) return "–";
  const a = Math.abs(x);
  return a !== 0 && (a < 0.01 || a >= 1e4) ? x.toExponential(3) : x.toPrecision(4);
}

function paramTable(params) {
  const rows = Object.entries(params).map(([name, p]) => `<tr class="${p.free ? "" : "fixed"}">
    <td>${esc(name)}</td><td>${num(p.value)}</td>
    <td>${p.free ? `${num(p.accepted_lo)} – ${num(p.accepted_hi)}` : "fixed"}</td>
    <td>${esc(p.unit || "")}</td><td>${p.free ? `${num(p.lo)} – ${num(p.hi)}` : ""}</td></tr>`).join("");
  return `<table class="params" id="fit-params"><thead><tr><th>parameter</th><th>value</th>
    <th>interval</th><th>unit</th><th>search range</th></tr></thead><tbody>${rows}</tbody></table>`;
}

// The per-sweep physiology checks (noble/fit/physiology.py) in one line: "n 12/13 ✓ · stops early ✗ · ΔV ✓";
// each entry's tooltip gives recording, model and tolerance (and the reason when it is not judged).
// Short labels as physiology.SHORT; every check fit.json lists is drawn, in its order (a check added there
// shows up under its own name until it gets a label here).
const PHYS_SHORT = { spike_count: "n", stops_early: "stops early", block: "block", deflection: "ΔV",
  late_deflection: "ΔV late", prestep_deflection: "ΔV pre", rebound: "rebound",
  latency: "lat", ap_peak: "peak", ap_half_width: "hw", ahp_trough: "AHP", ap_decline: "decline" };

function physMark(c) {
  if (c.status === "ok") return `<span class="ok">✓</span>`;
  if (c.status === "fail") return `<span class="bad">✗</span>`;
  return `<span class="muted">–</span>`;
}

function physValue(x, unit) {
  if (Array.isArray(x)) return `[${x.map((y) => (y === null ? "–" : fmt(y, 0))).join(", ")}] ${unit}`;
  return x === null || x === undefined ? "–" : `${num(x)} ${unit}`;
}

function physLine(checks) {
  const parts = [];
  for (const [name, c] of Object.entries(checks || {})) {
    const short = PHYS_SHORT[name] || name;
    const label = name === "spike_count" ? `n ${fmt(c.data, 0)}/${fmt(c.model, 0)}` : short;
    const tip = `${name}: recording ${physValue(c.data, c.unit)}, model ${physValue(c.model, c.unit)}, ` +
      `tolerance ${physValue(c.tol, c.unit)}, ${c.status}${c.reason ? ` (${c.reason})` : ""}`;
    parts.push(`<span class="phys" data-check="${esc(name)}" data-status="${esc(c.status)}" title="${esc(tip)}">` +
      `${esc(label)} ${physMark(c)}</span>`);
  }
  return parts.join(" · ");
}

function checksTable(checks, physiology) {
  const mark = (ok) => `<span class="${ok ? "ok" : "bad"}">${ok ? "pass" : "fail"}</span>`;
  const rows = [];
  for (const c of checks.spike_counts || []) {
    rows.push(`<tr><td>spike count, sweep ${c.sweep} (${c.amplitude_pA} pA)</td><td>${fmt(c.data, 0)}</td>
      <td>${fmt(c.model, 0)}</td><td>±${fmt(c.tol, 0)}</td><td>${mark(c.ok)}</td></tr>`);
  }
  for (const c of checks.latency || []) {
    rows.push(`<tr><td>first-spike latency, sweep ${c.sweep} (${c.amplitude_pA} pA)</td><td>${fmt(c.data_ms)} ms</td>
      <td>${fmt(c.model_ms)} ms</td><td></td><td>${mark(c.ok)}</td></tr>`);
  }
  if (checks.rheobase) {
    rows.push(`<tr><td>rheobase</td><td>${fmt(checks.rheobase.data_pA)} pA</td><td>${fmt(checks.rheobase.model_pA)} pA</td>
      <td></td><td>${mark(checks.rheobase.ok)}</td></tr>`);
  }
  if (checks.rest) {
    rows.push(`<tr><td>rest</td><td>${fmt(checks.rest.data_mV, 2)} mV</td><td>${fmt(checks.rest.model_mV, 2)} mV</td>
      <td></td><td>${mark(checks.rest.ok)}</td></tr>`);
  }
  if (physiology && physiology.summary) {
    const s = physiology.summary;
    const br = physiology.cell && physiology.cell.rheobase;
    if (br) {
      const verdict = br.status === "not judged" ? `<span class="muted" title="${esc(br.reason || "")}">not judged</span>`
        : mark(br.ok);
      rows.push(`<tr class="phys-row"><td>rheobase bracket (steps)</td><td>${physValue(br.data, "pA")}</td>
        <td>${physValue(br.model, "pA")}</td><td>±${fmt(br.tol, 0)} pA</td><td>${verdict}</td></tr>`);
    }
    const failed = (s.failed || []).join("; ");
    rows.push(`<tr class="phys-row" id="fit-physiology-summary"><td>physiology checks (from the traces)</td>
      <td colspan="3" title="${esc(failed)}">${s.n_ok} ok · ${s.n_fail} fail · ${s.n_not_judged} not judged</td>
      <td>${mark(s.all_ok)}</td></tr>`);
  }
  return `<table class="checks" id="fit-checks"><thead><tr><th>check</th><th>recording</th><th>model</th>
    <th>tolerance</th><th></th></tr></thead><tbody>${rows.join("")}</tbody></table>`;
}
