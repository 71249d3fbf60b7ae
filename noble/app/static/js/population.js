// Populations view: sample n neurons of a surrogate for a step or waveform, draw traces + band, raster and
// the population's F-I curve; "simulate with Brian2" overlays the solver on members of the training population.
import { api, saveBlob, showError } from "./api.js";
import { FIPlot, RasterPlot, TracePlot } from "./plots.js";

/** The plotted grid: the surrogate's own, thinned to >= 0.1 ms (a 0.05 ms trace is 24000 points per neuron;
 * spike counts and times still come from the full grid, server-side). */
export function displayDt(model) {
  const k = Math.max(1, Math.round(0.1 / model.dt_ms));
  return k * model.dt_ms;
}

const GT_MAX_NEURONS = 8;
const FI_CONCURRENCY = 3; // F-I requests in flight at once: leaves the browser's connections to the traces

/** fn over items with at most `limit` promises pending; results in the items' order. */
async function inPool(items, fn, limit) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
} // Brian2 is bounded by the server's /v1/simulate budget; 8 x 1.2 s fits the default

/** Runs the newest of a stream of async jobs: while one runs, only the latest request waits. */
class Latest {
  constructor() {
    this.pending = null;
    this.busy = false;
  }
  run(fn) {
    this.pending = fn;
    if (!this.busy) this._pump();
  }
  async _pump() {
    this.busy = true;
    while (this.pending) {
      const fn = this.pending;
      this.pending = null;
      await fn();
    }
    this.busy = false;
  }
}

