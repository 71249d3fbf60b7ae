"""Electrophysiological features: per trace with eFEL, per neuron the F-I features NOBLE embeds.

Per trace (`trace_features`; eFEL, the Blue Brain feature library, which the fit uses too). eFEL's default
settings except Threshold = `threshold_mV` (-20 mV, the default of every caller), strict_stiminterval = True and
interp_step: eFEL first interpolates every trace linearly onto a grid of interp_step = min(INTERP_STEP_MS =
0.025 ms, the trace's dt), and every "sample" below is a sample of that grid. (eFEL's default, 0.1 ms, is our
record step: AP half-widths came out in whole 0.1 ms steps.) The window is the step's [stim_start, stim_end];
`amp_pA` goes in as stimulus_current (nA).

Spike detection, shared by every spike feature: a spike is a run of samples between an upward and the next
downward crossing of Threshold, at its maximum (the AP peak: `peak_time`, `peak_voltage`); with
strict_stiminterval only peaks with stim_start <= t <= stim_end count (spontaneous spikes before the step and
rebound spikes after it do not), and a run still above Threshold at the trace's end is no spike.

* spike_count (eFEL Spikecount_stimint): peaks in the window; 0, not NaN, without one.
* rate_Hz: spike_count / (stim_end - stim_start) in s, the mean rate over the whole window (not 1 / ISI).
* first_spike_latency_ms (time_to_first_spike): peak time of the first spike - stim_start, i.e. measured to
  the AP PEAK, not to the threshold crossing or the AP onset; NaN without a spike.
* isi_cv (ISI_CV): sample standard deviation (ddof 1) / mean of the intervals between consecutive peaks,
  the first interval dropped (ignore_first_ISI, eFEL's default); needs >= 4 spikes.
* adaptation_index (adaptation_index2): with >= 4 peaks in the window, drop the first, then the mean over
  consecutive intervals of (ISI_i - ISI_i-1) / (ISI_i + ISI_i-1); > 0 when firing slows down.
* ap_amplitude_mV (AP_amplitude, mean over the window's APs): peak voltage - voltage at the AP onset. The onset
  (AP_begin) is the last sample before the peak, after the previous AHP minimum (or the stimulus start), where
  dV/dt rises through DerivativeThreshold = 10 mV/ms and stays above it for DerivativeWindow = 3 samples
  (0.075 ms at interp_step 0.025 ms).
* ap_half_width_ms (AP_duration_half_width, mean): time between the sample nearest the half height
  (onset + peak voltage) / 2 on the rise (onset..peak) and the one on the fall (peak..AP end, where dV/dt
  climbs back through DownDerivativeThreshold = -12 mV/ms after its steepest fall).
* ahp_depth_mV (AHP_depth, mean): the first minimum after each peak, up to the next peak (after the last one,
  up to stim_end), minus v_rest_mV's voltage_base: negative below rest.
* v_rest_mV (voltage_base): mean voltage over [0.9 stim_start, stim_start], the last 10 % of the time before
  the step (voltage_base_start_perc / end_perc, mode "mean").

Passive features, for hyperpolarising steps only (amp_pA < 0; NaN for amp_pA >= 0, HYPERPOLARISING_ONLY):

* input_resistance_MOhm (ohmic_input_resistance_vb_ssse): (steady state - voltage_base) / stimulus current
  (mV / nA = MOhm), steady state = mean voltage over the last 10 % of the step,
  [stim_end - 0.1 (stim_end - stim_start), stim_end).
* tau_m_ms (decay_time_constant_after_stim): |1 / slope| of a least-squares line through
  ln|V(t) - V(stim_start)| for t in [stim_end + 1, stim_end + 10) ms: the relaxation back toward the
  pre-step voltage after the step ENDS, not a fit to the charging during it.
* sag_ratio (sag_ratio1): (steady state - minimum) / (voltage_base - minimum), minimum = the lowest voltage
  in [stim_start, stim_end); 0 without sag.

Reducers (TRACE_FEATURES): "first" keeps eFEL's first value, "mean" averages over APs (nanmean), "rate"
divides the count by the window. NaN wherever eFEL returns nothing.

Per neuron (`rheobase_and_slope`: noise-free Brian2 runs, no eFEL): spikes are the model's own threshold
events (Brian2 SpikeMonitor: hh `v > -20 mV` with refractoriness while above, LIF `v >= V_th`), counted in
[start, start + duration).

* I_thr_pA (rheobase): the smallest probed step amplitude that spikes at least once. After probing 0 and
  max_pA, a k-ary bisection (7 probes per round, all in one group) shrinks [silent, spiking] to tol_pA
  (1 pA in datagen) and returns its upper, spiking end, so it overestimates the rheobase by < tol_pA; 0 for a
  neuron that fires without input, NaN for one silent at max_pA.
* s_thr_Hz_per_pA: least-squares slope of the rate (spikes in the window / duration) over steps of
  I_thr + 10, 20, 30, 40 pA.

The surrogate's other F-I features are derived per model in noble/operator/data.py (DERIVED_FEATURES) from
rate_Hz over the depolarising steps with rate > 0: fi_slope_Hz_per_pA is a least-squares line through them,
fi_lin_Hz_per_pA and fi_quad_Hz_per_pA2 a least-squares parabola through (I_thr_pA, 0).
"""

