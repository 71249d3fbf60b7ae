"""Held-out evaluation of a surrogate against the solver, in the measures a physiologist reads off a trace.

`noble evaluate CKPT [--dataset DIR] --out DIR` (`run_evaluation`):

* The held-out neurons (config.json `heldout_model_ids`, never trained on; their parameters and the
  surrogate's features for them from `hall_of_fame.json` beside the checkpoint, which carries `model_ids`)
  are SIMULATED by Brian2 on the surrogate's own protocol (config `stimulus`: steps of `amplitudes_pA` from
  `start_ms` for `duration_ms`, `n_time` x `dt_ms` of trace), with the integration settings of the
  surrogate's training dataset (dt, stimulus/record grid, Brian2 target; from the card's
  `training_data.dataset_config`, else `dataset.yaml` beside the checkpoint, else the given dataset's
  manifest), in ONE vectorised group holding every neuron x amplitude twice: noise-free, and with the
  dataset's Ornstein-Uhlenbeck current noise (sigma, tau of the dataset config; a fresh realisation drawn
  with `seed`, not the dataset's own trial). Traces are recorded on the dataset's grid and subsampled to
  the surrogate's as the training data were (noble.operator.data.load_traces).
* The surrogate is scored against the NOISE-FREE traces (the response a deterministic predictor should
  give); the same metrics against the noisy trial are kept as a secondary column, and the noisy trial
  against the noise-free one gives the floor the noise alone sets.
* Metrics per amplitude and overall (median, p90): voltage rel L2 over the whole trace; spike count in the
  step window within +-1; F-I MAE (Hz over the step); times of the first 5 spikes (spike i vs spike i);
  per-AP errors on APs matched one to one within 3 ms (peak, half-width absolute and relative, AHP trough)
  with the fraction matched; the spread of AP peaks within a trace (max - min), surrogate and solver side
  by side; the pre-step baseline (mean over the 20 ms before the step). APs and their measures are defined
  in noble/operator/ap_metrics.py (peaks above -10 mV with >= 20 mV prominence; half-width at half the
  threshold-to-peak amplitude, threshold at dV/dt = 10 mV/ms, on the linearly interpolated trace).
* Written to --out: metrics.json, evaluation.png (traces, F-I, count and latency errors) and
  evaluation_gallery.png (seeded random held-out traces, each with an inset on one AP).

With a DATASET whose config is not the surrogate's training data, every model of that dataset is
evaluated instead (parameters and features read from its shards, settings from its manifest).

The dataset-trace metrics below (`evaluate_surrogate`, eFEL-based) are what `noble train` writes into the
card at the end of training; they compare with the dataset's own noisy traces.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..datagen.features import trace_features
from . import ap_metrics
from .data import TraceSet
from .model import Surrogate
from .targets import TargetResult
from .targets import format_results as format_target_results
from .targets import judge as judge_targets


# The first issue's targets for the dataset-trace metrics written at the end of training (against the dataset's
# noisy traces); `noble evaluate` judges the noise-free comparison by targets.WAVEFORM_TARGETS.
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
    """PNG: predicted vs simulated (noise-free) traces (2 held-out neurons x 3 amplitudes), F-I curves,
    spike-count errors and first-spike latencies."""
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
                ax.plot(t, arr["true"][k[0]], "k", lw=0.6, label="Brian2 (noise-free)")
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


# ---- the held-out neurons simulated by the solver -------------------------------------------------------
PRE_STEP_MS = 20.0  # baseline window before the step
FIRST_SPIKES = 5  # spike-time errors of spikes 0..4
GALLERY_PANELS = 8


@dataclass
class SimSettings:
    """How the training data were integrated (dataset config): Brian2 step, stimulus/record grid, noise."""

    dt_ms: float
    record_dt_ms: float
    noise_sigma_pA: float
    noise_tau_ms: float
    target: str
    source: str

    @classmethod
    def from_dataset_config(cls, raw: dict[str, Any], source: str) -> "SimSettings":
        from ..datagen.config import parse_config

        cfg = parse_config(raw)
        return cls(dt_ms=cfg.dt_ms, record_dt_ms=cfg.record_dt_ms, noise_sigma_pA=cfg.noise.sigma_pA,
                   noise_tau_ms=cfg.noise.tau_ms, target=os.environ.get("NOBLE_BRIAN_TARGET") or cfg.brian_target,
                   source=source)


@dataclass
class Neurons:
    """The neurons evaluated: dataset model ids, parameters (family order), surrogate features (M, F)."""

    model_ids: np.ndarray
    params: np.ndarray
    features: np.ndarray
    source: str
    which: str


def _is_training_dataset(sur: Surrogate, dataset: Path) -> bool:
    from ..datagen.dataset import read_manifest

    digest = (sur.card.get("training_data") or {}).get("config_digest")
    man = read_manifest(dataset) or {}
    return digest is not None and digest == man.get("config_digest")


def sim_settings_for(sur: Surrogate, ckpt: Path, dataset: Path | None = None) -> SimSettings:
    """The integration settings of the data the evaluated neurons come from (see the module docstring)."""
    from ..datagen.config import load_config
    from ..datagen.dataset import read_manifest

    if dataset is not None and not _is_training_dataset(sur, dataset):
        man = read_manifest(dataset)
        if not man or "config" not in man:
            raise ValueError(f"{dataset}: no manifest.json with the dataset config")
        return SimSettings.from_dataset_config(man["config"], f"{dataset}/manifest.json")
    raw = (sur.card.get("training_data") or {}).get("dataset_config")
    if raw:
        return SimSettings.from_dataset_config(raw, f"{ckpt}/card.json training_data.dataset_config")
    if (ckpt / "dataset.yaml").is_file():
        cfg = load_config(ckpt / "dataset.yaml")
        return SimSettings.from_dataset_config(cfg.model_dump(mode="json"), f"{ckpt}/dataset.yaml")
    if dataset is not None and (man := read_manifest(dataset)) and "config" in man:
        return SimSettings.from_dataset_config(man["config"], f"{dataset}/manifest.json")
    raise ValueError(f"{ckpt}: no dataset config in card.json nor dataset.yaml; pass --dataset (the training data)")


def _params_from_dataset(dataset: Path, family: str, ids: Sequence[int]) -> np.ndarray:
    """Parameter rows (family order) of the models `ids` from a dataset's shards (small tables only)."""
    import h5py

    from ..datagen.dataset import open_dataset
    from ..datagen.models import get as get_family

    fam = get_family(family)
    order = fam.param_names()
    found: dict[int, np.ndarray] = {}
    for path in open_dataset(dataset):
        with h5py.File(path, "r") as h5:
            if h5["params"].shape[0] == 0:
                continue
            names = [s.decode() if isinstance(s, bytes) else str(s) for s in h5["params"].attrs["names"]]
            params, mid = h5["params"][:], h5["model_id"][:]
        for m in np.unique(mid):
            if int(m) in ids:
                row = params[np.flatnonzero(mid == m)[0]]
                found[int(m)] = np.array([row[names.index(n)] if n in names else fam.param_spec(n).default
                                          for n in order], dtype=np.float64)
    missing = [m for m in ids if m not in found]
    if missing:
        raise ValueError(f"{dataset}: models {missing[:5]} not found")
    return np.stack([found[m] for m in ids])


