"""What a fit refuses or sets aside before it starts, each with the sweep and the reason.

The readers (`noble.io`) accept any current-clamp sweep with a step; a fit needs more of each sweep:

* one sampling rate: the objective measures every sweep and every candidate on one grid, and a sweep at another
  rate is usually from another protocol or cell. Refused, naming the sweeps at each rate (fit them apart with
  `--sweeps`).
* a test step long enough to reach a steady state and hold a spike train (`MIN_STEP_MS`): a 2 ms pulse or a ramp
  read as a step has no window whose features the fit compares. Such sweeps are set aside with a note; with none
  left the recording is refused.
* a resting baseline before the command first leaves holding (`MIN_BASELINE_MS`): the fit pins the model's rest
  to it. Sweeps without one are set aside; with none left, refused.
* voltage inside the amplifier's range: a trace whose APs or hyperpolarisation are cut flat at the digitiser's
  rail (a run of >= `CLIP_MIN_SAMPLES` samples, >= `CLIP_MIN_MS`, at exactly the sweep's maximum or minimum,
  entered or left by a jump >= `CLIP_EDGE_MV`) has wrong peaks, troughs and deflections. Set aside with a note; with none left, refused.
"""

from __future__ import annotations

import numpy as np

from noble.io import Recording, RecordingError, Sweep

MIN_STEP_MS = 20.0
MIN_BASELINE_MS = 5.0
CLIP_MIN_SAMPLES = 4
CLIP_MIN_MS = 0.3
CLIP_EDGE_MV = 1.0  # the jump into or out of a clipped run (an AP rises 10+ mV per sample at 10-20 kHz)


def _longest_steep_run_at(v: np.ndarray, value: float) -> int:
    """Length of the longest run of samples exactly equal to value that is entered or left by a jump of >=
    CLIP_EDGE_MV: a signal cut at a rail arrives there fast, while a noise-free trace settling onto a steady state
    (a simulated rest or hyperpolarisation, in float32) creeps into its flat run."""
    at = np.r_[False, v == value, False]
    edges = np.flatnonzero(np.diff(at.astype(np.int8)))
    best = 0
    for a, b in zip(edges[::2], edges[1::2]):  # v[a:b] == value
        jumps = [abs(float(v[a] - v[a - 1])) if a > 0 else 0.0, abs(float(v[b] - v[b - 1])) if b < len(v) else 0.0]
        if max(jumps) >= CLIP_EDGE_MV:
            best = max(best, int(b - a))
    return best


def clipped(sweep: Sweep) -> str | None:
    """Why the sweep's voltage looks cut at a rail (a flat run at its maximum or minimum, entered or left
    steeply), None if it does not."""
    assert sweep.dt_ms is not None
    v = sweep.v_mV
    need = max(CLIP_MIN_SAMPLES, int(np.ceil(CLIP_MIN_MS / sweep.dt_ms)))
    for what, value in (("maximum", float(np.max(v))), ("minimum", float(np.min(v)))):
        run = _longest_steep_run_at(v, value)
        if run >= need:
            return (f"voltage clipped: {run} consecutive samples ({run * sweep.dt_ms:.2g} ms) flat at its {what}, "
                    f"{value:.4g} mV (the amplifier's or digitiser's range?)")
    return None


def screen_for_fit(rec: Recording) -> tuple[Recording, list[str]]:
    """(the sweeps a fit can use, notes naming each sweep set aside and why); RecordingError when nothing is left
    or the sampling rates differ (module docstring)."""
    rates: dict[float, list[int]] = {}
    for s in rec.sweeps:
        rates.setdefault(round(s.sampling_rate_Hz, 3), []).append(s.index)
    if len(rates) > 1:
        parts = "; ".join(f"sweeps {', '.join(map(str, idx))} at {rate / 1000:g} kHz"
                          for rate, idx in sorted(rates.items()))
        raise RecordingError(f"{rec.source}: mixed sampling rates ({parts}): a fit measures every sweep on one grid; "
                             "fit each rate's sweeps apart (--sweeps / the 'sweeps' option)")
    keep: list[Sweep] = []
    notes: list[str] = []
    for s in rec.sweeps:
        why = None
        if s.stim_duration_ms < MIN_STEP_MS:
            why = (f"its test step lasts {s.stim_duration_ms:.3g} ms, shorter than the {MIN_STEP_MS:g} ms a fit needs "
                   "for a steady state and a spike train (no constant window long enough)")
        elif s.rest_end_ms < MIN_BASELINE_MS:
            why = (f"the command leaves holding {s.rest_end_ms:.3g} ms into the sweep: no resting baseline "
                   f"(>= {MIN_BASELINE_MS:g} ms) before it")
        else:
            why = clipped(s)
        if why is None:
            keep.append(s)
        else:
            notes.append(f"sweep {s.index} ({s.stim_amplitude_pA:+g} pA) set aside: {why}")
    if not keep:
        raise RecordingError(f"{rec.source}: no sweep can be fitted: " + "; ".join(notes))
    if len(keep) == len(rec.sweeps):
        return rec, notes
    if all(s.stim_amplitude_pA == 0.0 for s in keep):
        raise RecordingError(f"{rec.source}: no sweep with a stimulus step is left to fit: " + "; ".join(notes))
    return Recording(keep, rec.source, rec.format, rec.cell, dict(rec.metadata)), notes