from __future__ import annotations

import math
import threading
import warnings
from typing import Sequence

import efel
import numpy as np

from .models import ModelFamily
from .simulate import simulate, steps_matrix

# Our feature name -> (eFEL feature, reducer over its values, unit). Order is the dataset's column order.
TRACE_FEATURES: dict[str, tuple[str, str, str]] = {
    "spike_count": ("Spikecount_stimint", "first", "1"),
    "rate_Hz": ("Spikecount_stimint", "rate", "Hz"),
    "first_spike_latency_ms": ("time_to_first_spike", "first", "ms"),
    "isi_cv": ("ISI_CV", "first", "1"),
    "adaptation_index": ("adaptation_index2", "first", "1"),
    "ap_amplitude_mV": ("AP_amplitude", "mean", "mV"),
    "ap_half_width_ms": ("AP_duration_half_width", "mean", "ms"),
    "ahp_depth_mV": ("AHP_depth", "mean", "mV"),
    "v_rest_mV": ("voltage_base", "first", "mV"),
    "input_resistance_MOhm": ("ohmic_input_resistance_vb_ssse", "first", "MOhm"),
    "tau_m_ms": ("decay_time_constant_after_stim", "first", "ms"),
    "sag_ratio": ("sag_ratio1", "first", "1"),
}
# eFEL keeps global settings and state: one extraction at a time per process.
_EFEL_LOCK = threading.Lock()
# eFEL's interpolation step (ms) for traces recorded at a coarser dt. 0.025 ms resolves AP half-widths to
# +-0.0125 ms per edge instead of the 0.1 ms record step (tests/datagen/test_feature_definitions.py) at half the
# cost of 0.01 ms: 288 traces x 12000 samples at dt 0.1 ms take 1.3 s at eFEL's default 0.1 ms, 3.6 s at 0.025 ms,
# 6.8 s at 0.01 ms; a fit extracts features of every candidate, so this cost multiplies (40 fast-spiking traces of
# 14000 samples at dt 0.05 ms: 0.13 / 0.19 / 0.38 s at 0.05 / 0.025 / 0.01 ms).
INTERP_STEP_MS = 0.025
HYPERPOLARISING_ONLY = {"input_resistance_MOhm", "tau_m_ms", "sag_ratio"}
NEURON_FEATURES: dict[str, str] = {"I_thr_pA": "pA", "s_thr_Hz_per_pA": "Hz/pA"}