def heldout_neurons(sur: Surrogate, ckpt: Path, dataset: Path | None = None) -> Neurons:
    """The checkpoint's held-out neurons (from hall_of_fame.json, else from the training dataset), or every
    model of `dataset` when it is not the training data."""
    from .hall_of_fame import FILENAME, hall_of_fame_from_dataset, read_hall_of_fame

    cfg = sur.config
    if dataset is not None and not _is_training_dataset(sur, dataset):
        hof = hall_of_fame_from_dataset(dataset, cfg.feature_names)
        if hof is None or not hof.model_ids:
            raise ValueError(f"{dataset}: no models with the surrogate's features {cfg.feature_names}")
        ids = list(hof.model_ids)
        return Neurons(np.asarray(ids, dtype=np.int64), _params_from_dataset(dataset, cfg.family, ids),
                       hof.features, str(dataset), "all models (dataset other than the training one)")
    ids = [int(m) for m in cfg.heldout_model_ids]
    if not ids:
        raise ValueError(f"{ckpt}: config.json lists no heldout_model_ids")
    which = "held-out models of the training dataset"
    hof_path = ckpt / FILENAME
    if hof_path.is_file() and (hof := read_hall_of_fame(hof_path)).family == cfg.family:
        sel = hof.select(cfg.feature_names)
        if hof.model_ids is not None and sel is not None and set(ids) <= set(hof.model_ids):
            rows = [hof.model_ids.index(m) for m in ids]
            return Neurons(np.asarray(ids, dtype=np.int64), hof.params[rows], sel.features[rows], str(hof_path),
                           which)
    if dataset is None:
        raise ValueError(f"{ckpt}: no {FILENAME} with model_ids covering the held-out models; pass --dataset "
                         "(the training data) to read their parameters and features from it")
    hof = hall_of_fame_from_dataset(dataset, cfg.feature_names)
    if hof is None or not set(ids) <= set(hof.model_ids or []):
        raise ValueError(f"{dataset}: held-out models missing or without the features {cfg.feature_names}")
    rows = [hof.model_ids.index(m) for m in ids]
    return Neurons(np.asarray(ids, dtype=np.int64), _params_from_dataset(dataset, cfg.family, ids),
                   hof.features[rows], str(dataset), which)


