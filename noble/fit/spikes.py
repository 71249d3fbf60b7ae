"""Spike-train features of many traces at once, with the physiologist's AP definition: what the fit's objective
counts, for the recording and for every candidate alike.

eFEL counts a spike at every upward crossing of its Threshold (-20 mV): a model in depolarisation block (a burst
at the step's onset, then a plateau near -20 mV) has its plateau's ringing counted as spikes, scores counts and
rates the cell has, and the search kept such models. Here an AP is what `noble.operator.ap_metrics.find_aps`
(and so the physiology checks, `physiology.py`) call one: a local maximum above -10 mV (`PEAK_MIN_MV`) with a
prominence of at least 20 mV (`PROMINENCE_MV`), found by `scipy.signal.find_peaks`. A plateau and its ringing (a
few mV around -25 mV) never reach either criterion; an AP from a plateau must overshoot -10 mV AND stand 20 mV
above the valleys around it.

Vectorised: the (N, T) traces are laid end to end, each followed by one sentinel sample far above any voltage,
and `find_peaks` runs ONCE on that row. A prominence's base search stops at the first sample higher than the
peak, so it stops at the sentinel exactly where the per-trace search stops at the trace's edge: the APs found
are exactly those of N separate `find_peaks` calls (tests/fit/test_spikes.py checks it), without N Python calls.

Per trace, from the APs whose peak time (the vertex of the parabola through the largest sample and its
neighbours, as `find_aps`) lies in [stim_start, stim_end]:

* spike_count; rate_Hz = spike_count / step duration (s).
* first_spike_latency_ms: first AP peak - stim_start (eFEL's time_to_first_spike is to the peak too); NaN without one.
* isi_cv: sd (ddof 1) / mean of the intervals between consecutive peaks, the first interval dropped (eFEL's ISI_CV
  with ignore_first_ISI); needs >= 4 APs.
* adaptation_index: eFEL's adaptation_index2: the first AP dropped, the mean over consecutive intervals of
  (ISI_i - ISI_i-1) / (ISI_i + ISI_i-1); needs >= 4 APs.
* last_spike_fraction: (last AP peak - stim_start) / step duration, in [0, 1]; NaN without an AP. Near 1 for a cell
  that fires to the end of the step, small for a model that stops early (depolarisation block).
* ap_peak_mV: median AP peak (mV, the parabola's vertex); NaN without an AP.
* isi_trough_mV: median of the lowest voltage between consecutive APs of the step (both in it): where the cell
  sits between spikes, what the physiology check's interspike trough compares (a regular-spiking cell near
  -45 mV between spikes against a model that dips to -64 mV passed every count); NaN with < 2 APs.
* ap_peak_decline_mV: median peak of the step's last 3 APs minus that of its first 3 (negative: the APs shrink
  over the train, as Na+ channels accumulate in slow inactivation); NaN with < PEAK_DECLINE_MIN_APS APs.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy.signal import find_peaks

from noble.operator.ap_metrics import PEAK_MIN_MV, PROMINENCE_MV

SPIKE_FEATURES: tuple[str, ...] = ("spike_count", "rate_Hz", "first_spike_latency_ms", "isi_cv",
                                   "adaptation_index", "last_spike_fraction", "ap_peak_mV", "isi_trough_mV",
                                   "ap_peak_decline_mV")
PEAK_DECLINE_MIN_APS = 6  # two disjoint groups of 3
_SENTINEL_MV = 1e9  # above any membrane potential (traces are finite; the fit clips candidates to +-150 mV)


def ap_peaks(v_mV: np.ndarray, dt_ms: float, *, peak_min_mV: float = PEAK_MIN_MV,
             prominence_mV: float = PROMINENCE_MV, with_shape: bool = False
             ) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row, peak time ms) of every AP of every row of v_mV (N, T), rows in order, times ascending within a row.
    Peak times are parabola-refined as in `find_aps` (|correction| <= dt / 2). with_shape: also (peak mV, the
    vertex of that parabola; trough mV, the lowest sample between this AP and the next one of its row, NaN for
    a row's last AP)."""
    v = np.asarray(v_mV, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError("ap_peaks takes traces as rows (N, T)")
    N, T = v.shape
    if N == 0 or T < 3:
        return (np.zeros(0, dtype=np.int64), np.zeros(0)) + ((np.zeros(0), np.zeros(0)) if with_shape else ())
    flat = np.empty((N, T + 1))
    flat[:, :T] = v
    flat[:, T] = _SENTINEL_MV
    flat = flat.ravel()
    peaks, _ = find_peaks(flat, height=(peak_min_mV, 0.5 * _SENTINEL_MV), prominence=prominence_mV)
    row, k = np.divmod(peaks, T + 1)
    keep = k < T  # (the sentinels are excluded by the height bound; this is belt and braces)
    peaks, row, k = peaks[keep], row[keep], k[keep]
    off = np.zeros(len(peaks))
    height = flat[peaks].copy()
    inner = (k > 0) & (k < T - 1)
    if inner.any():
        p = peaks[inner]
        a, b, c = flat[p - 1], flat[p], flat[p + 1]
        den = a - 2 * b + c
        with np.errstate(divide="ignore", invalid="ignore"):
            o = np.clip(np.where(den < 0, 0.5 * (a - c) / den, 0.0), -0.5, 0.5)
        off[inner] = o
        height[inner] = b - 0.25 * (a - c) * o
    if not with_shape:
        return row.astype(np.int64), (k + off) * dt_ms
    trough = np.full(len(peaks), np.nan)
    if len(peaks) > 1:
        # min over flat[p_i : p_i+1] for consecutive APs in one pass; a pair across two rows is discarded
        seg = np.minimum.reduceat(flat, peaks)[:-1]
        same = row[1:] == row[:-1]
        trough[:-1][same] = seg[same]
    return row.astype(np.int64), (k + off) * dt_ms, height, trough


def spike_train_features(v_mV: np.ndarray, dt_ms: float, stim_start_ms: float | Sequence[float],
                         stim_end_ms: float | Sequence[float]) -> dict[str, np.ndarray]:
    """The module docstring's features of every row of v_mV (N, T), each (N,)."""
    v = np.atleast_2d(np.asarray(v_mV, dtype=np.float64))
    N = v.shape[0]
    starts = np.broadcast_to(np.asarray(stim_start_ms, dtype=np.float64), (N,))
    ends = np.broadcast_to(np.asarray(stim_end_ms, dtype=np.float64), (N,))
    row, t, peak, trough = ap_peaks(v, dt_ms, with_shape=True)
    inside = (t >= starts[row]) & (t <= ends[row])
    # a trough counts between two consecutive APs of the step (the next AP inside too), as the physiology check
    nxt_inside = np.r_[inside[1:], False] & np.r_[row[1:] == row[:-1], False]
    trough = np.where(nxt_inside, trough, np.nan)
    row, t, peak, trough = row[inside], t[inside], peak[inside], trough[inside]
    dur = np.maximum(ends - starts, 1e-12)
    count = np.bincount(row, minlength=N).astype(np.float64)
    out = {name: np.full(N, np.nan) for name in SPIKE_FEATURES}
    out["spike_count"] = count
    out["rate_Hz"] = count / (dur / 1000.0)
    if len(row) == 0:
        return out
    first = np.r_[True, row[1:] != row[:-1]]
    last = np.r_[row[1:] != row[:-1], True]
    out["first_spike_latency_ms"][row[first]] = t[first] - starts[row[first]]
    out["last_spike_fraction"][row[last]] = (t[last] - starts[row[last]]) / dur[row[last]]
    # medians per trace (the physiology checks' AP peak and interspike trough): rows are contiguous runs
    bounds = np.r_[np.flatnonzero(first), len(row)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        out["ap_peak_mV"][row[a]] = float(np.median(peak[a:b]))
        out["ap_peak_decline_mV"][row[a]] = peak_decline(peak[a:b])
        tr = trough[a:b][np.isfinite(trough[a:b])]
        if len(tr):
            out["isi_trough_mV"][row[a]] = float(np.median(tr))
    # ISI features without a loop over traces: j = position of each AP in its trace; interval j (j >= 1) ends
    # at AP j; eFEL drops the first interval (j = 1), so a trace with n >= 4 APs has n - 2 intervals (j >= 2)
    start = np.flatnonzero(first)
    j = np.arange(len(row)) - np.repeat(start, np.diff(np.r_[start, len(row)]))
    n_row = count[row]
    isi = np.r_[np.nan, np.diff(t)]
    use = (j >= 2) & (n_row >= 4)
    if use.any():
        r, x = row[use], isi[use]
        m = np.bincount(r, x, minlength=N)
        k = np.bincount(r, minlength=N)
        ok = k >= 2
        mean = np.divide(m, k, out=np.zeros(N), where=ok)
        ss = np.bincount(r, (x - mean[r]) ** 2, minlength=N)
        out["isi_cv"][ok] = np.sqrt(ss[ok] / (k[ok] - 1)) / mean[ok]
        pair = use & (j >= 3)  # interval j and j - 1, both kept
        if pair.any():
            q = (isi[pair] - isi[np.flatnonzero(pair) - 1]) / (isi[pair] + isi[np.flatnonzero(pair) - 1])
            rp = row[pair]
            out["adaptation_index"][ok] = (np.bincount(rp, q, minlength=N)[ok]
                                           / np.maximum(np.bincount(rp, minlength=N)[ok], 1))
    return out


def peak_decline(peaks_mV: np.ndarray) -> float:
    """Median of the last 3 AP peaks minus that of the first 3 (mV; negative: the APs shrink over the train); NaN
    below PEAK_DECLINE_MIN_APS APs."""
    p = np.asarray(peaks_mV, dtype=np.float64)
    if len(p) < PEAK_DECLINE_MIN_APS:
        return math.nan
    return float(np.median(p[-3:]) - np.median(p[:3]))


def last_spike_sd(count: float, latency_ms: float, last_fraction: float, duration_ms: float,
                  floor: float = 0.05, ceiling: float = 0.125) -> float:
    """Scale of the last-spike term (a fraction of the step) for a recorded sweep: half its mean interspike
    interval, (last - first AP) / (count - 1), over the step (the last AP of a regular train lies anywhere in its
    final interval before the step's end, so a model as regular as the cell may differ by up to about one ISI);
    floored at `floor` and capped at `ceiling` (`objective`'s docstring says why)."""
    dur = max(float(duration_ms), 1e-12)
    if count >= 2 and math.isfinite(latency_ms) and math.isfinite(last_fraction):
        isi = max(0.0, last_fraction * dur - latency_ms) / (count - 1)
    else:
        isi = dur / max(float(count), 1.0)
    return float(min(ceiling, max(floor, 0.5 * isi / dur)))
