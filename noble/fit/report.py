"""Files of a fit: fit.json (everything but the traces), an overlay PNG of recording vs fit for every sweep,
and an NWB file of the fitted (simulated) responses with their stimuli."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from noble.io import Sweep, write_nwb
from noble.io._atomic import atomic_path

from .api import FitResult
from .physiology import compact_parts


def _stem(source: str) -> str:
    name = Path(str(source)).name or "recording"
    return name.rsplit(".", 1)[0] if "." in name else name


def _surrogate_in_window(tr: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(t ms, v mV) of sweep k's surrogate trace within the recorded sweep and up to its step's end (the
    surrogate is driven by its trained step length: what follows a shorter recorded step is no response to it)."""
    st = np.asarray(tr.surrogate_t_ms[k], dtype=np.float64)
    su = np.asarray(tr.surrogate_v_mV[k], dtype=np.float64)
    keep = (st >= 0) & (st <= len(tr.recorded[k]) * tr.recorded_dt_ms[k]) & (st <= tr.stim_end_ms[k])
    return st[keep], su[keep]


_STATUS_COLOUR = {"ok": "tab:green", "fail": "tab:red"}


def _check_line(ax: Any, parts: list[tuple[str, str]]) -> None:
    """The sweep's physiology checks above its panel, each piece coloured by its status (ok green, fail red, not
    judged grey), pieces chained left to right from the panel's left edge."""
    prev = None
    for i, (text, status) in enumerate(parts):
        s = ("· " if i else "") + text + " "
        kw = dict(fontsize=7, color=_STATUS_COLOUR.get(status, "0.45"), va="bottom", ha="left")
        if prev is None:
            prev = ax.annotate(s, xy=(0.0, 1.01), xycoords="axes fraction", **kw)
        else:
            prev = ax.annotate(s, xy=(1.0, 0.0), xycoords=prev, **kw)


def overlay_png(result: FitResult, path: str | os.PathLike[str]) -> Path:
    """One panel per sweep: recording (black), hh fit (red), the surrogate stage's warm start (the population's
    surrogate at its fitted features: blue, dashed), and above it the sweep's physiology checks in a line
    (`physiology.compact_parts`, each coloured by its status)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tr = result.traces
    if tr is None:
        raise ValueError("the result carries no traces")
    S = len(tr.recorded)
    cols = min(4, S)
    rows = int(math.ceil(S / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.8 * rows), sharey=True, squeeze=False)
    phys = {r["sweep"]: r for r in (result.physiology or {}).get("sweeps", [])}
    bridge = result.bridge or {}
    rec_label = (f"recording ({bridge['r_MOhm']:.1f} MOhm bridge error removed)" if bridge.get("applied")
                 else "recording")
    # the surrogate stage's warm start, not a second fit: its population's best features for this recording
    sur_name = (result.stage1 or {}).get("surrogate")
    sur_label = f"surrogate stage ({sur_name}: the warm start)" if sur_name else "surrogate stage (the warm start)"
    for k in range(S):
        ax = axes[k // cols][k % cols]
        v = np.asarray(tr.recorded[k])
        ax.plot(np.arange(len(v)) * tr.recorded_dt_ms[k], v, color="k", lw=0.6, label=rec_label)
        if tr.simulated_v_mV is not None:
            sv = np.asarray(tr.simulated_v_mV[k])
            n = min(len(sv), int(round(len(v) * tr.recorded_dt_ms[k] / tr.simulated_dt_ms)))
            ax.plot(np.arange(n) * tr.simulated_dt_ms, sv[:n], color="tab:red", lw=0.6, alpha=0.85, label="hh fit")
        if tr.surrogate_v_mV is not None and tr.surrogate_t_ms is not None:
            st, su = _surrogate_in_window(tr, k)
            ax.plot(st, su, color="tab:blue", lw=0.6, ls="--", alpha=0.8, label=sur_label)
        ax.axvspan(tr.stim_start_ms[k], tr.stim_end_ms[k], color="0.9", zorder=0)
        ax.set_title(f"sweep {tr.sweep_index[k]}: {tr.amplitudes_pA[k]:+g} pA", fontsize=8, pad=11)
        row = phys.get(tr.sweep_index[k])
        if row is not None and row["checks"]:
            _check_line(ax, compact_parts(row))
        ax.tick_params(labelsize=7)
        if k % cols == 0:
            ax.set_ylabel("V (mV)", fontsize=8)
        if k // cols == rows - 1:
            ax.set_xlabel("t (ms)", fontsize=8)
    for k in range(S, rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(fontsize=7, loc="upper left")
    title = (f"{_stem(result.source)}: objective {result.objective:.3g} (mean squared z), "
             f"checks {'pass' if result.checks.get('all_ok') else 'partial'}")
    summ = (result.physiology or {}).get("summary")
    if summ:
        cell = result.physiology.get("cell", {})
        extra = "; ".join(f"{name} {c['status']}" for name, c in cell.items())
        title += (f"; physiology: {summ['n_ok']} ok, {summ['n_fail']} fail, {summ['n_not_judged']} not judged"
                  + (f" ({extra})" if extra else ""))
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path


def fitted_sweeps(result: FitResult) -> list[Sweep]:
    """The simulated responses as Sweeps: to each whole recorded sweep on the recording's own time base when the
    fit produced them (`FitTraces.whole_sweeps`), else on the fitted window's timeline with the step rendered."""
    tr = result.traces
    if tr is not None and tr.whole_sweeps:
        return list(tr.whole_sweeps)
    if tr is None or tr.simulated_v_mV is None:
        raise ValueError("the result carries no simulated traces")
    out = []
    for k in range(len(tr.recorded)):
        n = min(len(tr.simulated_v_mV[k]), int(round(len(tr.recorded[k]) * tr.recorded_dt_ms[k] / tr.simulated_dt_ms)))
        out.append(Sweep(v_mV=np.asarray(tr.simulated_v_mV[k][:n], dtype=np.float64),
                         stim_amplitude_pA=tr.amplitudes_pA[k], stim_start_ms=tr.stim_start_ms[k],
                         stim_end_ms=tr.stim_end_ms[k], dt_ms=tr.simulated_dt_ms, index=tr.sweep_index[k]))
    return out


