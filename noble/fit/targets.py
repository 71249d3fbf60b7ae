"""Fit targets from a recording: per-sweep eFEL features, per-recording rheobase / F-I slope / rest, and
per-feature experimental variability (sd) for scaling an objective.

Per-sweep features (`FIT_FEATURES`) come from `noble.datagen.features.trace_features`, the same eFEL extractor
the datagen uses, except the spike-train features (spike count, rate, first-spike latency, ISI CV, adaptation
index) and the last AP's time in the step (`last_spike_fraction`), which come from `noble.fit.spikes`: APs as the
physiology checks define them (peak above -10 mV, prominence >= 20 mV), so a depolarisation-block plateau and its
ringing, which eFEL's -20 mV threshold counts as spikes, never count, and the sag ratio (`step_sag_ratio`: a
smoothed minimum, 0 within the trace's own fluctuations). A simulated and a recorded trace are
measured identically. Each sweep is cut at the next change
of its command after the test step (e.g. the fixed -100 pA step of the pyABF protocols), so later epochs
cannot leak into post-stimulus features.

Resting potential: the median over sweeps of each sweep's median pre-step voltage (robust to spontaneous
spikes; its sweep-to-sweep sd shows drift); the per-sweep eFEL `v_rest_mV` stays among the features.

Rheobase: the first amplitude from which every larger step fires (Allen convention: the first spiking
step), refined to the x-intercept of the F-I line through the first supra-threshold sweeps when that
falls between the last silent and the first spiking step. F-I slope: least-squares slope of rate (spikes
in the step / step duration) vs amplitude over the first `n_fi` supra-threshold sweeps (NOBLE's s_thr).

Variability: residual sd of each feature around a quadratic trend in amplitude (sweep-to-sweep scatter;
across sweeps for the amplitude-independent resting potential), floored at 5 % of |median| as
BluePyEModel's `threshold_efeature_std` does (not for the resting potential, which has no natural zero),
and at a per-feature absolute floor (measurement precision). First-spike latency is relative instead: it
falls hyperbolically from 100s of ms near rheobase to ~10 ms (no quadratic in amplitude follows it, and the
misfit would pass for a 30 ms "scatter" that hides a 50 ms miss near rheobase), and its jitter scales with
it; its scatter is the residual sd of log(latency) around a quadratic in log(amplitude above the first
spiking step), floored at 5 %, so each sweep's sd is that fraction of its own latency (>= 1 ms).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from noble.datagen.features import TRACE_FEATURES, trace_features
from noble.io.recording import Recording, Sweep, holding_level

from noble.operator.ap_metrics import PEAK_MIN_MV

from .spikes import ap_peaks, spike_train_features

REL_SD_FLOOR = 0.05  # BluePyEModel threshold_efeature_std default
ABS_SD_FLOOR: dict[str, float] = {
    "spike_count": 1.0, "rate_Hz": 2.0, "first_spike_latency_ms": 1.0, "isi_cv": 0.02,
    "adaptation_index": 0.01, "ap_amplitude_mV": 1.0, "ap_half_width_ms": 0.05, "ahp_depth_mV": 1.0,
    "v_rest_mV": 0.5, "input_resistance_MOhm": 5.0, "tau_m_ms": 1.0, "sag_ratio": 0.02,
    "last_spike_fraction": 0.05, "prestep_deflection_mV": 1.0, "prestep_sag_mV": 0.5, "ap_peak_mV": 2.0,
    "rebound_mV": 1.0, "rebound_spike_count": 1.0,
    # absolute potentials: electrode filtering and drift, not 5 % of their value
    "deflection_mV": 0.5, "isi_trough_mV": 2.0, "late_deflection_mV": 2.0, "ap_peak_decline_mV": 2.0,
}
# The per-sweep features a fit measures: eFEL's (the dataset's columns), the last AP's time in the step, and the
# pre-step window's (PRESTEP_FEATURES).
PRESTEP_FEATURES: tuple[str, ...] = ("prestep_deflection_mV", "prestep_sag_mV")
FIT_FEATURES: tuple[str, ...] = (*TRACE_FEATURES, "last_spike_fraction", "ap_peak_mV", "isi_trough_mV",
                                 "ap_peak_decline_mV", "rebound_mV", "rebound_spike_count", "deflection_mV",
                                 "late_deflection_mV", *PRESTEP_FEATURES)
REBOUND_WINDOW_MS = 150.0  # after a hyperpolarising step's end, where a rebound (I_h, I_T) peaks
# A rebound's height is read up to here: above any subthreshold rebound, below where the APs that take over peak
REBOUND_CAP_MV = -30.0
FEATURE_UNITS: dict[str, str] = {**{k: spec[2] for k, spec in TRACE_FEATURES.items()}, "last_spike_fraction": "1",
                                 "ap_peak_mV": "mV", "isi_trough_mV": "mV", "rebound_mV": "mV", "deflection_mV": "mV",
                                 "rebound_spike_count": "1", "ap_peak_decline_mV": "mV",
                                 "prestep_deflection_mV": "mV", "late_deflection_mV": "mV",
                                 "prestep_sag_mV": "mV"}
PRESTEP_MIN_MS = 20.0  # shortest pre-step whose steady state and sag are measured
DRIFT_NOTE_MV = 5.0  # a pre-step baseline range across sweeps above this is reported (2.5x the rest check's 2 mV)
STEADY_FRACTION = 0.2  # a window's steady state: the mean of its last 20 % (the physiology checks' definition)
AMPLITUDE_INDEPENDENT = {"v_rest_mV"}
RELATIVE_SCATTER = {"first_spike_latency_ms"}  # sd proportional to the value (see module docstring)
# an absolute potential has no natural zero: 5 % of -65 mV means nothing
NO_RELATIVE_FLOOR = {"v_rest_mV", "ap_peak_mV", "isi_trough_mV", "ap_peak_decline_mV"}


def _f(x: float) -> float | None:
    """JSON-friendly float (None for NaN/inf)."""
    return float(x) if x is not None and math.isfinite(float(x)) else None


class FeatureSD(BaseModel):
    """Experimental variability of one feature and how it was obtained."""

    model_config = ConfigDict(frozen=True)
    sd: float
    empirical_sd: float | None = Field(None, description="scatter in the data, before floors")
    n: int = Field(0, description="sweeps the scatter was measured on")
    relative_sd: float | None = Field(None, description="when set, a value's sd is this fraction of it (>= sd)")

    def sd_at(self, value: float | np.ndarray) -> float | np.ndarray:
        """The sd of a measured value: `sd`, or relative_sd x |value| floored at `sd` for relative features."""
        if self.relative_sd is None:
            return self.sd if np.ndim(value) == 0 else np.full(np.shape(value), self.sd)
        return np.maximum(self.sd, self.relative_sd * np.abs(value))


class RecordingTargets(BaseModel):
    """What a fit should reproduce for one recording (per-sweep arrays follow `amplitudes_pA` order)."""

    model_config = ConfigDict(frozen=True)
    source: str
    amplitudes_pA: list[float]
    stim_start_ms: list[float]
    stim_end_ms: list[float]
    features: dict[str, list[float | None]] = Field(..., description="per-sweep eFEL features; None = undefined")
    feature_sd: dict[str, FeatureSD]
    rheobase_pA: float | None = Field(None, description="interpolated rheobase (I_thr)")
    rheobase_first_spiking_pA: float | None = Field(None, description="first step from which all larger fire")
    rheobase_bracket_pA: tuple[float | None, float | None] = (None, None)
    fi_slope_Hz_per_pA: float | None = Field(None, description="F-I slope just above rheobase (s_thr)")
    fi_points: int = 0
    I_thr_pA: float | None = Field(None, description="rheobase as the datagen defines I_thr: >= 0, 0 when the "
                                    "cell fires without input")
    s_thr_Hz_per_pA: float | None = Field(None, description="= fi_slope_Hz_per_pA, under the datagen's name")
    rest_mV: float | None = Field(None, description="median over sweeps of the median pre-step voltage")
    rest_sd_mV: float | None = Field(None, description="sweep-to-sweep sd of that baseline (drift)")
    baseline_mV: list[float] = Field(default_factory=list, description="each sweep's pre-step baseline (median)")
    input_resistance_MOhm: float | None = None
    tau_m_ms: float | None = None
    sag_ratio: float | None = None
    spontaneous_rate_Hz: float = Field(0.0, description="firing before the stimulus (pre-step baseline)")
    notes: list[str] = []

    @property
    def spontaneously_active(self) -> bool:
        return self.spontaneous_rate_Hz > 0.0

    def feature_array(self, name: str) -> np.ndarray:
        return np.array([np.nan if x is None else x for x in self.features[name]], dtype=float)


def analysis_end_ms(sweep: Sweep, max_tail_ms: float = 1000.0) -> float:
    """End of the analysis window: the next command change after the test step, at most max_tail_ms later."""
    assert sweep.dt_ms is not None
    c = sweep.command_pA()
    b = min(int(round(sweep.stim_end_ms / sweep.dt_ms)), len(c))
    hold = holding_level(c, sweep.dt_ms)
    limit = min(len(c), b + int(round(max_tail_ms / sweep.dt_ms)))
    # skip the step's own falling edge (a few samples), then look for the next departure from holding
    start = min(limit, b + 2)
    away = np.flatnonzero(np.abs(c[start:limit] - hold) > 1.0)
    end = start + int(away[0]) if len(away) else limit
    return end * sweep.dt_ms


def upward_crossings(v_mV: np.ndarray, threshold_mV: float = -20.0) -> np.ndarray:
    """Sample indices i where v[i-1] < threshold <= v[i] (the first sample at or above threshold)."""
    v = np.asarray(v_mV)
    return np.flatnonzero((v[1:] >= threshold_mV) & (v[:-1] < threshold_mV)) + 1


def spike_count_between(v_mV: np.ndarray, dt_ms: float, t0_ms: float, t1_ms: float,
                        threshold_mV: float = -20.0) -> int:
    """Upward threshold crossings in [t0, t1) (the eFEL default threshold): a cheap spontaneous-firing check."""
    a, b = max(0, int(round(t0_ms / dt_ms))), min(len(v_mV), int(round(t1_ms / dt_ms)))
    return int(len(upward_crossings(v_mV[a:b], threshold_mV)))


def prestep_window(sweep: Sweep) -> tuple[float, float] | None:
    """(start, end) ms of the pre-step nearest the test step (>= PRESTEP_MIN_MS), None without one."""
    steps = sweep.presteps(PRESTEP_MIN_MS)
    return (float(steps[-1].start_ms), float(steps[-1].end_ms)) if steps else None


def prestep_features(sweep: Sweep) -> tuple[float, float]:
    """(deflection, sag) in mV of the pre-step window: its steady state (mean of the last 20 %) minus the resting
    baseline (median before the command leaves holding), and, for a hyperpolarising pre-step, steady state minus
    the window's minimum (I_h sag; 0 without one). NaN without a pre-step or where an AP fires in it."""
    w = prestep_window(sweep)
    if w is None:
        return math.nan, math.nan
    dt = float(sweep.dt_ms)  # type: ignore[arg-type]
    v = sweep.v_mV
    a, b = int(round(w[0] / dt)), min(len(v), int(round(w[1] / dt)))
    if b - a < 4 or float(np.max(v[a:b])) > PEAK_MIN_MV:
        return math.nan, math.nan
    base = float(np.median(v[: max(1, int(round(sweep.rest_end_ms / dt)))]))
    steady = float(np.mean(v[b - max(1, int(STEADY_FRACTION * (b - a))): b]))
    hyper = steady < base
    return steady - base, (steady - float(np.min(v[a:b]))) if hyper else math.nan


