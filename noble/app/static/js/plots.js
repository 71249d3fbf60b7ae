// uPlot wrappers: population traces with their 5-95 % band, a spike raster, an F-I curve with its spread,
// and one overlay panel per fitted sweep. Each plot reads out the value under the cursor and zooms by dragging
// (double-click resets); the traces and the raster share their time axis.
/* global uPlot */

const NEURON_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
  "#bcbd22", "#17becf"];

export function neuronColour(i, alpha = 0.75) {
  const hex = NEURON_COLOURS[i % NEURON_COLOURS.length];
  const a = Math.round(alpha * 255).toString(16).padStart(2, "0");
  return hex + a;
}

function widthOf(el) {
  return Math.max(320, Math.floor(el.getBoundingClientRect().width || el.clientWidth || 640));
}

function fmt(v, digits = 1) {
  return v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(digits);
}

/** Write `text(data, i)` for the data index under the cursor into `el` (cleared off the plot). */
function cursorReadout(u, el, text) {
  if (!el) return;
  const i = u.cursor.idx;
  el.textContent = i === null || i === undefined ? "" : text(u.data, i);
}

/** A uPlot whose x range is kept in step with other plots of the same group (zoom on one, zoom on all). */
class XGroup {
  constructor() {
    this.plots = new Set();
    this.busy = false;
  }
  hook() {
    return (u, key) => {
      if (key !== "x" || this.busy) return;
      this.busy = true;
      const { min, max } = u.scales.x;
      for (const p of this.plots) if (p !== u && p.scales.x.min !== min) p.setScale("x", { min, max });
      this.busy = false;
    };
  }
}
export const timeGroup = new XGroup();

/**
 * Population traces: one series per neuron, the 5-95 % band and the median; optional Brian2 overlay
 * (dashed black, one per neuron). `readout` gets "t, median, band" under the cursor.
 */
export class TracePlot {
  constructor(el, readout) {
    this.el = el;
    this.readout = readout;
    this.plot = null;
    this.nNeurons = 0;
    this.nSolver = 0;
  }

  draw({ t, traces, q05, q50, q95, solver = null, label = "" }) {
    const series = [{ label: "t (ms)" }];
    const data = [t];
    // Band edges first so the neuron traces draw over the fill.
    series.push({ label: "q95", stroke: "#9ecae1", width: 1, points: { show: false } });
    data.push(q95);
    series.push({ label: "q05", stroke: "#9ecae1", width: 1, points: { show: false } });
    data.push(q05);
    traces.forEach((v, i) => {
      series.push({ label: `neuron ${i + 1}`, stroke: neuronColour(i, 0.55), width: 1, points: { show: false } });
      data.push(v);
    });
    series.push({ label: "median", stroke: "#08306b", width: 1.5, points: { show: false } });
    data.push(q50);
    const solverTraces = solver ? solver.traces : [];
    solverTraces.forEach((v, i) => {
      series.push({ label: `Brian2 ${i + 1}`, stroke: "#000000cc", width: 1, dash: [4, 3], points: { show: false } });
      data.push(v);
    });
    this.nNeurons = traces.length;
    this.nSolver = solverTraces.length;
    const opts = {
      width: widthOf(this.el), height: 300, title: label,
      legend: { show: false },
      cursor: { drag: { x: true, y: false }, points: { show: false }, sync: { key: "noble-time" } },
      scales: { x: { time: false } },
      axes: [{ label: "t (ms)" }, { label: "V (mV)" }],
      bands: [{ series: [1, 2], fill: "#c6dbef66" }],
      series,
      hooks: {
        setCursor: [(u) => this._readout(u)],
        setScale: [timeGroup.hook()],
      },
    };
    if (this.plot) {
      timeGroup.plots.delete(this.plot);
      this.plot.destroy();
    }
    this.el.textContent = "";
    this.plot = new uPlot(opts, data, this.el);
    timeGroup.plots.add(this.plot);
    this.el.dataset.neuronSeries = String(this.nNeurons);
    this.el.dataset.solverSeries = String(this.nSolver);
    return this.plot;
  }

  _readout(u) {
    cursorReadout(u, this.readout, (d, i) => `t ${fmt(d[0][i], 2)} ms · median ${fmt(d[3 + this.nNeurons][i])} mV`
      + ` · 5–95 % [${fmt(d[2][i])}, ${fmt(d[1][i])}] mV`);
  }
}

/** Spike raster: one row per neuron, a dot per spike (times in ms on the traces' axis). */
export class RasterPlot {
  constructor(el, readout) {
    this.el = el;
    this.readout = readout;
    this.plot = null;
  }

