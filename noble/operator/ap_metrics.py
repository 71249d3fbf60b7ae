"""Action potentials as a physiologist measures them on a voltage trace, and matching of two traces' APs.

One job: find the APs of a sampled trace and measure each one; pair the APs of two traces of the same
neuron. Used by the evaluation (noble/operator/evaluate.py) on the surrogate and on the solver alike.

Definitions (all on the trace as sampled, t = t0 + k dt):

* AP: a local maximum found by `scipy.signal.find_peaks` with height > -10 mV (`PEAK_MIN_MV`) and a
  prominence >= 20 mV (`PROMINENCE_MV`): an overshooting-or-nearly event that stands 20 mV above the valleys
  around it. A wobble on a spike's shoulder or a subthreshold bump is not an AP.
* peak (mV): the largest sample of the AP (what the recording shows; no interpolation above the samples).
* peak time (ms): the vertex of the parabola through the largest sample and its two neighbours (sub-sample
  timing; |correction| <= dt / 2), so timing errors are not quantised to the grid.
* threshold: where dV/dt (finite differences, at the midpoints between samples) rises through
  `DVDT_THRESHOLD` = 10 mV/ms on the way to the AP's steepest upstroke, searched back from that steepest
  point to the previous AP's peak (the trace start for the first AP); the crossing is linearly interpolated
  in time and the voltage read from the linearly interpolated trace there. If dV/dt never was below (or
  never reaches) 10 mV/ms in that stretch, the lowest sample of it (the preceding trough) is the reference.
* AP amplitude: peak - threshold voltage. Half-width (ms): the time between the rising and the falling
  crossing of the half-amplitude level (threshold + amplitude / 2) on the LINEARLY INTERPOLATED trace (the
  exact crossing of the piecewise-linear trace, i.e. the limit of interpolating ever more finely), so it is
  not a multiple of dt. The falling crossing is searched up to the next AP's peak (the trace end).
* AHP trough (mV): the lowest sample between this AP's peak and the next AP's peak; NaN for the last AP.
* peak spread (mV): max - min of the peaks of the APs of one trace (NaN with fewer than 2 APs).

Stunted events (`stunted_peaks`): peaks with the AP prominence whose top stays at or below -10 mV; not APs by the
definition above, but what a spike that failed to overshoot looks like (the solver's APs overshoot; a surrogate
may draw some spikes this short, and they then count as missing APs).

Matching (`match_aps`): one to one, nearest first: all (reference AP, test AP) pairs whose peak times differ
by at most `MATCH_WINDOW_MS` = 3 ms are taken in order of increasing distance, each AP used at most once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import find_peaks

PEAK_MIN_MV = -10.0
PROMINENCE_MV = 20.0
DVDT_THRESHOLD = 10.0  # mV/ms
MATCH_WINDOW_MS = 3.0


@dataclass
class APs:
    """The APs of one trace (one entry per AP, in time order)."""

    index: np.ndarray  # (n,) sample index of the peak
    peak_ms: np.ndarray  # parabola-refined peak time
    peak_mV: np.ndarray  # largest sample
    threshold_ms: np.ndarray
    threshold_mV: np.ndarray
    half_width_ms: np.ndarray  # NaN when a crossing is missing
    ahp_mV: np.ndarray  # trough to the next AP; NaN for the last

    def __len__(self) -> int:
        return len(self.index)

    def within(self, lo_ms: float, hi_ms: float) -> np.ndarray:
        """Boolean mask of the APs whose peak time lies in [lo_ms, hi_ms]."""
        return (self.peak_ms >= lo_ms) & (self.peak_ms <= hi_ms)

    @property
    def peak_spread_mV(self) -> float:
        return float(self.peak_mV.max() - self.peak_mV.min()) if len(self) >= 2 else float("nan")


def _crossing(t0: float, v0: float, t1: float, v1: float, level: float) -> float:
    """Time where the segment (t0, v0)-(t1, v1) crosses `level` (linear)."""
    return t0 + (level - v0) / (v1 - v0) * (t1 - t0) if v1 != v0 else t0


def find_aps(v_mV: np.ndarray, dt_ms: float, t0_ms: float = 0.0, *, peak_min_mV: float = PEAK_MIN_MV,
             prominence_mV: float = PROMINENCE_MV, dvdt_threshold: float = DVDT_THRESHOLD) -> APs:
    """Every AP of the 1-D trace `v_mV` sampled at dt_ms from t0_ms, measured as in the module docstring."""
    v = np.asarray(v_mV, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError("find_aps takes one trace (1-D)")
    peaks, _ = find_peaks(v, height=peak_min_mV, prominence=prominence_mV)
    n = len(peaks)
    peak_ms = np.empty(n)
    thr_ms = np.full(n, np.nan)
    thr_mV = np.full(n, np.nan)
    hw = np.full(n, np.nan)
    ahp = np.full(n, np.nan)
    dvdt = np.diff(v) / dt_ms  # dvdt[j] sits at t_j + dt/2
    for i, k in enumerate(peaks):
        # sub-sample peak time: vertex of the parabola through k-1, k, k+1
        off = 0.0
        if 0 < k < len(v) - 1:
            a, b, c = v[k - 1], v[k], v[k + 1]
            den = a - 2 * b + c
            if den < 0:
                off = float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))
        peak_ms[i] = t0_ms + (k + off) * dt_ms
        lo = peaks[i - 1] if i > 0 else 0
        hi = peaks[i + 1] if i + 1 < n else len(v) - 1
        # threshold: back from the steepest point of the upstroke to the last midpoint with dV/dt below the
        # threshold, then the linear crossing between it and the next midpoint
        up = lo + int(np.argmax(dvdt[lo:k])) if k > lo else k
        below = np.flatnonzero(dvdt[lo:up] < dvdt_threshold) if up > lo else np.empty(0, dtype=np.int64)
        if len(below) and dvdt[up] >= dvdt_threshold:
            j = lo + below[-1]  # dvdt[j] < thr <= dvdt[j + 1]
            tc = _crossing(j + 0.5, dvdt[j], j + 1.5, dvdt[j + 1], dvdt_threshold)
            tc = min(max(tc, float(lo)), float(k))
            thr_ms[i] = t0_ms + tc * dt_ms
            thr_mV[i] = float(np.interp(tc, np.arange(len(v)), v))
        else:
            m = lo + int(np.argmin(v[lo:k + 1]))
            thr_ms[i] = t0_ms + m * dt_ms
            thr_mV[i] = v[m]
        half = 0.5 * (v[k] + thr_mV[i])
        # rising crossing: last sample before the peak below the half level
        rise = np.flatnonzero(v[lo:k] < half)
        # falling crossing: first sample after the peak below the half level (before the next peak)
        fall = np.flatnonzero(v[k + 1:hi + 1] < half)
        if len(rise) and len(fall):
            r = lo + rise[-1]
            f = k + 1 + fall[0]
            t_up = _crossing(r, v[r], r + 1, v[r + 1], half)
            t_dn = _crossing(f - 1, v[f - 1], f, v[f], half)
            hw[i] = (t_dn - t_up) * dt_ms
        if i + 1 < n:
            ahp[i] = float(v[k:peaks[i + 1] + 1].min())
    return APs(index=peaks, peak_ms=peak_ms, peak_mV=v[peaks].astype(np.float64), threshold_ms=thr_ms,
               threshold_mV=thr_mV, half_width_ms=hw, ahp_mV=ahp)


def stunted_peaks(v_mV: np.ndarray, *, peak_min_mV: float = PEAK_MIN_MV,
                  prominence_mV: float = PROMINENCE_MV) -> np.ndarray:
    """Sample indices of the peaks with >= prominence_mV prominence that do NOT reach peak_min_mV."""
    v = np.asarray(v_mV, dtype=np.float64)
    peaks, _ = find_peaks(v, prominence=prominence_mV)
    return peaks[v[peaks] <= peak_min_mV]


def match_aps(t_ref_ms: np.ndarray, t_test_ms: np.ndarray,
              window_ms: float = MATCH_WINDOW_MS) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one pairs (i_ref, i_test) of APs whose times differ by <= window_ms, nearest pairs first.
    Returned sorted by i_ref."""
    a = np.asarray(t_ref_ms, dtype=np.float64)
    b = np.asarray(t_test_ms, dtype=np.float64)
    if len(a) == 0 or len(b) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    # candidate pairs: for each reference AP, the test APs inside the window (both sorted: searchsorted)
    lo = np.searchsorted(b, a - window_ms, side="left")
    hi = np.searchsorted(b, a + window_ms, side="right")
    ii = np.repeat(np.arange(len(a)), hi - lo)
    jj = np.concatenate([np.arange(l, h) for l, h in zip(lo, hi)]) if len(ii) else np.empty(0, dtype=np.int64)
    d = np.abs(a[ii] - b[jj])
    used_a = np.zeros(len(a), dtype=bool)
    used_b = np.zeros(len(b), dtype=bool)
    out_a, out_b = [], []
    for k in np.argsort(d, kind="stable"):
        i, j = ii[k], jj[k]
        if not used_a[i] and not used_b[j]:
            used_a[i] = used_b[j] = True
            out_a.append(i)
            out_b.append(j)
    order = np.argsort(out_a, kind="stable")
    return np.asarray(out_a, dtype=np.int64)[order], np.asarray(out_b, dtype=np.int64)[order]