function quantile(sorted, q) {
  if (!sorted.length) return null;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** A stimulus waveform on the surrogate's grid, kept inside [lo, hi] (the trained amplitudes). */
export function waveform(kind, amp, model, seed) {
  const n = model.n_time;
  const dt = model.dt_ms;
  const start = model.stimulus_start_ms;
  const end = start + model.stimulus_duration_ms;
  const [lo, hi] = model.amplitude_range_pA;
  const out = new Array(n).fill(0);
  let rng = (seed * 2654435761) % 4294967296 || 1; // xorshift32, seeded: the same seed gives the same noise
  const uniform = () => {
    rng ^= rng << 13; rng >>>= 0; rng ^= rng >>> 17; rng ^= rng << 5; rng >>>= 0;
    return (rng + 0.5) / 4294967296;
  };
  const gauss = () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
  let ou = 0;
  const tau = 5.0;
  const sd = 0.15 * Math.abs(amp) + 5.0;
  for (let i = 0; i < n; i++) {
    const t = i * dt;
    if (t < start || t >= end) continue;
    const x = (t - start) / (end - start);
    let v;
    if (kind === "ramp") v = amp * x;
    else if (kind === "sine") v = 0.5 * amp * (1 - Math.cos(2 * Math.PI * 4 * (t - start) / 1000)); // 4 Hz
    else if (kind === "noisy") {
      ou += (-ou / tau) * dt + sd * Math.sqrt(2 * dt / tau) * gauss();
      v = amp + ou;
    } else v = amp;
    out[i] = Math.min(hi, Math.max(lo, Math.round(v * 100) / 100));
  }
  return out;
}

export class PopulationView {
  constructor(root, metrics) {
    this.root = root;
    this.metrics = metrics;
    this.models = [];
    this.model = null;
    this.latest = new Latest();
    this.fiToken = 0;
    this.fiStale = false;
    this.fiAbort = null;
    this.groundTruth = null; // {members, solver} while the Brian2 overlay is shown
    this.lastBody = null;
    this.lastShown = null;
    const q = (id) => root.querySelector(`#${id}`);
    this.el = {
      surrogate: q("pop-surrogate"), kind: q("pop-kind"), amp: q("pop-amp"), ampOut: q("pop-amp-out"),
      ampRange: q("pop-amp-range"), n: q("pop-n"), seed: q("pop-seed"), gt: q("pop-gt"), npz: q("pop-npz"),
      nwb: q("pop-nwb"), status: q("pop-status"), info: q("pop-info"), ampError: q("pop-amp-error"),
      gtError: q("pop-gt-error"), dlError: q("pop-dl-error"), nError: q("pop-n-error"),
      mode: q("pop-mode"),
    };
    this.traces = new TracePlot(q("plot-traces"), q("readout-traces"));
    this.raster = new RasterPlot(q("plot-raster"), null);
    this.fi = new FIPlot(q("plot-fi"), q("readout-fi"));
    this._wire();
  }

  _wire() {
    const { el } = this;
    el.surrogate.addEventListener("change", () => this.selectModel(el.surrogate.value));
    el.amp.addEventListener("input", () => {
      el.ampOut.value = `${el.amp.value} pA`;
      this.fi.setCurrent(Number(el.amp.value));
      this.refresh({ timed: performance.now() });
    });
    el.kind.addEventListener("change", () => this.refresh({}));
    for (const input of [el.n, el.seed]) {
      input.addEventListener("change", () => {
        if (!input.checkValidity()) {
          showError(el.nError, new Error(`${input.labels[0].textContent.trim()}: ${input.validationMessage}`));
          return;
        }
        showError(el.nError, null);
        this.fiStale = true;
        this.refresh({});
      });
    }
    el.gt.addEventListener("click", () => this.runGroundTruth());
    el.npz.addEventListener("click", () => this.download("application/x-npz", "npz"));
    el.nwb.addEventListener("click", () => this.download("application/x-nwb", "nwb"));
  }

  async load() {
    const res = await api.models();
    this.models = res.surrogates;
    const { el } = this;
    el.surrogate.textContent = "";
    for (const m of this.models) {
      const opt = document.createElement("option");
      opt.value = m.name;
      opt.textContent = `${m.name}${m.cell_class ? ` — ${m.cell_class}` : ""}${m.default ? " (default)" : ""}`;
      el.surrogate.appendChild(opt);
    }
    if (!this.models.length) {
      el.status.textContent = `No surrogate is loaded on this server. ${(res.surrogate_errors || []).join("; ")}`;
      return;
    }
    const def = this.models.find((m) => m.default) || this.models[0];
    el.surrogate.value = def.name;
    this.selectModel(def.name);
  }

  selectModel(name) {
    this.model = this.models.find((m) => m.name === name);
    const m = this.model;
    const { el } = this;
    const [lo, hi] = m.amplitude_range_pA;
    el.amp.min = String(lo);
    el.amp.max = String(hi);
    el.amp.step = "5";
    const mid = m.trained_amplitudes_pA.find((a) => a >= lo + 0.45 * (hi - lo)) ?? (lo + hi) / 2;
    el.amp.value = String(Math.round(mid));
    el.ampOut.value = `${el.amp.value} pA`;
    el.ampRange.textContent = `trained ${lo} to ${hi} pA`;
    this._renderInfo(m);
    this.fiStale = true;
    this.refresh({});
  }

  _renderInfo(m) {
    const hm = m.heldout_metrics || {};
    const noiseFree = hm.noise_free && hm.noise_free.overall; // noble evaluate: vs noise-free Brian2 traces
    const metrics = noiseFree || hm.overall || hm;
    const pick = (path) => path.split(".").reduce((o, k) => (o && o[k] !== undefined ? o[k] : null), metrics);
    const rows = noiseFree ? [
      ["median voltage rel. L2 (depolarising steps)", pick("rel_l2.median"), 3],
      ["spike count within ±1", pick("frac_spike_count_within_1"), 2],
      ["F-I MAE (Hz)", pick("fi_mae_Hz"), 2],
      ["first 5 spike times, median error (ms)", pick("first5_spike_time_abs_err_ms.median"), 2],
      ["AP peak spread within a trace, median (mV)", pick("ap_peak_spread_mV.surrogate.median"), 1],
      ["  the same for Brian2 (mV)", pick("ap_peak_spread_mV.solver.median"), 1],
      ["AP peak error, median (mV)", pick("ap_peak_abs_err_mV.median"), 1],
      ["AP half-width error, median (ms)", pick("ap_half_width_abs_err_ms.median"), 2],
      ["AHP trough error, median (mV)", pick("ahp_trough_abs_err_mV.median"), 1],
      ["pre-step baseline error, median (mV)", pick("baseline_abs_err_mV.median"), 2],
    ].filter((r) => r[1] !== null) : [
      ["median voltage rel. L2", pick("rel_l2.median"), 3],
      ["spike count within ±1", pick("frac_spike_count_within_1"), 2],
      ["first-spike latency error, median (ms)", pick("first_spike_latency_abs_err_ms.median"), 2],
      ["F-I MAE (Hz)", pick("fi_mae_Hz"), 2],
      ["AP amplitude error, median (mV)", pick("ap_amplitude_abs_err_mV.median"), 1],
      ["AP half-width error, median (ms)", pick("ap_half_width_abs_err_ms.median"), 2],
    ].filter((r) => r[1] !== null);
    const card = m.card || {};
    const lim = card.limitations;
    const limText = Array.isArray(lim) ? lim.join(" ") : lim || "";
    const ranges = Object.entries(m.feature_ranges).map(([k, [a, b]], i) =>
      `<tr><td>${k}</td><td>${fmtNum(a)} – ${fmtNum(b)}</td><td>${(m.feature_units || [])[i] || ""}</td></tr>`).join("");
    this.el.info.innerHTML = `
      <p><strong>${esc(m.cell_class || m.name)}</strong> · family <code>${esc(m.family || "?")}</code>
      ${m.preset ? `· preset <code>${esc(m.preset)}</code>` : ""} · grid ${m.dt_ms} ms × ${m.n_time}
      · step ${m.stimulus_start_ms}–${m.stimulus_start_ms + m.stimulus_duration_ms} ms</p>
      <p>Trained step amplitudes (pA): ${m.trained_amplitudes_pA.join(", ")}</p>
      <details><summary>Held-out metrics (neurons the training never saw${noiseFree ? ", against noise-free Brian2" : ""})</summary>
        <table class="kv">${rows.map(([k, v, d]) => `<tr><td>${k}</td><td>${Number(v).toFixed(d)}</td></tr>`).join("")}</table>
      </details>
      <details><summary>Feature ranges</summary><table class="kv">${ranges}</table></details>
      ${limText ? `<details><summary>Limitations</summary><p class="limitations">${esc(limText)}</p></details>` : ""}`;
  }

  /** The /v1/sample body for the current controls (features: explicit members in ground-truth mode). */
  body(features = null) {
    const m = this.model;
    const amp = Number(this.el.amp.value);
    const kind = this.el.kind.value;
    const n = features ? features.length : Number(this.el.n.value);
    const seed = Number(this.el.seed.value);
    const stimulus = kind === "step" ? { kind: "step", amplitude_pA: amp }
      : { kind: "waveform", values_pA: waveform(kind, amp, m, seed), dt_ms: m.dt_ms };
    const body = { surrogate: m.name, n_samples: n, stimulus, seed, output_dt_ms: displayDt(m) };
    if (features) body.features = features;
    return body;
  }

  refresh({ timed = null }) {
    if (!this.model) return;
    this.groundTruth = null;
    showError(this.el.gtError, null);
    this.latest.run(async () => {
      const body = this.body();
      const t0 = performance.now();
      try {
        const res = await api.sample(body);
        this.lastBody = body;
        this._draw(res, null, `${res.n_samples} neurons sampled from the population density`);
        showError(this.el.ampError, null);
        const now = performance.now();
        this.el.status.textContent = `${res.n_samples} neurons · seed ${res.seed} · ${Math.round(now - t0)} ms`;
        if (this.metrics.firstTraceMs === null) this.metrics.firstTraceMs = now;
        if (timed !== null) this.metrics.redrawMs.push(now - timed);
        if (this.fiStale) { // the F-I curve waits for the traces: they are what the user asked for first
          this.fiStale = false;
          this.refreshFI();
        }
      } catch (err) {
        showError(this.el.ampError, err);
      }
    });
  }

  _draw(res, solver, mode) {
    const t = Array.from({ length: res.n_time }, (_, i) => res.t0_ms + i * res.dt_ms);
    const duration = res.n_time * res.dt_ms;
    this.traces.draw({ t, traces: res.v_mV, q05: res.bands.q05, q50: res.bands.q50, q95: res.bands.q95,
      solver: solver ? { traces: solver.v_on_grid } : null });
    this.raster.draw({ spikeTimes: res.spike_times_ms, durationMs: duration,
      solverSpikeTimes: solver ? solver.spike_times_ms : null });
    this.el.mode.textContent = mode;
    this.lastShown = res;
    this.root.dataset.shown = String(res.n_samples);
  }

  /** The population's F-I curve: the same neurons (same seed) at the trained step amplitudes >= 0. */
  async refreshFI() {
    const m = this.model;
    if (!m) return;
    const token = ++this.fiToken;
    const amps = m.trained_amplitudes_pA.filter((a) => a >= 0);
    const n = Number(this.el.n.value);
    const seed = Number(this.el.seed.value);
    const windowS = m.stimulus_duration_ms / 1000;
    if (this.fiAbort) this.fiAbort.abort(); // a newer selection supersedes the requests still out
    const abort = new AbortController();
    this.fiAbort = abort;
    const one = (a) => api.sample({ surrogate: m.name, n_samples: n, seed, include_traces: false,
      stimulus: { kind: "step", amplitude_pA: a } }, { signal: abort.signal });
    try {
      const answers = await inPool(amps, one, FI_CONCURRENCY);
      if (token !== this.fiToken) return; // superseded by a newer selection
      const q05 = [];
      const q50 = [];
      const q95 = [];
      answers.forEach((r) => {
        const rates = r.spike_counts.map((c) => c / windowS).sort((x, y) => x - y);
        q05.push(quantile(rates, 0.05));
        q50.push(quantile(rates, 0.5));
        q95.push(quantile(rates, 0.95));
      });
      this.fi.draw({ amps, q05, q50, q95, current: Number(this.el.amp.value) });
      this.metrics.fiDrawn += 1;
    } catch (err) {
      if (err.name !== "AbortError") showError(this.el.ampError, err);
    }
  }

  /** Members of the training population (held-out ones first), decoded by the surrogate and simulated by Brian2. */
  async runGroundTruth() {
    const m = this.model;
    const { el } = this;
    showError(el.gtError, null);
    el.gt.disabled = true;
    const n = Math.min(Number(el.n.value), GT_MAX_NEURONS);
    const seed = Number(el.seed.value);
    el.status.textContent = `simulating ${n} neurons with Brian2…`;
    try {
      const pop = await api.population(m.name, n, seed);
      const members = pop.members;
      const features = members.map((mb) => mb.features);
      const body = this.body(features);
      const stim = body.stimulus.kind === "step"
        ? { kind: "step", amplitude_pA: body.stimulus.amplitude_pA, start_ms: m.stimulus_start_ms,
          duration_ms: m.stimulus_duration_ms }
        : { kind: "waveform", values_pA: body.stimulus.values_pA, dt_ms: m.dt_ms, start_ms: 0 };
      const t0 = performance.now();
      const timed = async (promise) => {
        const out = await promise;
        return [out, performance.now() - t0];
      };
      const [[sur, surMs], [sim, simMs]] = await Promise.all([
        timed(api.sample(body)),
        timed(api.simulate({ family: pop.family, preset: pop.preset, params: members.map((mb) => mb.params),
          n_neurons: members.length, stimulus: stim, duration_ms: m.duration_ms, dt_ms: 0.025,
          record_dt_ms: displayDt(m), seed })),
      ]);
      const vOnGrid = sim.v_mV.map((v) => v.slice(0, sur.n_time));
      const held = members.filter((mb) => mb.heldout).length;
      this.lastBody = body;
      this.groundTruth = { members, sim };
      this._draw(sur, { v_on_grid: vOnGrid, spike_times_ms: sim.spike_times_ms },
        `${members.length} members of the training population (${held} held out, never trained on): ` +
        "surrogate in colour, Brian2 dashed black");
      const rows = members.map((mb, i) => `<tr><td>${i + 1}</td><td>${mb.heldout ? "held out" : "training"}</td>
        <td>${sur.spike_counts[i]}</td><td>${sim.spike_counts[i]}</td></tr>`).join("");
      el.status.innerHTML = `${members.length} neurons: the surrogate answered in ${Math.round(surMs)} ms,
        Brian2 (dt 0.025 ms, no noise) in ${(simMs / 1000).toFixed(1)} s (${sim.wall_s.toFixed(1)} s simulating)
        <table class="kv gt-table"><tr><th>neuron</th><th>member</th><th>spikes, surrogate</th><th>spikes, Brian2</th></tr>${rows}</table>`;
    } catch (err) {
      showError(el.gtError, err);
      el.status.textContent = "";
    } finally {
      el.gt.disabled = false;
    }
  }

  async download(accept, ext) {
    showError(this.el.dlError, null);
    if (!this.lastBody) return;
    try {
      const blob = await api.sampleFile(this.lastBody, accept);
      const body = this.lastBody;
      saveBlob(blob, `noble-${body.surrogate}-seed${body.seed}.${ext}`);
    } catch (err) {
      showError(this.el.dlError, err);
    }
  }
}

function fmtNum(x) {
  const a = Math.abs(x);
  return a !== 0 && (a < 0.01 || a >= 1e4) ? x.toExponential(2) : x.toFixed(2);
}

function esc(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}
export { esc };