AP_SHAPE_FEATURES = ("ap_amplitude_mV", "ap_half_width_ms", "ahp_depth_mV")
PASSIVE_FEATURES = ("input_resistance_MOhm", "tau_m_ms")  # eFEL's; the sag ratio is `step_sag_ratio`'s
SAG_SMOOTH_MS = 5.0  # the running mean the sag's minimum is taken on
SAG_NOISE_FACTOR = 4.0  # a sag smaller than this many sd of the step's late fluctuations is noise, not I_h


def _running_mean(x: np.ndarray, k: int) -> np.ndarray:
    c = np.concatenate(([0.0], np.cumsum(x, dtype=np.float64)))
    return (c[k:] - c[:-k]) / k


def step_sag_ratio(sweep: Sweep) -> float:
    """I_h's sag ratio of a hyperpolarising test step: (steady state - minimum) / (baseline - minimum), the minimum
    taken on a 5 ms running mean over the step's first half, the steady state the mean of its last 20 %, the
    baseline eFEL's voltage_base. 0 where the sag is within SAG_NOISE_FACTOR sd of the step's late fluctuations
    (the detrended, smoothed last 20 %): eFEL's sag_ratio1 takes the raw minimum anywhere in the step, so a noisy
    high-resistance cell without I_h read as sagging (0.05-0.30 on synthetic cells with 5 pA current noise).
    NaN for a depolarising step, with an AP in the step, or on a step shorter than 8 smoothing windows."""
    if sweep.stim_amplitude_pA >= 0:
        return math.nan
    dt = float(sweep.dt_ms)  # type: ignore[arg-type]
    a, b = int(round(sweep.stim_start_ms / dt)), min(sweep.n_samples, int(round(sweep.stim_end_ms / dt)))
    k = max(1, int(round(SAG_SMOOTH_MS / dt)))
    v = sweep.v_mV
    if b - a < 8 * k or float(np.max(v[a:b])) > PEAK_MIN_MV:
        return math.nan
    smooth = _running_mean(v[a:b], k)
    low = float(np.min(smooth[: max(1, len(smooth) // 2)]))
    n_late = max(2 * k, int(STEADY_FRACTION * (b - a)))
    late = v[b - n_late: b].astype(np.float64)
    t = np.arange(n_late, dtype=np.float64)
    trend = np.polyval(np.polyfit(t, late, 1), t)
    noise = float(np.std(_running_mean(late - trend, k)))
    base = float(voltage_base(v, dt, sweep.stim_start_ms)[0])
    steady = float(np.mean(late))
    if base - low <= 0:
        return math.nan
    sag = steady - low
    return max(0.0, sag) / (base - low) if sag > SAG_NOISE_FACTOR * noise else 0.0


def voltage_base(v_mV: np.ndarray, dt_ms: float, stim_start_ms: float) -> np.ndarray:
    """(n,) eFEL's voltage_base of each row: the mean over [0.9 stim_start, stim_start] (both ends included)."""
    t = np.arange(np.shape(v_mV)[-1]) * dt_ms
    win = (t >= 0.9 * stim_start_ms - 1e-9) & (t <= stim_start_ms + 1e-9)
    if not win.any():
        win[: max(1, int(round(stim_start_ms / dt_ms)))] = True
    return np.mean(np.atleast_2d(v_mV)[:, win], axis=1)


def deflection(sweep: Sweep) -> float:
    """Steady-state deflection of the test step in mV: the mean of its last 20 % minus the resting baseline
    (median before the command leaves holding), the physiology checks' subthreshold measure."""
    dt = float(sweep.dt_ms)  # type: ignore[arg-type]
    v = sweep.v_mV
    a = int(round((sweep.stim_end_ms - STEADY_FRACTION * sweep.stim_duration_ms) / dt))
    b = min(len(v), int(round(sweep.stim_end_ms / dt)))
    if b <= a:
        return math.nan
    return float(np.mean(v[a:b])) - float(np.median(v[: max(1, int(round(sweep.rest_end_ms / dt)))]))


def late_deflection(sweep: Sweep) -> float:
    """The median voltage over the test step's last 20 % minus the resting baseline, in mV: where a cell sits late
    in a step it fires in (the median is robust to the APs). A model in depolarisation block sits 40-50 mV above
    a cell that settles after a burst (File_axon_5 at +200..+300 pA: cell -58 mV, a blocked fit -10 mV)."""
    dt = float(sweep.dt_ms)  # type: ignore[arg-type]
    v = sweep.v_mV
    a = int(round((sweep.stim_end_ms - STEADY_FRACTION * sweep.stim_duration_ms) / dt))
    b = min(len(v), int(round(sweep.stim_end_ms / dt)))
    if b <= a:
        return math.nan
    return float(np.median(v[a:b])) - float(np.median(v[: max(1, int(round(sweep.rest_end_ms / dt)))]))


def _rebound_window(sweep: Sweep, end_ms: float | None = None) -> tuple[int, int] | None:
    """(first, last + 1) sample of the REBOUND_WINDOW_MS after a hyperpolarising test step (cut at end_ms); None for
    a depolarising step, with less than half the window, or where an AP fires in the 100 ms before the step (a
    pacemaker's spikes): what `rebound` and `rebound_spikes` read."""
    if sweep.stim_amplitude_pA >= 0:
        return None
    dt = float(sweep.dt_ms)  # type: ignore[arg-type]
    a = int(round(sweep.stim_end_ms / dt))
    b = min(sweep.n_samples, a + int(round(REBOUND_WINDOW_MS / dt)))
    if end_ms is not None:
        b = min(b, int(round(end_ms / dt)))
    s0 = int(round(sweep.stim_start_ms / dt))
    if b - a < int(round(0.5 * REBOUND_WINDOW_MS / dt)):
        return None
    if float(np.max(sweep.v_mV[max(0, s0 - int(round(100.0 / dt))): s0 + 1])) > PEAK_MIN_MV:
        return None
    return a, b


def rebound(sweep: Sweep) -> float:
    """After a hyperpolarising test step: the highest voltage in the REBOUND_WINDOW_MS after its end, capped at
    REBOUND_CAP_MV, minus eFEL's voltage_base before it, in mV (> 0: the cell overshoots its rest, I_h / I_T).
    Where a rebound AP fires the value is the cap's: a model whose rebound stays below threshold is that far short
    (a graded pull the AP count, `rebound_spikes`, cannot give: a drawn LTS cell's fit missed its one rebound AP
    with I_T free, its V_x 13 mV off). NaN where an AP fires in the 100 ms before the step (a pacemaker's spikes),
    for depolarising steps, or without half the window after the step."""
    window = _rebound_window(sweep)
    if window is None:
        return math.nan
    peak = min(float(np.max(sweep.v_mV[window[0]:window[1]])), REBOUND_CAP_MV)
    return peak - float(voltage_base(sweep.v_mV, float(sweep.dt_ms), sweep.stim_start_ms)[0])  # type: ignore[arg-type]


def rebound_spikes(sweep: Sweep) -> float:
    """APs (peak above -10 mV, prominence >= 20 mV, as the spike features count them) in the REBOUND_WINDOW_MS after
    a hyperpolarising test step's end: post-inhibitory rebound, I_T's low-threshold burst (LTS interneurons,
    thalamic cells) or I_h's. The spike features count APs in the step only, and `rebound` reads the height up to
    REBOUND_CAP_MV.
    NaN for a depolarising step, where an AP fires in the 100 ms before the step (a pacemaker's spikes; for a
    spontaneously active recording `recording_targets` sets every sweep's to NaN), or without half the window
    before the analysis end (`analysis_end_ms`)."""
    window = _rebound_window(sweep, analysis_end_ms(sweep) if sweep.stim_amplitude_pA < 0 else None)
    if window is None:
        return math.nan
    return float(len(ap_peaks(sweep.v_mV[None, window[0]:window[1]], float(sweep.dt_ms))[0]))  # type: ignore[arg-type]


def sweep_features(rec: Recording, threshold_mV: float = -20.0) -> dict[str, np.ndarray]:
    """`FIT_FEATURES` of every sweep (recording order), each trace cut at its analysis end (module docstring).

    eFEL runs only where its features are defined, which is what a fit's cost is made of (every candidate's
    every sweep, each generation): the AP shapes on the traces with an AP (`spikes.spike_train_features`, which
    gives the spike-train features), the passive ones on hyperpolarising steps; voltage_base is eFEL's mean over
    [0.9 onset, onset], in numpy. eFEL's per-trace cost is mostly its fixed overhead and the interpolation
    (0.6 s for 204 traces of 16000 samples asking for voltage_base alone, 1.6 s for every feature)."""
    n = len(rec)
    out = {name: np.full(n, np.nan) for name in FIT_FEATURES}
    groups: dict[tuple[float, int, float, float], list[int]] = {}
    for k, s in enumerate(rec.sweeps):
        assert s.dt_ms is not None
        T = int(round(analysis_end_ms(s) / s.dt_ms))
        groups.setdefault((s.dt_ms, T, s.stim_start_ms, s.stim_end_ms), []).append(k)
    for (dt, T, start, end), members in groups.items():
        v = np.stack([rec.sweeps[k].v_mV[:T] for k in members])
        amps = np.array([rec.sweeps[k].stim_amplitude_pA for k in members])
        rows = np.asarray(members)
        feats = spike_train_features(v, dt, start, end)
        feats["v_rest_mV"] = voltage_base(v, dt, start)
        for name, vals in feats.items():
            if name in out:
                out[name][rows] = vals
        for names, mask in ((AP_SHAPE_FEATURES, feats["spike_count"] > 0), (PASSIVE_FEATURES, amps < 0)):
            if mask.any():
                sub = trace_features(v[mask], dt, start, end, amps[mask], threshold_mV=threshold_mV, names=names)
                for name, vals in sub.items():
                    out[name][rows[mask]] = vals
    for k, s in enumerate(rec.sweeps):
        out["prestep_deflection_mV"][k], out["prestep_sag_mV"][k] = prestep_features(s)
        out["rebound_mV"][k] = rebound(s)
        out["rebound_spike_count"][k] = rebound_spikes(s)
        out["deflection_mV"][k] = deflection(s)
        out["late_deflection_mV"][k] = late_deflection(s)
        out["sag_ratio"][k] = step_sag_ratio(s)
    return out


def rheobase_and_fi_slope(amplitudes_pA: np.ndarray, rates_Hz: np.ndarray, n_fi: int = 4
                          ) -> tuple[float, float, tuple[float, float], float, int]:
    """(rheobase, first spiking amplitude, (last silent, first spiking), F-I slope Hz/pA, points used).

    Sweeps at the same amplitude are averaged. NaN where undefined (never fires; slope with < 2 points).
    """
    amps = np.asarray(amplitudes_pA, dtype=float)
    rates = np.asarray(rates_Hz, dtype=float)
    ok = np.isfinite(amps) & np.isfinite(rates)
    ua = np.unique(amps[ok])
    ur = np.array([rates[ok][amps[ok] == a].mean() for a in ua])
    nan = float("nan")
    if len(ua) == 0 or ur[-1] <= 0:
        return nan, nan, (nan, nan), nan, 0
    silent = np.flatnonzero(ur <= 0)
    k0 = int(silent[-1]) + 1 if len(silent) else 0  # first index from which every larger step fires
    first = float(ua[k0])
    last_silent = float(ua[k0 - 1]) if k0 > 0 else nan
    sel = slice(k0, min(len(ua), k0 + n_fi))
    x, y = ua[sel], ur[sel]
    slope = float(np.polyfit(x, y, 1)[0]) if len(x) >= 2 else nan
    rheo = first
    if math.isfinite(last_silent) and math.isfinite(slope) and slope > 0:
        x_int = first - ur[k0] / slope
        rheo = float(min(first, max(last_silent, x_int)))
    return rheo, first, (last_silent, first), slope, int(len(x))


def _trend_residual_sd(amps: np.ndarray, vals: np.ndarray, degree: int = 2) -> tuple[float, int]:
    ok = np.isfinite(amps) & np.isfinite(vals)
    x, y = amps[ok], vals[ok]
    n = len(x)
    if n < degree + 3 or np.ptp(x) == 0:
        return float("nan"), n
    coef = np.polyfit(x, y, degree)
    resid = y - np.polyval(coef, x)
    return float(np.sqrt(np.sum(resid**2) / (n - degree - 1))), n


def _log_trend_residual_sd(amps: np.ndarray, vals: np.ndarray) -> tuple[float, int]:
    """Residual sd of log(vals) around a quadratic in log(amplitude above the first step with a value + one
    step): the relative scatter of a feature that falls hyperbolically from its onset (latency)."""
    ok = np.isfinite(amps) & np.isfinite(vals) & (vals > 0)
    if ok.sum() < 5:
        return float("nan"), int(ok.sum())
    x = amps[ok]
    steps = np.diff(np.unique(x))
    x = np.log(x - x.min() + float(np.median(steps)))
    return _trend_residual_sd(x, np.log(vals[ok]))


def feature_variability(amplitudes_pA: np.ndarray, features: dict[str, np.ndarray]) -> dict[str, FeatureSD]:
    """Per-feature sd for objective scaling: data scatter, floored (see module docstring)."""
    amps = np.asarray(amplitudes_pA, dtype=float)
    out: dict[str, FeatureSD] = {}
    for name, vals in features.items():
        vals = np.asarray(vals, dtype=float)
        finite = vals[np.isfinite(vals)]
        if name in RELATIVE_SCATTER:
            emp, n = _log_trend_residual_sd(amps, vals)
            rel = max(emp, REL_SD_FLOOR) if math.isfinite(emp) else REL_SD_FLOOR
            out[name] = FeatureSD(sd=ABS_SD_FLOOR.get(name, 1e-3), empirical_sd=_f(emp), n=n, relative_sd=rel)
            continue
        if name in AMPLITUDE_INDEPENDENT:
            emp, n = (float(np.std(finite, ddof=1)), len(finite)) if len(finite) >= 2 else (float("nan"), len(finite))
        else:
            emp, n = _trend_residual_sd(amps, vals)
        med = float(np.median(np.abs(finite))) if len(finite) else 0.0
        rel = 0.0 if name in NO_RELATIVE_FLOOR else REL_SD_FLOOR * med
        floor = max(rel, ABS_SD_FLOOR.get(name, 1e-3))
        sd = max(emp, floor) if math.isfinite(emp) else floor
        out[name] = FeatureSD(sd=sd, empirical_sd=_f(emp), n=n)
    return out


def recording_targets(rec: Recording, *, n_fi: int = 4, threshold_mV: float = -20.0) -> RecordingTargets:
    """Everything a fit needs from one recording (see module docstring)."""
    feats = sweep_features(rec, threshold_mV=threshold_mV)
    amps = rec.amplitudes_pA
    rates = feats["rate_Hz"]
    rheo, first, bracket, slope, n_pts = rheobase_and_fi_slope(amps, rates, n_fi=n_fi)
    notes: list[str] = []
    # spontaneous firing: spikes in the pre-step baseline of every sweep
    pre_spikes, pre_s = 0, 0.0
    for s in rec.sweeps:
        assert s.dt_ms is not None
        pre_spikes += spike_count_between(s.v_mV, s.dt_ms, 0.0, s.rest_end_ms, threshold_mV)
        pre_s += s.rest_end_ms / 1000.0
    spont = pre_spikes / pre_s if pre_s > 0 else 0.0
    if not math.isfinite(rheo):
        notes.append("no sweep fires: rheobase above the largest step")
    elif not math.isfinite(bracket[0]):
        notes.append("fires at every tested amplitude: rheobase is at or below the smallest step (censored)")
    if spont > 0:
        notes.append(f"spontaneously active ({spont:.1f} Hz before the step)")
        # a pacemaker's APs after a hyperpolarising step are its firing resuming, not a rebound (the FSI's model fired
        # 145 ms after the -50 pA step, the cell after 150 ms: a 'rebound' of one AP against none)
        feats["rebound_spike_count"][:] = np.nan
    neg = amps < 0
    base = np.array([float(np.median(s.v_mV[: max(1, int(round(s.rest_end_ms / s.dt_ms)))]))  # type: ignore[operator]
                     for s in rec.sweeps])
    if len(base) > 1 and np.ptp(base) > DRIFT_NOTE_MV:
        lo, hi = int(np.argmin(base)), int(np.argmax(base))
        notes.append(f"the pre-step baseline drifts over the protocol by {np.ptp(base):.1f} mV ({base[hi]:.1f} mV at "
                     f"sweep {rec.sweeps[hi].index}, {base[lo]:.1f} mV at sweep {rec.sweeps[lo].index}; median "
                     f"{np.median(base):.1f}): the model is one cell state for every sweep, so the sweeps far from "
                     "the median baseline (an activity-dependent current built up over the protocol, or a change in "
                     "access) cannot all be met")

    def med(name: str, mask: np.ndarray | None = None) -> float | None:
        vals = feats[name] if mask is None else feats[name][mask]
        vals = vals[np.isfinite(vals)]
        return _f(float(np.median(vals))) if len(vals) else None

    return RecordingTargets(
        source=rec.source,
        amplitudes_pA=amps.tolist(),
        stim_start_ms=[s.stim_start_ms for s in rec.sweeps],
        stim_end_ms=[s.stim_end_ms for s in rec.sweeps],
        features={k: [_f(x) for x in v] for k, v in feats.items()},
        feature_sd=feature_variability(amps, feats),
        rheobase_pA=_f(rheo), rheobase_first_spiking_pA=_f(first),
        rheobase_bracket_pA=(_f(bracket[0]), _f(bracket[1])),
        fi_slope_Hz_per_pA=_f(slope), fi_points=n_pts,
        I_thr_pA=_f(max(0.0, rheo)) if math.isfinite(rheo) else None,
        s_thr_Hz_per_pA=_f(slope),
        rest_mV=_f(float(np.median(base))),
        rest_sd_mV=_f(float(np.std(base, ddof=1))) if len(base) > 1 else None,
        baseline_mV=[float(b) for b in base],
        input_resistance_MOhm=med("input_resistance_MOhm", neg),
        tau_m_ms=med("tau_m_ms", neg),
        sag_ratio=med("sag_ratio", neg),
        spontaneous_rate_Hz=float(spont),
        notes=notes,
    )


def targets_table(targets: list[RecordingTargets]) -> str:
    """A small fixed-width table (file, rheobase, F-I slope, rest, Rin) for logs and reports."""
    def fmt(x: Any, spec: str) -> str:
        return "-" if x is None else format(x, spec)

    rows = [f"{'file':32s} {'rheobase_pA':>11s} {'bracket_pA':>13s} {'FI_Hz/pA':>8s} {'rest_mV':>8s} "
            f"{'Rin_MOhm':>8s} {'spont_Hz':>8s}"]
    for t in targets:
        br = f"{fmt(t.rheobase_bracket_pA[0], '.0f')}..{fmt(t.rheobase_bracket_pA[1], '.0f')}"
        rows.append(f"{t.source.rsplit('/', 1)[-1][:32]:32s} {fmt(t.rheobase_pA, '11.1f')} {br:>13s} "
                    f"{fmt(t.fi_slope_Hz_per_pA, '8.3f')} {fmt(t.rest_mV, '8.1f')} "
                    f"{fmt(t.input_resistance_MOhm, '8.0f')} {t.spontaneous_rate_Hz:8.1f}")
    return "\n".join(rows)