def trace_features(
    v_mV: np.ndarray,
    dt_ms: float,
    stim_start_ms: float | Sequence[float],
    stim_end_ms: float | Sequence[float],
    amp_pA: float | Sequence[float],
    threshold_mV: float = -20.0,
    interp_step: float | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """eFEL features of n traces (rows of v_mV sampled at dt_ms); NaN where a feature is undefined
    (no spikes for AP features, depolarising steps for passive ones). `interp_step` (ms) overrides eFEL's
    interpolation step (default `interp_step_ms(dt_ms)`): a caller that only needs spike counts and times can
    pass dt_ms and skip the fine grid AP shapes need (20x fewer samples for a 0.2 ms trace). `names`: only
    these TRACE_FEATURES (default all; the others are absent from the result)."""
    wanted = list(TRACE_FEATURES) if names is None else [n for n in TRACE_FEATURES if n in set(names)]
    v = np.atleast_2d(np.asarray(v_mV, dtype=np.float64))
    n, T = v.shape
    starts = np.broadcast_to(np.asarray(stim_start_ms, dtype=float), (n,))
    ends = np.broadcast_to(np.asarray(stim_end_ms, dtype=float), (n,))
    amps = np.broadcast_to(np.asarray(amp_pA, dtype=float), (n,))
    t = np.arange(T) * dt_ms
    traces = [
        {"T": t, "V": v[k], "stim_start": [float(starts[k])], "stim_end": [float(ends[k])],
         "stimulus_current": [float(amps[k]) * 1e-3]}  # eFEL wants nA
        for k in range(n)
    ]
    efel_names = sorted({TRACE_FEATURES[name][0] for name in wanted})
    with _EFEL_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        efel.reset()
        efel.set_setting("Threshold", float(threshold_mV))
        efel.set_setting("interp_step", float(interp_step) if interp_step else interp_step_ms(dt_ms))
        # Spikes before the step (spontaneous firing) or rebound spikes after it must not count as the
        # response: restrict spike-based features to the stimulus window.
        efel.set_setting("strict_stiminterval", True)
        raw = efel.get_feature_values(traces, efel_names, raise_warnings=False)
    out = {name: np.full(n, np.nan) for name in wanted}
    for k, values in enumerate(raw):
        for name in wanted:
            efel_name, how, _unit = TRACE_FEATURES[name]
            if name in HYPERPOLARISING_ONLY and amps[k] >= 0:
                continue
            val = values.get(efel_name)
            if val is None or len(val) == 0:
                if efel_name == "Spikecount_stimint":
                    out[name][k] = 0.0
                continue
            arr = np.asarray(val, dtype=float)
            if how == "mean":
                out[name][k] = float(np.nanmean(arr))
            elif how == "rate":
                out[name][k] = float(arr[0]) / max((ends[k] - starts[k]) / 1000.0, 1e-12)
            else:
                out[name][k] = float(arr[0])
    return out


trace_features._thread_safe = True  # type: ignore[attr-defined]  # read by noble.app


def interp_step_ms(dt_ms: float) -> float:
    """eFEL's interpolation step for traces sampled at dt_ms: INTERP_STEP_MS, or dt_ms where that is finer."""
    return float(min(INTERP_STEP_MS, dt_ms))


def count_in_window(spike_times_ms: Sequence[np.ndarray], start_ms: float, end_ms: float) -> np.ndarray:
    """Spikes per neuron with start <= t < end (stimulus window)."""
    return np.array([int(np.sum((s >= start_ms) & (s < end_ms))) for s in spike_times_ms], dtype=np.int64)


def fi_curve(
    family: type[ModelFamily],
    params: np.ndarray,
    amplitudes_pA: Sequence[float],
    *,
    start_ms: float = 100.0,
    duration_ms: float = 1000.0,
    tail_ms: float = 100.0,
    dt_ms: float = 0.025,
    stim_dt_ms: float = 0.1,
    target: str | None = None,
) -> np.ndarray:
    """Noise-free F-I curves: rate (Hz) of every neuron (rows of params) at every amplitude, (n, A).
    All n x A cells run as one Brian2 group."""
    params = np.atleast_2d(params)
    amps = np.asarray(amplitudes_pA, dtype=float)
    n, A = params.shape[0], len(amps)
    rows = np.repeat(params, A, axis=0)
    total = start_ms + duration_ms + tail_ms
    stim = steps_matrix(np.tile(amps, n), start_ms, duration_ms, total, stim_dt_ms)
    res = simulate(family, rows, stim, stim_dt_ms=stim_dt_ms, duration_ms=total, dt_ms=dt_ms,
                   record_dt_ms=max(stim_dt_ms, dt_ms), target=target)
    counts = count_in_window(res.spike_times_ms, start_ms, start_ms + duration_ms)
    return counts.reshape(n, A) / (duration_ms / 1000.0)


def rheobase_and_slope(
    family: type[ModelFamily],
    params: np.ndarray,
    *,
    start_ms: float = 100.0,
    duration_ms: float = 1000.0,
    max_pA: float = 1000.0,
    tol_pA: float = 1.0,
    probes_per_round: int = 7,
    slope_deltas_pA: Sequence[float] = (10.0, 20.0, 30.0, 40.0),
    dt_ms: float = 0.025,
    stim_dt_ms: float = 0.1,
    target: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron rheobase I_thr (pA, to within tol_pA) and F-I slope s_thr (Hz/pA) just above it.

    A k-ary bisection: each round probes `probes_per_round` amplitudes per neuron in ONE group, shrinking
    every bracket (lo silent, hi spiking) by a factor k+1. Neurons that fire without input get I_thr = 0;
    neurons silent at max_pA get NaN (rejected by any acceptance window).
    """
    params = np.atleast_2d(params)
    n = params.shape[0]
    kw = dict(start_ms=start_ms, duration_ms=duration_ms, dt_ms=dt_ms, stim_dt_ms=stim_dt_ms, target=target)
    ends = fi_curve(family, params, [0.0, max_pA], **kw)
    lo = np.zeros(n)
    hi = np.full(n, max_pA)
    spontaneous = ends[:, 0] > 0
    never = ends[:, 1] == 0
    active = ~(spontaneous | never)
    k = probes_per_round
    while np.any(active) and np.max((hi - lo)[active]) > tol_pA:
        idx = np.flatnonzero(active & ((hi - lo) > tol_pA))
        fracs = np.arange(1, k + 1) / (k + 1)
        probes = lo[idx, None] + (hi - lo)[idx, None] * fracs[None, :]  # (m, k)
        amps_flat = probes.ravel()
        rows = np.repeat(params[idx], k, axis=0)
        total = start_ms + duration_ms + 100.0
        stim = steps_matrix(amps_flat, start_ms, duration_ms, total, stim_dt_ms)
        res = simulate(family, rows, stim, stim_dt_ms=stim_dt_ms, duration_ms=total, dt_ms=dt_ms,
                       record_dt_ms=max(stim_dt_ms, dt_ms), target=target)
        fired = (count_in_window(res.spike_times_ms, start_ms, start_ms + duration_ms) > 0).reshape(-1, k)
        for r, j in enumerate(idx):
            # Smallest probe that fires (F-I is monotone for these families; take the first firing probe).
            first = np.flatnonzero(fired[r])
            if len(first):
                f = first[0]
                hi[j] = probes[r, f]
                lo[j] = probes[r, f - 1] if f > 0 else lo[j]
            else:
                lo[j] = probes[r, -1]
    I_thr = np.where(never, np.nan, np.where(spontaneous, 0.0, hi))
    s_thr = np.full(n, np.nan)
    ok = np.flatnonzero(np.isfinite(I_thr))
    if len(ok):
        deltas = np.asarray(slope_deltas_pA, dtype=float)
        rates = np.empty((len(ok), len(deltas)))
        # Different amplitudes per neuron: run each (neuron, delta) as its own row of one group.
        amps_flat = (I_thr[ok, None] + deltas[None, :]).ravel()
        rows = np.repeat(params[ok], len(deltas), axis=0)
        total = start_ms + duration_ms + 100.0
        stim = steps_matrix(amps_flat, start_ms, duration_ms, total, stim_dt_ms)
        res = simulate(family, rows, stim, stim_dt_ms=stim_dt_ms, duration_ms=total, dt_ms=dt_ms,
                       record_dt_ms=max(stim_dt_ms, dt_ms), target=target)
        rates[:] = (count_in_window(res.spike_times_ms, start_ms, start_ms + duration_ms)
                    / (duration_ms / 1000.0)).reshape(len(ok), len(deltas))
        x = deltas - deltas.mean()
        s_thr[ok] = (rates - rates.mean(axis=1, keepdims=True)) @ x / float(x @ x)
    return I_thr, s_thr


def adaptation_ratio(spike_times_ms: np.ndarray) -> float:
    """Last ISI over first ISI (1 = no adaptation); NaN with fewer than 3 spikes."""
    if len(spike_times_ms) < 3:
        return math.nan
    isi = np.diff(spike_times_ms)
    return float(isi[-1] / isi[0])