  draw({ spikeTimes, durationMs, solverSpikeTimes = null }) {
    // Aligned data: x = every spike time of every neuron, y_k = row k where neuron k spikes, else null.
    const rows = spikeTimes.map((ts, k) => ts.map((t) => [t, k, 0]));
    const solverRows = (solverSpikeTimes || []).map((ts, k) => ts.map((t) => [t, k, 1]));
    const all = rows.flat().concat(solverRows.flat()).sort((a, b) => a[0] - b[0]);
    const xs = all.map((p) => p[0]);
    const nSeries = spikeTimes.length + (solverSpikeTimes ? solverSpikeTimes.length : 0);
    const ys = Array.from({ length: nSeries }, () => new Array(xs.length).fill(null));
    all.forEach(([, k, src], j) => {
      const s = src === 0 ? k : spikeTimes.length + k;
      ys[s][j] = src === 0 ? k + 1 : k + 1.3;
    });
    const series = [{ label: "t (ms)" }];
    spikeTimes.forEach((_, k) => series.push({
      label: `neuron ${k + 1}`, stroke: neuronColour(k, 1), paths: () => null,
      points: { show: true, size: 5, fill: neuronColour(k, 1), stroke: neuronColour(k, 1) },
    }));
    (solverSpikeTimes || []).forEach((_, k) => series.push({
      label: `Brian2 ${k + 1}`, stroke: "#000", paths: () => null,
      points: { show: true, size: 4, fill: "#000", stroke: "#000" },
    }));
    const opts = {
      width: widthOf(this.el), height: Math.max(150, Math.min(320, 90 + 12 * spikeTimes.length)),
      legend: { show: false },
      cursor: { drag: { x: true, y: false }, points: { show: false }, sync: { key: "noble-time" } },
      scales: { x: { time: false, range: [0, durationMs] }, y: { range: [0, spikeTimes.length + 1] } },
      axes: [{ label: "t (ms)" }, { label: "neuron", incrs: [1, 2, 5, 10, 20, 50] }],
      series,
      hooks: { setScale: [timeGroup.hook()] },
    };
    if (this.plot) {
      timeGroup.plots.delete(this.plot);
      this.plot.destroy();
    }
    this.el.textContent = "";
    this.plot = new uPlot(opts, [xs, ...ys], this.el);
    timeGroup.plots.add(this.plot);
    this.el.dataset.rows = String(spikeTimes.length);
    this.el.dataset.spikes = String(rows.flat().length);
  }
}

/** F-I curve of a population: median rate and the 5-95 % spread per amplitude, the current amplitude marked. */
export class FIPlot {
  constructor(el, readout) {
    this.el = el;
    this.readout = readout;
    this.plot = null;
    this.marker = null;
  }

  draw({ amps, q05, q50, q95, solver = null, current = null }) {
    const series = [
      { label: "I (pA)" },
      { label: "q95", stroke: "#fdae6b", width: 1, points: { show: false } },
      { label: "q05", stroke: "#fdae6b", width: 1, points: { show: false } },
      { label: "median", stroke: "#a63603", width: 2, points: { show: true, size: 5 } },
    ];
    const data = [amps, q95, q05, q50];
    if (solver) {
      series.push({ label: "Brian2 median", stroke: "#000", dash: [4, 3], width: 1.5, points: { show: true, size: 4 } });
      data.push(solver);
    }
    this.marker = current;
    const opts = {
      width: widthOf(this.el), height: 240, legend: { show: false },
      cursor: { drag: { x: true, y: false }, points: { show: true } },
      scales: { x: { time: false } },
      axes: [{ label: "step amplitude (pA)" }, { label: "rate (Hz)" }],
      bands: [{ series: [1, 2], fill: "#fdd0a266" }],
      series,
      hooks: {
        setCursor: [(u) => this._readout(u)],
        draw: [(u) => this._drawMarker(u)],
      },
    };
    if (this.plot) this.plot.destroy();
    this.el.textContent = "";
    this.plot = new uPlot(opts, data, this.el);
    this.el.dataset.points = String(amps.length);
  }

  setCurrent(amp) {
    this.marker = amp;
    if (this.plot) this.plot.redraw(false, false);
  }

  _drawMarker(u) {
    if (this.marker === null || this.marker === undefined) return;
    const x = u.valToPos(this.marker, "x", true);
    const ctx = u.ctx;
    ctx.save();
    ctx.strokeStyle = "#555";
    ctx.setLineDash([3, 3]);
    ctx.beginPath();
    ctx.moveTo(x, u.bbox.top);
    ctx.lineTo(x, u.bbox.top + u.bbox.height);
    ctx.stroke();
    ctx.restore();
  }

  _readout(u) {
    cursorReadout(u, this.readout, (d, i) => `${fmt(d[0][i], 0)} pA · median ${fmt(d[3][i])} Hz`
      + ` · 5–95 % [${fmt(d[2][i])}, ${fmt(d[1][i])}] Hz`);
  }
}

/** One fitted sweep: recording (black), hh fit (red), surrogate (blue dashed), on their own time bases. */
export function overlayPlot(el, sweep, width) {
  const traces = [["recording", sweep.recording, "#000"], ["hh fit", sweep.model, "#d62728"],
    ["surrogate", sweep.surrogate, "#1f77b4"]].filter((x) => x[1]);
  // Join the time bases (uPlot shares x across series); each series is null off its own samples.
  const times = new Set();
  traces.forEach(([, tr]) => tr.t_ms.forEach((t) => times.add(t)));
  const xs = Float64Array.from(times).sort();
  const index = new Map();
  xs.forEach((t, i) => index.set(t, i));
  const data = [xs];
  const series = [{ label: "t (ms)" }];
  traces.forEach(([name, tr, colour]) => {
    const y = new Array(xs.length).fill(null);
    tr.t_ms.forEach((t, j) => { y[index.get(t)] = tr.v_mV[j]; });
    data.push(y);
    series.push({ label: name, stroke: colour, width: 1, spanGaps: true, dash: name === "surrogate" ? [4, 3] : undefined,
      points: { show: false } });
  });
  const opts = {
    width, height: 170, title: `sweep ${sweep.sweep}: ${sweep.amplitude_pA > 0 ? "+" : ""}${sweep.amplitude_pA} pA`,
    legend: { show: true, live: true }, // the hover read-out: t and each trace's voltage
    cursor: { drag: { x: true, y: false } },
    scales: { x: { time: false } },
    axes: [{ label: "t (ms)", size: 30 }, { label: "V (mV)", size: 45 }],
    series,
  };
  el.textContent = "";
  const plot = new uPlot(opts, data, el);
  el.dataset.series = String(traces.length);
  return plot;
}
