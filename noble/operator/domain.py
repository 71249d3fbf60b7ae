"""The stimulus domain a surrogate was trained on, and the check the service and the CLI make against it.

A checkpoint's `stimulus.amplitudes_pA` are the long-square amplitudes of its training data. The FNO does
not extrapolate past them (nor reliably interpolate across gaps, see noble/assets/hh_fs/README.md), so a
step amplitude outside [min, max] of those amplitudes, or a waveform with a value outside the range the
training stimuli took (the amplitudes and their 0 pA baseline), is refused unless the caller opts in.
Pure numpy on the config: no torch. The fit's surrogate stage drives `Surrogate.predict` directly and is
not affected; the guard sits at the service / CLI boundary.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np


class OutsideTrainedDomain(ValueError):
    """A stimulus outside the surrogate's trained amplitudes: `field` names it ('stimulus.amplitude_pA' or
    'stimulus.values_pA'), `range_pA` is the allowed [low, high]."""

    def __init__(self, field: str, message: str, range_pA: tuple[float, float]) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
        self.range_pA = range_pA


def trained_amplitudes(config: Any) -> list[float]:
    """The checkpoint's trained step amplitudes (pA), sorted and without duplicates; [] when unrecorded."""
    stim = getattr(config, "stimulus", None)
    amps = getattr(stim, "amplitudes_pA", None) or []
    return sorted({float(a) for a in amps})


def amplitude_range(config: Any) -> tuple[float, float] | None:
    """[low, high] of the trained step amplitudes, or None when the checkpoint records none."""
    amps = trained_amplitudes(config)
    return (amps[0], amps[-1]) if amps else None


def _tol(lo: float, hi: float) -> float:
    return 1e-9 * max(1.0, abs(lo), abs(hi))


def check_stimulus_domain(config: Any, stimulus: float | Sequence[float] | np.ndarray, *,
                          extrapolate: bool = False) -> list[str]:
    """Check a step amplitude (a scalar, pA) or a waveform (values in pA) against the trained amplitudes.

    Inside: returns []. Outside: raises OutsideTrainedDomain naming the field and the trained range (the
    caller adds how to opt in), or, with `extrapolate=True`, returns one warning saying so. A checkpoint without recorded amplitudes has no
    known domain and passes. Waveform values are checked against the range of the training stimuli's
    values, i.e. the amplitudes' range widened to include the 0 pA baseline every training step starts from.
    """
    rng = amplitude_range(config)
    if rng is None:
        return []
    lo, hi = rng
    if np.ndim(stimulus) == 0:
        amp = float(stimulus)  # type: ignore[arg-type]
        if lo - _tol(lo, hi) <= amp <= hi + _tol(lo, hi):
            return []
        field = "stimulus.amplitude_pA"
        msg = (f"{amp:g} pA is outside the surrogate's trained step amplitudes [{lo:g}, {hi:g}] pA "
               f"(trained on {', '.join(f'{a:g}' for a in trained_amplitudes(config))} pA)")
        allowed = (lo, hi)
    else:
        wave = np.asarray(stimulus, dtype=np.float64).ravel()
        wlo, whi = min(lo, 0.0), max(hi, 0.0)
        tol = _tol(wlo, whi)
        bad = np.flatnonzero(~((wave >= wlo - tol) & (wave <= whi + tol)))  # NaN counts as outside
        if not len(bad):
            return []
        k = int(bad[0])
        field = "stimulus.values_pA"
        msg = (f"{len(bad)} of {len(wave)} values are outside the surrogate's trained stimulus range "
               f"[{wlo:g}, {whi:g}] pA (its trained step amplitudes and the 0 pA baseline); the first is "
               f"values_pA[{k}] = {wave[k]:g} pA")
        allowed = (wlo, whi)
    if not extrapolate:
        raise OutsideTrainedDomain(field, msg, allowed)
    return [f"{field}: {msg}; extrapolated: the traces are outside the trained domain and may be wrong"]