def simulate_steps(family: str, params: np.ndarray, amps_pA: Sequence[float], *, start_ms: float,
                   duration_ms: float, n_time: int, dt_out_ms: float, sim: SimSettings,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free and noisy traces (M * A, n_time) on the dt_out grid, rows model-major then amplitude:
    every neuron x amplitude twice (clean, then with OU noise) in one Brian2 group."""
    from ..datagen.models import get as get_family
    from ..datagen.simulate import simulate, steps_matrix
    from ..datagen.stimuli import ou_noise

    step = dt_out_ms / sim.record_dt_ms
    if abs(step - round(step)) > 1e-6 or round(step) < 1:
        raise ValueError(f"surrogate dt {dt_out_ms} ms is not a multiple of the dataset's {sim.record_dt_ms} ms")
    step = int(round(step))
    amps = np.asarray(amps_pA, dtype=np.float64)
    M, A = len(params), len(amps)
    rows = np.repeat(np.asarray(params, dtype=np.float64), A, axis=0)
    total_ms = n_time * dt_out_ms
    stim = steps_matrix(np.tile(amps, M), start_ms, duration_ms, total_ms, sim.record_dt_ms)
    rng = np.random.default_rng(seed)
    noise_free = sim.noise_sigma_pA == 0.0  # a noise-free dataset: the 'noisy' trial is the same run
    noisy = stim + ou_noise(len(stim), stim.shape[1], sim.record_dt_ms, sim.noise_tau_ms, sim.noise_sigma_pA, rng)
    res = simulate(get_family(family), rows if noise_free else np.concatenate([rows, rows]),
                   stim if noise_free else np.concatenate([stim, noisy]),
                   stim_dt_ms=sim.record_dt_ms, duration_ms=total_ms, dt_ms=sim.dt_ms,
                   record_dt_ms=sim.record_dt_ms, seed=seed, target=sim.target)
    v = res.v_mV[:, ::step][:, :n_time]
    if noise_free:
        return np.ascontiguousarray(v), np.array(v, copy=True)
    return np.ascontiguousarray(v[: M * A]), np.ascontiguousarray(v[M * A:])


def compare_traces(test: np.ndarray, ref: np.ndarray, dt_ms: float, start_ms: float,
                   end_ms: float) -> dict[str, np.ndarray]:
    """Errors of traces `test` against `ref` (rows paired): per-trace arrays, and per-spike / per-AP arrays
    with the trace each belongs to (`*_trace`). Spike counts, F-I rates and first-spike times use the APs
    whose peak lies in the step window [start_ms, end_ms] (so do the stunted-peak counts); AP matching, shapes
    and peak spread use every AP of the trace."""
    N = len(ref)
    dur_s = (end_ms - start_ms) / 1000.0
    pre = slice(max(int(round((start_ms - PRE_STEP_MS) / dt_ms)), 0), int(round(start_ms / dt_ms)))
    out: dict[str, list] = {k: [] for k in (
        "count_ref", "count_test", "latency_ref_ms", "latency_test_ms", "n_ap_ref", "n_ap_test", "n_matched",
        "spread_ref_mV", "spread_test_mV", "first5_trace", "first5_err_ms", "ap_trace", "peak_err_mV",
        "hw_ref_ms", "hw_err_ms", "ahp_err_mV", "ap_dt_ms", "stunted_ref", "stunted_test")}
    for r in range(N):
        a_ref = ap_metrics.find_aps(ref[r], dt_ms)
        a_test = ap_metrics.find_aps(test[r], dt_ms)
        t_ref = a_ref.peak_ms[a_ref.within(start_ms, end_ms)]
        t_test = a_test.peak_ms[a_test.within(start_ms, end_ms)]
        out["count_ref"].append(len(t_ref))
        out["count_test"].append(len(t_test))
        for side, v in (("ref", ref[r]), ("test", test[r])):
            t_st = ap_metrics.stunted_peaks(v) * dt_ms
            out[f"stunted_{side}"].append(int(np.sum((t_st >= start_ms) & (t_st <= end_ms))))
        out["latency_ref_ms"].append(t_ref[0] - start_ms if len(t_ref) else np.nan)
        out["latency_test_ms"].append(t_test[0] - start_ms if len(t_test) else np.nan)
        k = min(FIRST_SPIKES, len(t_ref), len(t_test))
        out["first5_trace"].extend([r] * k)
        out["first5_err_ms"].extend(t_test[:k] - t_ref[:k])
        i, j = ap_metrics.match_aps(a_ref.peak_ms, a_test.peak_ms)
        out["n_ap_ref"].append(len(a_ref))
        out["n_ap_test"].append(len(a_test))
        out["n_matched"].append(len(i))
        out["spread_ref_mV"].append(a_ref.peak_spread_mV)
        out["spread_test_mV"].append(a_test.peak_spread_mV)
        out["ap_trace"].extend([r] * len(i))
        out["peak_err_mV"].extend(a_test.peak_mV[j] - a_ref.peak_mV[i])
        out["hw_ref_ms"].extend(a_ref.half_width_ms[i])
        out["hw_err_ms"].extend(a_test.half_width_ms[j] - a_ref.half_width_ms[i])
        out["ahp_err_mV"].extend(a_test.ahp_mV[j] - a_ref.ahp_mV[i])
        out["ap_dt_ms"].extend(a_test.peak_ms[j] - a_ref.peak_ms[i])
    res = {k: np.asarray(v, dtype=np.int64 if k in ("count_ref", "count_test", "n_ap_ref", "n_ap_test", "n_matched",
                                                     "first5_trace", "ap_trace", "stunted_ref", "stunted_test")
                         else np.float64)
           for k, v in out.items()}
    res["rel_l2"] = np.linalg.norm(test - ref, axis=1) / np.linalg.norm(ref, axis=1)
    res["count_err"] = res["count_test"] - res["count_ref"]
    res["rate_err_Hz"] = res["count_err"] / dur_s
    res["latency_err_ms"] = res["latency_test_ms"] - res["latency_ref_ms"]
    res["baseline_err_mV"] = (test[:, pre].mean(axis=1) - ref[:, pre].mean(axis=1) if pre.stop > pre.start
                              else np.full(N, np.nan))
    res["hw_rel_err"] = res["hw_err_ms"] / res["hw_ref_ms"]
    return res


def _stats_signed(err: np.ndarray) -> dict[str, float | int]:
    """Stats of |err| plus the median of the signed error (the bias)."""
    e = np.asarray(err, dtype=float)
    e = e[np.isfinite(e)]
    s = _stats(np.abs(e))
    s["median_signed"] = float(np.median(e)) if len(e) else float("nan")
    return s


def summarise_comparison(c: dict[str, np.ndarray], mask: np.ndarray, test: str = "surrogate",
                         ref: str = "solver") -> dict[str, Any]:
    """Aggregate a `compare_traces` result over the traces in `mask`; `test` / `ref` name the two sides."""
    rows = np.flatnonzero(mask)
    f5 = np.isin(c["first5_trace"], rows)
    ap = np.isin(c["ap_trace"], rows)
    n_ref, n_test, n_m = c["n_ap_ref"][mask].sum(), c["n_ap_test"][mask].sum(), c["n_matched"][mask].sum()
    ce = c["count_err"][mask]
    return {
        "n_traces": int(mask.sum()),
        "rel_l2": _stats(c["rel_l2"][mask]),
        "frac_spike_count_within_1": float(np.mean(np.abs(ce) <= 1)) if len(ce) else float("nan"),
        "spike_count_abs_err": _stats(np.abs(ce)),
        "spiking_disagreements": int(np.sum((c["count_ref"][mask] > 0) != (c["count_test"][mask] > 0))),
        "fi_mae_Hz": float(np.mean(np.abs(c["rate_err_Hz"][mask]))) if len(ce) else float("nan"),
        "first_spike_latency_abs_err_ms": _stats_signed(c["latency_err_ms"][mask]),
        "first5_spike_time_abs_err_ms": _stats_signed(c["first5_err_ms"][f5]),
        "n_aps": {ref: int(n_ref), test: int(n_test), "matched": int(n_m)},
        f"frac_{ref}_aps_matched": float(n_m / n_ref) if n_ref else float("nan"),
        f"frac_{test}_aps_matched": float(n_m / n_test) if n_test else float("nan"),
        "matched_ap_time_abs_err_ms": _stats_signed(c["ap_dt_ms"][ap]),
        "ap_peak_abs_err_mV": _stats_signed(c["peak_err_mV"][ap]),
        "ap_half_width_abs_err_ms": _stats_signed(c["hw_err_ms"][ap]),
        "ap_half_width_rel_err": _stats_signed(c["hw_rel_err"][ap]),
        "ahp_trough_abs_err_mV": _stats_signed(c["ahp_err_mV"][ap]),
        "ap_peak_spread_mV": {test: _stats(c["spread_test_mV"][mask]), ref: _stats(c["spread_ref_mV"][mask])},
        "baseline_abs_err_mV": _stats_signed(c["baseline_err_mV"][mask]),
        # prominent peaks (>= 20 mV) that stay at or below -10 mV, in the step window: not counted as APs
        "stunted_peaks": {test: int(c["stunted_test"][mask].sum()), ref: int(c["stunted_ref"][mask].sum())},
    }


def summarise_all(c: dict[str, np.ndarray], amps: np.ndarray, test: str = "surrogate",
                  ref: str = "solver") -> dict[str, Any]:
    """{'per_amplitude': {amp: summary}, 'overall': summary over the depolarising steps, plus rel L2 and the
    pre-step baseline over all steps}."""
    per_amp = {f"{a:g}": summarise_comparison(c, amps == a, test, ref) for a in np.unique(amps)}
    overall = summarise_comparison(c, amps > 0, test, ref)
    every = np.ones(len(amps), dtype=bool)
    overall["rel_l2_all_steps"] = _stats(c["rel_l2"])
    overall["baseline_abs_err_mV_all_steps"] = _stats_signed(c["baseline_err_mV"][every])
    return {"overall": overall, "per_amplitude": per_amp}


def evaluate_against_solver(sur: Surrogate, neurons: Neurons, sim: SimSettings, *, seed: int = 0,
                            amplitudes_pA: Sequence[float] | None = None) -> dict[str, Any]:
    """Simulate `neurons` (noise-free and noisy), predict them with the surrogate, compare (see the module
    docstring). Returns the summaries and, under '_arrays', the traces and per-trace errors."""
    cfg = sur.config
    p = cfg.stimulus
    amps = np.asarray(p.amplitudes_pA if amplitudes_pA is None else amplitudes_pA, dtype=np.float64)
    if len(amps) == 0:
        raise ValueError("the surrogate's config lists no stimulus amplitudes")
    M, A = len(neurons.model_ids), len(amps)
    t0 = time.perf_counter()
    clean, noisy = simulate_steps(cfg.family, neurons.params, amps, start_ms=p.start_ms, duration_ms=p.duration_ms,
                                  n_time=cfg.n_time, dt_out_ms=cfg.dt_ms, sim=sim, seed=seed)
    t1 = time.perf_counter()
    from ..datagen.simulate import steps_matrix

    stim = steps_matrix(np.tile(amps, M), p.start_ms, p.duration_ms, cfg.n_time * cfg.dt_ms, cfg.dt_ms)
    feats = np.repeat(neurons.features, A, axis=0)
    pred = sur.predict(feats, stim.astype(np.float32), check_range=False)
    t2 = time.perf_counter()
    a = np.tile(amps, M)
    c_clean = compare_traces(pred, clean, cfg.dt_ms, p.start_ms, p.end_ms)
    c_noisy = compare_traces(pred, noisy, cfg.dt_ms, p.start_ms, p.end_ms)
    c_floor = compare_traces(noisy, clean, cfg.dt_ms, p.start_ms, p.end_ms)
    t3 = time.perf_counter()
    main = summarise_all(c_clean, a)
    lo = np.array([cfg.feature_ranges[n][0] for n in cfg.feature_names])
    hi = np.array([cfg.feature_ranges[n][1] for n in cfg.feature_names])
    outside = np.any((neurons.features < lo) | (neurons.features > hi), axis=1)
    o = main["overall"]
    o.update({"n_models": int(M), "n_models_outside_trained_range": int(outside.sum()), "n_amplitudes": int(A)})
    results = judge_targets(o, cfg.family)
    o["waveform_targets"] = [r.model_dump() for r in results]
    o["meets"] = {r.metric: r.met for r in results}
    return {
        "overall": o, "per_amplitude": main["per_amplitude"],
        "vs_noisy": summarise_all(c_noisy, a),
        "noisy_vs_noise_free": summarise_all(c_floor, a, test="noisy", ref="noise_free"),
        "wall_s": {"simulate": t1 - t0, "predict": t2 - t1, "metrics": t3 - t2},
        "_arrays": {"pred": pred, "true": clean, "noisy": noisy, "amps": a,
                    "model_id": np.repeat(neurons.model_ids, A), "rel_l2": c_clean["rel_l2"],
                    "rel_l2_noisy": c_noisy["rel_l2"], "count_true": c_clean["count_ref"],
                    "count_pred": c_clean["count_test"], "count_err": c_clean["count_err"],
                    "latency_true_ms": c_clean["latency_ref_ms"], "latency_pred_ms": c_clean["latency_test_ms"]},
    }


def plot_gallery(result: dict[str, Any], dt_ms: float, start_ms: float, duration_ms: float, path: Path,
                 seed: int = 0, n: int = GALLERY_PANELS) -> Path:
    """PNG: `n` (neuron, depolarising amplitude) traces drawn at random with `seed` (not picked), surrogate
    over the noise-free solver, each with an inset on the first solver AP after 20 % of the step (the first
    solver AP when there is none that late)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arr = result["_arrays"]
    cand = np.flatnonzero(arr["amps"] > 0)
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(cand, size=min(n, len(cand)), replace=False))
    cols = 2
    nrow = -(-len(pick) // cols)
    fig, axes = plt.subplots(nrow, cols, figsize=(7.5 * cols, 2.9 * nrow), squeeze=False)
    t = np.arange(arr["true"].shape[1]) * dt_ms
    for ax, r in zip(axes.flat, pick):
        ref, sur = arr["true"][r], arr["pred"][r]
        ax.plot(t, ref, "k", lw=0.5, label="Brian2, noise-free")
        ax.plot(t, sur, "r", lw=0.5, alpha=0.75, label="surrogate")
        a_ref = ap_metrics.find_aps(ref, dt_ms)
        a_sur = ap_metrics.find_aps(sur, dt_ms)
        ax.set_title(f"model {arr['model_id'][r]}, {arr['amps'][r]:g} pA: APs solver {len(a_ref)} / surrogate "
                     f"{len(a_sur)}, rel L2 {arr['rel_l2'][r]:.2f}", fontsize=8)
        ax.set_xlabel("t (ms)", fontsize=7)
        ax.set_ylabel("V (mV)", fontsize=7)
        ax.tick_params(labelsize=6)
        late = np.flatnonzero(a_ref.peak_ms >= start_ms + 0.2 * duration_ms)
        which = ""
        if not len(late) and len(a_ref):
            late, which = np.array([0]), " (none after 20 %)"
        if len(late):
            tp = a_ref.peak_ms[late[0]]
            ins = ax.inset_axes([0.71, 0.30, 0.27, 0.50])
            win = (t >= tp - 4) & (t <= tp + 8)
            ins.plot(t[win], ref[win], "k.-", lw=0.7, ms=2)
            ins.plot(t[win], sur[win], "r.-", lw=0.7, ms=2, alpha=0.8)
            ins.set_title(f"AP at {tp:.1f} ms{which}", fontsize=6, pad=2)
            ins.tick_params(labelsize=5)
            ax.indicate_inset_zoom(ins, edgecolor="0.5")
        else:
            ax.text(0.98, 0.9, "no solver AP", transform=ax.transAxes, ha="right", fontsize=7)
    for ax in list(axes.flat)[len(pick):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"{len(pick)} held-out (neuron, depolarising step) pairs drawn at random, seed {seed}: "
                 "surrogate (red) over noise-free Brian2 (black); inset: the first solver AP after 20 % of the "
                 "step, else its first AP (dots = samples)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def run_evaluation(ckpt: str | Path, dataset: str | Path | None = None, out: str | Path | None = None, *,
                   seed: int = 0, gallery_seed: int = 0) -> dict[str, Any]:
    """CLI body: load, simulate and evaluate the held-out models, write metrics.json, evaluation.png and
    evaluation_gallery.png into out."""
    from .checkpoint import load_surrogate

    t0 = time.perf_counter()
    ckpt = Path(ckpt)
    dataset = None if dataset is None else Path(dataset)
    if dataset is not None and not dataset.is_dir():
        raise ValueError(f"dataset {dataset} is not a directory")
    sur = load_surrogate(ckpt)
    sim = sim_settings_for(sur, ckpt, dataset)
    neurons = heldout_neurons(sur, ckpt, dataset)
    res = evaluate_against_solver(sur, neurons, sim, seed=seed)
    p = sur.config.stimulus
    report = {
        "checkpoint": str(ckpt), "dataset": None if dataset is None else str(dataset), "models": neurons.which,
        "model_ids": [int(m) for m in neurons.model_ids], "neurons_from": neurons.source,
        "reference": "Brian2 simulations of these neurons (noise-free; 'vs_noisy' against a noisy trial)",
        "simulation": {"dt_ms": sim.dt_ms, "record_dt_ms": sim.record_dt_ms, "surrogate_dt_ms": sur.config.dt_ms,
                       "n_time": sur.config.n_time, "noise_sigma_pA": sim.noise_sigma_pA,
                       "noise_tau_ms": sim.noise_tau_ms, "noise_seed": seed, "brian_target": sim.target,
                       "settings_from": sim.source, "protocol": p.model_dump()},
        "definitions": {
            "ap": f"scipy.signal.find_peaks: height > {ap_metrics.PEAK_MIN_MV:g} mV, prominence >= "
                  f"{ap_metrics.PROMINENCE_MV:g} mV (noble/operator/ap_metrics.py)",
            "spike_count": "APs with peak in the step window [start, end]; F-I rate = count / step duration",
            "first5": f"|t_surrogate[i] - t_solver[i]|, i < {FIRST_SPIKES} (peak times, parabola-refined)",
            "matching": f"one to one, nearest first, within {ap_metrics.MATCH_WINDOW_MS:g} ms",
            "half_width": f"at half the amplitude from threshold (dV/dt = {ap_metrics.DVDT_THRESHOLD:g} mV/ms) to "
                          "peak, on the linearly interpolated trace",
            "ahp_trough": "minimum between an AP's peak and the next AP's peak",
            "peak_spread": "max - min of the AP peaks of one trace (traces with >= 2 APs)",
            "baseline": f"mean voltage over the {PRE_STEP_MS:g} ms before the step",
            "stunted_peaks": f"peaks with >= {ap_metrics.PROMINENCE_MV:g} mV prominence whose top stays at or below "
                             f"{ap_metrics.PEAK_MIN_MV:g} mV, in the step window (not counted as APs)",
            "overall": "depolarising steps for spike and AP measures; rel_l2_all_steps and "
                       "baseline_abs_err_mV_all_steps over every step",
        },
        "overall": res["overall"], "per_amplitude": res["per_amplitude"], "vs_noisy": res["vs_noisy"],
        "noisy_vs_noise_free": res["noisy_vs_noise_free"], "gallery_seed": gallery_seed,
    }
    if out is not None:
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        plot_evaluation(res, sur.config.dt_ms, d / "evaluation.png")
        plot_gallery(res, sur.config.dt_ms, p.start_ms, p.duration_ms, d / "evaluation_gallery.png", seed=gallery_seed)
    report["wall_s"] = {**{k: round(v, 2) for k, v in res["wall_s"].items()},
                        "total": round(time.perf_counter() - t0, 2)}
    if out is not None:
        (d / "metrics.json").write_text(json.dumps(report, indent=1, default=float) + "\n")
    return report


def format_table(report: dict[str, Any]) -> str:
    """Plain-text tables of a `run_evaluation` report: per amplitude against the noise-free solver (with the
    noisy-trial rel L2 and counts as secondary columns), then the overall figures side by side."""
    cols = [("amp pA", 7), ("n", 4), ("relL2", 6), ("p90", 6), ("dN<=1", 6), ("FI MAE", 6), ("t1-5 ms", 7),
            ("matched", 7), ("peak mV", 7), ("hw ms", 6), ("hw rel", 6), ("AHP mV", 6), ("sprd sur", 8),
            ("sprd sol", 8), ("base mV", 7), ("| relL2 noisy", 13), ("dN<=1 noisy", 11)]
    lines = ["against NOISE-FREE Brian2 (medians of |error|; 'noisy' = against a noisy trial; 'sprd' = within-"
             "trace AP peak spread, median)", " ".join(f"{n:>{w}}" for n, w in cols)]

    def f(x: float, w: int, prec: int) -> str:
        return f"{x:>{w}.{prec}f}" if x == x else f"{'-':>{w}}"

    def row(name: str, s: dict[str, Any], sn: dict[str, Any]) -> str:
        vals = [f"{name:>7}", f"{s['n_traces']:>4}", f(s["rel_l2"]["median"], 6, 3), f(s["rel_l2"]["p90"], 6, 3),
                f(s["frac_spike_count_within_1"], 6, 2), f(s["fi_mae_Hz"], 6, 2),
                f(s["first5_spike_time_abs_err_ms"]["median"], 7, 2), f(s["frac_solver_aps_matched"], 7, 2),
                f(s["ap_peak_abs_err_mV"]["median"], 7, 2), f(s["ap_half_width_abs_err_ms"]["median"], 6, 3),
                f(s["ap_half_width_rel_err"]["median"], 6, 2), f(s["ahp_trough_abs_err_mV"]["median"], 6, 2),
                f(s["ap_peak_spread_mV"]["surrogate"]["median"], 8, 2),
                f(s["ap_peak_spread_mV"]["solver"]["median"], 8, 2), f(s["baseline_abs_err_mV"]["median"], 7, 2),
                f(sn["rel_l2"]["median"], 13, 3), f(sn["frac_spike_count_within_1"], 11, 2)]
        return " ".join(vals)

    noisy = report.get("vs_noisy") or {"per_amplitude": {}, "overall": None}
    for a, s in sorted(report["per_amplitude"].items(), key=lambda kv: float(kv[0])):
        lines.append(row(a, s, noisy["per_amplitude"].get(a, s)))
    o = report["overall"]
    lines.append(row("all>0", o, noisy["overall"] or o))
    lines.append("")
    lines.append(_overall_block(report))
    lines.append(f"{o['n_models']} models ({o['n_models_outside_trained_range']} outside the trained feature "
                 f"range), {o['n_amplitudes']} amplitudes; the held-out targets (vs noise-free, depolarising steps):")
    if o.get("waveform_targets"):
        lines.append(format_target_results([TargetResult(**r) for r in o["waveform_targets"]]))
    return "\n".join(lines)


def _overall_block(report: dict[str, Any]) -> str:
    """Overall (depolarising steps) median and p90, three comparisons side by side."""
    blocks = [("surrogate vs noise-free", report["overall"], "surrogate", "solver")]
    if report.get("vs_noisy"):
        blocks.append(("surrogate vs noisy", report["vs_noisy"]["overall"], "surrogate", "solver"))
    if report.get("noisy_vs_noise_free"):
        blocks.append(("noisy vs noise-free", report["noisy_vs_noise_free"]["overall"], "noisy", "noise_free"))
    rows: list[tuple[str, Any]] = [
        ("rel L2, all steps", lambda s, t, r: s["rel_l2_all_steps"]),
        ("rel L2, depolarising", lambda s, t, r: s["rel_l2"]),
        ("spike count within +-1 (frac)", lambda s, t, r: s["frac_spike_count_within_1"]),
        ("F-I MAE (Hz)", lambda s, t, r: s["fi_mae_Hz"]),
        ("first-spike latency |err| (ms)", lambda s, t, r: s["first_spike_latency_abs_err_ms"]),
        ("first-5 spike times |err| (ms)", lambda s, t, r: s["first5_spike_time_abs_err_ms"]),
        ("solver APs matched (frac)", lambda s, t, r: s[f"frac_{r}_aps_matched"]),
        ("predicted APs matched (frac)", lambda s, t, r: s[f"frac_{t}_aps_matched"]),
        ("matched AP time |err| (ms)", lambda s, t, r: s["matched_ap_time_abs_err_ms"]),
        ("AP peak |err| (mV)", lambda s, t, r: s["ap_peak_abs_err_mV"]),
        ("AP peak err, signed median (mV)", lambda s, t, r: s["ap_peak_abs_err_mV"]["median_signed"]),
        ("AP half-width |err| (ms)", lambda s, t, r: s["ap_half_width_abs_err_ms"]),
        ("AP half-width err, signed (ms)", lambda s, t, r: s["ap_half_width_abs_err_ms"]["median_signed"]),
        ("AP half-width |rel err|", lambda s, t, r: s["ap_half_width_rel_err"]),
        ("AHP trough |err| (mV)", lambda s, t, r: s["ahp_trough_abs_err_mV"]),
        ("AHP trough err, signed (mV)", lambda s, t, r: s["ahp_trough_abs_err_mV"]["median_signed"]),
        ("AP peak spread, predicted (mV)", lambda s, t, r: s["ap_peak_spread_mV"][t]),
        ("AP peak spread, solver (mV)", lambda s, t, r: s["ap_peak_spread_mV"][r]),
        ("pre-step baseline |err| (mV)", lambda s, t, r: s["baseline_abs_err_mV_all_steps"]),
        ("stunted peaks (<= -10 mV), predicted", lambda s, t, r: float(s["stunted_peaks"][t])),
        ("stunted peaks (<= -10 mV), solver", lambda s, t, r: float(s["stunted_peaks"][r])),
        ("APs (whole traces), solver", lambda s, t, r: float(s["n_aps"][r])),
    ]

    def cell(v: Any) -> str:
        if isinstance(v, dict):
            return f"{v['median']:>9.3f} {v['p90']:>9.3f}" if v["n"] else f"{'-':>9} {'-':>9}"
        return f"{v:>9.3f} {'':>9}" if v == v else f"{'-':>9} {'':>9}"

    head = f"{'overall (depolarising steps)':<38}" + "".join(f" {name:>19}" for name, *_ in blocks)
    sub = f"{'':<38}" + "".join(f" {'median':>9} {'p90':>9}" for _ in blocks)
    out = [head, sub]
    for label, get in rows:
        out.append(f"{label:<38}" + "".join(f" {cell(get(s, t, r))}" for _, s, t, r in blocks))
    out.append("('predicted' = the surrogate, or the noisy trial in the last column; 'solver' = the reference)")
    return "\n".join(out)


def format_dataset_table(report: dict[str, Any]) -> str:
    """The dataset-trace table (`evaluate_surrogate` summaries, e.g. the card's metrics_heldout)."""

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