def surrogate_sweeps(result: FitResult) -> list[Sweep] | None:
    """The surrogate's traces at the fitted features as Sweeps on the surrogate's own grid, cut as the overlay
    draws them (`_surrogate_in_window`); None without stage 1."""
    tr = result.traces
    if tr is None or tr.surrogate_v_mV is None or tr.surrogate_t_ms is None:
        return None
    out = []
    for k in range(len(tr.recorded)):
        st, su = _surrogate_in_window(tr, k)
        if len(st) < 10:
            continue
        t0 = float(st[0])
        dt = round(float(np.median(np.diff(st))), 9)  # the surrogate grid, without the shift's round-off
        out.append(Sweep(v_mV=su, dt_ms=dt, t0_ms=t0, index=tr.sweep_index[k],
                         stim_amplitude_pA=tr.amplitudes_pA[k], stim_start_ms=tr.stim_start_ms[k] - t0,
                         stim_end_ms=tr.stim_end_ms[k] - t0))
    return out or None


def minmax_decimate(t_ms: np.ndarray, v_mV: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """At most max_points of (t, v) keeping each bucket's minimum and maximum in time order, so every AP peak
    and trough of a long trace survives the thinning (plain striding would drop narrow spikes)."""
    t = np.asarray(t_ms, dtype=np.float64)
    v = np.asarray(v_mV, dtype=np.float64)
    if len(v) <= max_points:
        return t, v
    n_buckets = max(1, max_points // 2)
    edges = np.linspace(0, len(v), n_buckets + 1).astype(int)
    keep = []
    for a, b in zip(edges[:-1], edges[1:]):
        if b <= a:
            continue
        seg = v[a:b]
        i, j = a + int(np.argmin(seg)), a + int(np.argmax(seg))
        keep.extend(sorted({i, j}))
    idx = np.asarray(keep, dtype=np.int64)
    return t[idx], v[idx]


def _trace_json(t: np.ndarray, v: np.ndarray, max_points: int) -> dict[str, list[float | None]]:
    td, vd = minmax_decimate(t, v, max_points)
    return {"t_ms": [round(float(x), 3) for x in td],
            "v_mV": [round(float(x), 2) if math.isfinite(x) else None for x in vd]}


def overlay_doc(result: FitResult, max_points: int = 3000) -> dict[str, Any]:
    """Every sweep's recording, hh fit and surrogate trace (min-max thinned to max_points each) with its
    acceptance checks and physiology checks (`checks.physiology`, per check as in fit.json `physiology`): what a
    browser needs to draw the overlay interactively (`overlay.json`). Top level: the cell-wide acceptance checks,
    and `physiology` (the cell's checks and the summary)."""
    tr = result.traces
    if tr is None:
        raise ValueError("the result carries no traces")
    counts = {c["sweep"]: c for c in result.checks.get("spike_counts", [])}
    phys = {r["sweep"]: r for r in (result.physiology or {}).get("sweeps", [])}
    lats = {c["sweep"]: c for c in result.checks.get("latency", [])}
    sweeps = []
    for k in range(len(tr.recorded)):
        v = np.asarray(tr.recorded[k], dtype=np.float64)
        idx = tr.sweep_index[k]
        item: dict[str, Any] = {
            "sweep": idx, "amplitude_pA": float(tr.amplitudes_pA[k]), "stim_start_ms": float(tr.stim_start_ms[k]),
            "stim_end_ms": float(tr.stim_end_ms[k]),
            "recording": _trace_json(np.arange(len(v)) * tr.recorded_dt_ms[k], v, max_points),
            "model": None, "surrogate": None,
            "checks": {"spike_count": counts.get(idx), "latency": lats.get(idx),
                       "physiology": (phys[idx]["checks"] if idx in phys else None)},
            "rms_z": next((z for lbl, z in result.per_sweep_rms_z.items() if lbl.startswith(f"sweep {idx} (")), None),
        }
        if tr.simulated_v_mV is not None:
            sv = np.asarray(tr.simulated_v_mV[k], dtype=np.float64)
            n = min(len(sv), int(round(len(v) * tr.recorded_dt_ms[k] / tr.simulated_dt_ms)))
            item["model"] = _trace_json(np.arange(n) * tr.simulated_dt_ms, sv[:n], max_points)
        if tr.surrogate_v_mV is not None and tr.surrogate_t_ms is not None:
            st, su = _surrogate_in_window(tr, k)
            if len(st):
                item["surrogate"] = _trace_json(st, su, max_points)
        sweeps.append(item)
    phys_doc = result.physiology or {}
    return {"source": _stem(result.source), "surrogate": result.stage1.get("surrogate"), "sweeps": sweeps,
            "checks": {k: v for k, v in result.checks.items() if k not in ("spike_counts", "latency")},
            "physiology": ({"cell": phys_doc.get("cell"), "summary": phys_doc.get("summary")} if phys_doc else None)}


def write_outputs(result: FitResult, out_dir: str | os.PathLike[str], stem: str | None = None) -> dict[str, str]:
    """Write <stem>_fit.png, <stem>_fit.nwb (hh responses), <stem>_surrogate.nwb (the surrogate's, when stage 1
    ran), overlay.json (the overlay's traces, thinned, for the web explorer) and fit.json into out_dir; returns
    their paths (also in result.files)."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    stem = stem or _stem(result.source)
    png = overlay_png(result, d / f"{stem}_fit.png")
    with atomic_path(d / "overlay.json") as tmp:
        Path(tmp).write_text(json.dumps(overlay_doc(result), allow_nan=False))
    params = {k: v["value"] for k, v in result.parameters.items()}
    nwb = write_nwb(d / f"{stem}_fit.nwb", fitted_sweeps(result),
                    session_description=f"noble fit of {result.source}: hh responses at the fitted parameters",
                    cell=stem, metadata={"fit": {"source": result.source, "parameters": params,
                                                  "objective": result.objective}})
    files = {"png": str(png), "nwb": str(nwb), "json": str(d / "fit.json"), "overlay": str(d / "overlay.json")}
    sur = surrogate_sweeps(result)
    if sur is not None:
        features = {k: v["value"] for k, v in result.stage1.get("features", {}).items()}
        files["surrogate_nwb"] = str(write_nwb(
            d / f"{stem}_surrogate.nwb", sur, cell=stem,
            session_description=f"noble fit of {result.source}: surrogate ({result.stage1.get('surrogate')}) "
                                "responses at the fitted features, up to each step's end",
            metadata={"fit": {"source": result.source, "surrogate": result.stage1.get("surrogate"),
                              "features": features}}))
    result.files = files
    doc: dict[str, Any] = result.to_json_dict()
    with atomic_path(d / "fit.json") as tmp:
        Path(tmp).write_text(json.dumps(doc, indent=1, default=float) + "\n")
    return files
