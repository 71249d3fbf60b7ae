"""Held-out evaluation of a surrogate: voltage relative L2, spike-count error, first-spike latency error,
F-I curve error, AP amplitude and half-width errors, per amplitude and overall; plus a figure.

Everything is compared on the surrogate's grid (the simulated trace subsampled to its dt), and spikes are
found on BOTH traces by the same eFEL extractor the dataset uses (noble.datagen.features.trace_features),
so the numbers compare like for like.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..datagen.features import trace_features
from .data import TraceSet, load_traces
from .model import Surrogate

# Targets of the issue for the default model (reported next to the figures in the card).
TARGETS = {"median_rel_l2": 0.15, "frac_spike_count_within_1": 0.90, "median_latency_error_ms": 2.0,
           "fi_mae_Hz": 3.0}


def _stats(err: np.ndarray) -> dict[str, float | int]:
    e = np.asarray(err, dtype=float)
    e = e[np.isfinite(e)]
    if len(e) == 0:
        return {"n": 0, "mean": float("nan"), "median": float("nan"), "p90": float("nan")}
    return {"n": int(len(e)), "mean": float(e.mean()), "median": float(np.median(e)),
            "p90": float(np.quantile(e, 0.9))}


def trace_metrics(v_pred: np.ndarray, v_true: np.ndarray, dt_ms: float, start_ms: float, end_ms: float,
                  amp_pA: np.ndarray) -> dict[str, np.ndarray]:
    """Per-trace errors of predicted vs simulated traces (rows), both analysed by eFEL."""
    fp = trace_features(v_pred, dt_ms, start_ms, end_ms, amp_pA)
    ft = trace_features(v_true, dt_ms, start_ms, end_ms, amp_pA)
    dur_s = (end_ms - start_ms) / 1000.0
    rel = np.linalg.norm(v_pred - v_true, axis=1) / np.linalg.norm(v_true, axis=1)
    return {
        "rel_l2": rel,
        "count_true": ft["spike_count"], "count_pred": fp["spike_count"],
        "count_err": fp["spike_count"] - ft["spike_count"],
        "rate_err_Hz": (fp["spike_count"] - ft["spike_count"]) / dur_s,
        "latency_true_ms": ft["first_spike_latency_ms"], "latency_pred_ms": fp["first_spike_latency_ms"],
        "latency_err_ms": fp["first_spike_latency_ms"] - ft["first_spike_latency_ms"],
        "ap_amp_err_mV": fp["ap_amplitude_mV"] - ft["ap_amplitude_mV"],
        "ap_hw_err_ms": fp["ap_half_width_ms"] - ft["ap_half_width_ms"],
    }


def summarise(m: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, Any]:
    """Aggregate per-trace errors over the rows in mask."""
    ce = m["count_err"][mask]
    spiking_true = m["count_true"][mask] > 0
    spiking_pred = m["count_pred"][mask] > 0
    depol = mask  # caller restricts F-I to depolarising steps
    return {
        "n_traces": int(mask.sum()),
        "rel_l2": _stats(m["rel_l2"][mask]),
        "spike_count_abs_err": _stats(np.abs(ce)),
        "frac_spike_count_within_1": float(np.mean(np.abs(ce) <= 1)) if len(ce) else float("nan"),
        "first_spike_latency_abs_err_ms": _stats(np.abs(m["latency_err_ms"][mask])),
        "spiking_disagreements": int(np.sum(spiking_true != spiking_pred)),
        "fi_mae_Hz": float(np.mean(np.abs(m["rate_err_Hz"][depol]))) if depol.any() else float("nan"),
        "ap_amplitude_abs_err_mV": _stats(np.abs(m["ap_amp_err_mV"][mask])),
        "ap_half_width_abs_err_ms": _stats(np.abs(m["ap_hw_err_ms"][mask])),
    }


def evaluate_surrogate(sur: Surrogate, traces: TraceSet, model_ids: np.ndarray | None = None,
                       batch: int = 64) -> dict[str, Any]:
    """Metrics on the rows of `model_ids` (default: every model in `traces`), per amplitude and overall."""
    cfg = sur.config
    if traces.dt_ms != cfg.dt_ms or traces.n_time != cfg.n_time:
        raise ValueError(f"dataset grid ({traces.dt_ms} ms x {traces.n_time}) differs from the surrogate's "
                         f"({cfg.dt_ms} ms x {cfg.n_time})")
    ids = traces.models() if model_ids is None else np.asarray(model_ids)
    rows = traces.rows_of(ids)
    feats = traces.features[rows]
    lo = np.array([cfg.feature_ranges[n][0] for n in cfg.feature_names])
    hi = np.array([cfg.feature_ranges[n][1] for n in cfg.feature_names])
    outside = np.any((feats < lo) | (feats > hi), axis=1)
    pred = sur.predict(feats, traces.stim_pA[rows], check_range=False)
    true = traces.v_mV[rows]
    amps = traces.amp_pA[rows]
    p = cfg.stimulus
    m = trace_metrics(pred, true, cfg.dt_ms, p.start_ms, p.end_ms, amps)
    per_amp = {}
    for a in np.unique(amps):
        per_amp[f"{a:g}"] = summarise(m, amps == a)
    overall = summarise(m, amps > 0)
    overall["rel_l2_all_steps"] = _stats(m["rel_l2"])
    overall["n_models"] = int(len(ids))
    overall["n_models_outside_trained_range"] = int(len(np.unique(traces.model_id[rows][outside])))
    overall["n_amplitudes"] = int(len(np.unique(amps)))
    overall["targets"] = TARGETS
    overall["meets"] = {
        "median_rel_l2": overall["rel_l2_all_steps"]["median"] <= TARGETS["median_rel_l2"],
        "frac_spike_count_within_1": overall["frac_spike_count_within_1"] >= TARGETS["frac_spike_count_within_1"],
        "median_latency_error_ms": (overall["first_spike_latency_abs_err_ms"]["median"]
                                    <= TARGETS["median_latency_error_ms"]),
        "fi_mae_Hz": overall["fi_mae_Hz"] <= TARGETS["fi_mae_Hz"],
    }
    return {"overall": overall, "per_amplitude": per_amp,
            "_arrays": {"pred": pred, "true": true, "amps": amps, "model_id": traces.model_id[rows], **m}}


def plot_evaluation(result: dict[str, Any], dt_ms: float, path: Path, n_models: int = 2) -> Path:
    """PNG: predicted vs simulated traces (2 held-out neurons x 3 amplitudes) and F-I curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = result["_arrays"]
    amps, mids = arr["amps"], arr["model_id"]
    ids = np.unique(mids)[:n_models]
    pos = np.unique(amps[amps > 0])
    show = [pos[len(pos) // 4], pos[len(pos) // 2], pos[-1]] if len(pos) >= 3 else list(pos)
    fig, axes = plt.subplots(len(ids) + 1, len(show), figsize=(4.2 * len(show), 2.6 * (len(ids) + 1)),
                             squeeze=False)
    t = np.arange(arr["true"].shape[1]) * dt_ms
    for r, mid in enumerate(ids):
        for c, a in enumerate(show):
            k = np.flatnonzero((mids == mid) & (amps == a))
            ax = axes[r, c]
            if len(k):
                ax.plot(t, arr["true"][k[0]], "k", lw=0.6, label="Brian2")
                ax.plot(t, arr["pred"][k[0]], "r", lw=0.6, alpha=0.8, label="surrogate")
                ax.set_title(f"model {mid}, {a:g} pA (rel L2 {arr['rel_l2'][k[0]]:.2f})", fontsize=8)
            ax.set_xlabel("t (ms)", fontsize=7)
            ax.set_ylabel("V (mV)", fontsize=7)
            ax.tick_params(labelsize=6)
    axes[0, 0].legend(fontsize=6)
    ax = axes[-1, 0]
    for mid in np.unique(mids):
        k = np.flatnonzero((mids == mid) & (amps > 0))
        order = k[np.argsort(amps[k])]
        ax.plot(amps[order], arr["count_true"][order], "k-", lw=0.6, alpha=0.6)
        ax.plot(amps[order], arr["count_pred"][order], "r--", lw=0.6, alpha=0.6)
    ax.set_title("F-I (spikes / 1 s): Brian2 black, surrogate red dashed", fontsize=8)
    ax.set_xlabel("I (pA)", fontsize=7)
    ax = axes[-1, 1] if len(show) > 1 else ax
    ax.hist(arr["count_err"][amps > 0], bins=np.arange(-6.5, 7.5, 1), color="0.4")
    ax.set_title("spike-count error (pred - true)", fontsize=8)
    if len(show) > 2:
        ax = axes[-1, 2]
        lt, lp = arr["latency_true_ms"], arr["latency_pred_ms"]
        ax.plot(lt, lp, ".", ms=3)
        lim = np.nanmax(np.concatenate([lt, lp])) if np.isfinite(lt).any() else 1.0
        ax.plot([0, lim], [0, lim], "k:", lw=0.6)
        ax.set_title("first-spike latency (ms): surrogate vs Brian2", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def heldout_ids_for(sur: Surrogate, traces: TraceSet) -> tuple[np.ndarray, str]:
    """Held-out models of the training dataset, or every model when the dataset is another one."""
    digest = (sur.card.get("training_data") or {}).get("config_digest")
    if digest is not None and digest == traces.manifest.get("config_digest"):
        return np.asarray(sur.config.heldout_model_ids, dtype=np.int64), "held-out models of the training dataset"
    return traces.models(), "all models (dataset other than the training one)"


def run_evaluation(ckpt: str | Path, dataset: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """CLI body: load, evaluate held-out models, write metrics.json + evaluation.png into out."""
    from .checkpoint import load_surrogate

    sur = load_surrogate(ckpt)
    traces = load_traces(dataset, sur.config.feature_names, sur.config.dt_ms)
    ids, which = heldout_ids_for(sur, traces)
    res = evaluate_surrogate(sur, traces, ids)
    report = {"checkpoint": str(ckpt), "dataset": str(dataset), "models": which,
              "overall": res["overall"], "per_amplitude": res["per_amplitude"]}
    if out is not None:
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        (d / "metrics.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
        plot_evaluation(res, sur.config.dt_ms, d / "evaluation.png")
    return report


def format_table(report: dict[str, Any]) -> str:
    """Plain-text table: per amplitude and overall."""
    head = f"{'amp pA':>8} {'n':>4} {'relL2 med':>9} {'|dN|<=1':>8} {'|dN| mean':>9} {'lat err ms':>10} " \
           f"{'F-I MAE Hz':>10} {'APamp err':>9} {'AP hw err':>9}"
    lines = [head]

    def row(name: str, s: dict[str, Any]) -> str:
        return (f"{name:>8} {s['n_traces']:>4} {s['rel_l2']['median']:>9.3f} {s['frac_spike_count_within_1']:>8.2f} "
                f"{s['spike_count_abs_err']['mean']:>9.2f} {s['first_spike_latency_abs_err_ms']['median']:>10.2f} "
                f"{s['fi_mae_Hz']:>10.2f} {s['ap_amplitude_abs_err_mV']['median']:>9.2f} "
                f"{s['ap_half_width_abs_err_ms']['median']:>9.3f}")

    for a, s in sorted(report["per_amplitude"].items(), key=lambda kv: float(kv[0])):
        lines.append(row(a, s))
    o = report["overall"]
    lines.append(row("all>0", o))
    lines.append(f"median rel L2 over all steps (incl. hyperpolarising): {o['rel_l2_all_steps']['median']:.3f}; "
                 f"{o['n_models']} models, {o['n_amplitudes']} amplitudes; meets targets: {o['meets']}")
    return "\n".join(lines)
