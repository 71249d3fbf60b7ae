"""Current-clamp stimuli (Allen Cell Types conventions) rendered onto a time grid, plus OU current noise.

Every stimulus is a pydantic model with a `kind`; `render(stim, total_ms, dt_ms)` gives the waveform in pA.
A protocol (a list of stimuli, e.g. an F-I sweep of long squares) becomes the rows of a 2-D TimedArray, so a
whole shard of neurons x stimuli runs in ONE Brian2 group.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_WAVEFORM_SAMPLES = 2_000_000


class _Stim(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    start_ms: float = Field(100.0, ge=0.0, le=1e6, description="stimulus onset")

    def end_ms(self) -> float:
        return self.start_ms + getattr(self, "duration_ms", 0.0)


class Step(_Stim):
    """Square step ('long square' when 1 s): constant amplitude from start for a duration."""

    kind: Literal["step"] = "step"
    amplitude_pA: float = Field(..., ge=-5000.0, le=5000.0)
    duration_ms: float = Field(1000.0, gt=0.0, le=1e6)


class ShortSquare(Step):
    """Allen 'short square': a 3 ms pulse."""

    kind: Literal["short_square"] = "short_square"  # type: ignore[assignment]
    duration_ms: float = Field(3.0, gt=0.0, le=100.0)


class Ramp(_Stim):
    """Linear ramp from 0 at onset, rising at slope_pA_per_s, for a duration (Allen ramp: 25 pA/s)."""

    kind: Literal["ramp"] = "ramp"
    slope_pA_per_s: float = Field(25.0, ge=-1e5, le=1e5)
    duration_ms: float = Field(1000.0, gt=0.0, le=1e6)


class Noise(_Stim):
    """Frozen noise current: an offset plus an OU process of given sd and correlation time (own seed)."""

    kind: Literal["noise"] = "noise"
    mean_pA: float = Field(0.0, ge=-5000.0, le=5000.0)
    sd_pA: float = Field(50.0, ge=0.0, le=5000.0)
    tau_ms: float = Field(3.0, gt=0.0, le=1000.0)
    duration_ms: float = Field(1000.0, gt=0.0, le=1e6)
    seed: int = Field(0, ge=0, le=2**32 - 1)


class Chirp(_Stim):
    """Sinusoid whose frequency sweeps linearly from f0 to f1 (impedance profiling)."""

    kind: Literal["chirp"] = "chirp"
    amplitude_pA: float = Field(50.0, ge=0.0, le=5000.0)
    offset_pA: float = Field(0.0, ge=-5000.0, le=5000.0)
    f0_Hz: float = Field(0.5, ge=0.0, le=1000.0)
    f1_Hz: float = Field(40.0, ge=0.0, le=1000.0)
    duration_ms: float = Field(1000.0, gt=0.0, le=1e6)


class Waveform(_Stim):
    """Arbitrary sampled waveform (pA) at its own dt, linearly interpolated onto the simulation grid."""

    kind: Literal["waveform"] = "waveform"
    values_pA: list[float] = Field(..., min_length=1, max_length=MAX_WAVEFORM_SAMPLES)
    dt_ms: float = Field(..., gt=0.0, le=1000.0)
    start_ms: float = Field(0.0, ge=0.0, le=1e6)

    @field_validator("values_pA")
    @classmethod
    def _finite(cls, v: list[float]) -> list[float]:
        arr = np.asarray(v, dtype=float)
        if not np.all(np.isfinite(arr)) or np.any(np.abs(arr) > 1e5):
            raise ValueError("values_pA must be finite and within +-1e5 pA")
        return v

    def end_ms(self) -> float:
        return self.start_ms + len(self.values_pA) * self.dt_ms


Stimulus = Annotated[Union[Step, ShortSquare, Ramp, Noise, Chirp, Waveform], Field(discriminator="kind")]


class FISweep(BaseModel):
    """A family of long-square steps at several amplitudes (the F-I protocol): expands to Step stimuli."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["fi_sweep"] = "fi_sweep"
    amplitudes_pA: list[float] = Field(..., min_length=1, max_length=200)
    start_ms: float = Field(100.0, ge=0.0, le=1e6)
    duration_ms: float = Field(1000.0, gt=0.0, le=1e6)

    @field_validator("amplitudes_pA")
    @classmethod
    def _bounded(cls, v: list[float]) -> list[float]:
        for a in v:
            if not math.isfinite(a) or abs(a) > 5000:
                raise ValueError("each amplitude must be a finite number within +-5000 pA")
        return v

    def expand(self) -> list[Step]:
        return [Step(amplitude_pA=a, start_ms=self.start_ms, duration_ms=self.duration_ms) for a in self.amplitudes_pA]


def time_grid(total_ms: float, dt_ms: float) -> np.ndarray:
    n = int(round(total_ms / dt_ms))
    return np.arange(n) * dt_ms


def render(stim: _Stim, total_ms: float, dt_ms: float) -> np.ndarray:
    """The stimulus in pA on the grid t = 0, dt, ..., total - dt (float64)."""
    t = time_grid(total_ms, dt_ms)
    out = np.zeros_like(t)
    if isinstance(stim, Waveform):
        src_t = stim.start_ms + np.arange(len(stim.values_pA)) * stim.dt_ms
        inside = (t >= src_t[0]) & (t <= src_t[-1])
        out[inside] = np.interp(t[inside], src_t, np.asarray(stim.values_pA, dtype=float))
        return out
    # Half-open windows on the grid: [start, start + duration).
    on = (t >= stim.start_ms - 1e-9) & (t < stim.end_ms() - 1e-9)
    rel_s = (t[on] - stim.start_ms) / 1000.0
    if isinstance(stim, Step):
        out[on] = stim.amplitude_pA
    elif isinstance(stim, Ramp):
        out[on] = stim.slope_pA_per_s * rel_s
    elif isinstance(stim, Chirp):
        T = stim.duration_ms / 1000.0
        k = (stim.f1_Hz - stim.f0_Hz) / T
        out[on] = stim.offset_pA + stim.amplitude_pA * np.sin(2 * np.pi * (stim.f0_Hz * rel_s + 0.5 * k * rel_s**2))
    elif isinstance(stim, Noise):
        rng = np.random.default_rng(stim.seed)
        out[on] = stim.mean_pA + ou_noise(1, int(on.sum()), dt_ms, stim.tau_ms, stim.sd_pA, rng)[0]
    else:  # pragma: no cover - exhaustive over the union
        raise TypeError(f"unknown stimulus {stim!r}")
    return out


def ou_noise(n: int, T: int, dt_ms: float, tau_ms: float, sigma_pA: float, rng: np.random.Generator) -> np.ndarray:
    """n stationary Ornstein-Uhlenbeck current traces (pA), exact discretisation:
    x[k+1] = x[k] e^{-dt/tau} + sigma sqrt(1 - e^{-2 dt/tau}) N(0, 1), x[0] ~ N(0, sigma^2)."""
    out = np.empty((n, T), dtype=np.float64)
    if T == 0:
        return out
    if sigma_pA == 0:
        out.fill(0.0)
        return out
    decay = math.exp(-dt_ms / tau_ms)
    kick = sigma_pA * math.sqrt(1 - decay**2)
    z = rng.standard_normal((n, T))
    out[:, 0] = sigma_pA * z[:, 0]
    # Recursive filter along time; scipy's lfilter runs it in C.
    from scipy.signal import lfilter

    zi = (decay * out[:, 0])[:, None]
    out[:, 1:] = lfilter([kick], [1.0, -decay], z[:, 1:], axis=1, zi=zi)[0]
    return out


def stim_window_ms(stim: _Stim) -> tuple[float, float]:
    """(start, end) of the stimulus' active window, used by feature extraction."""
    return float(stim.start_ms), float(stim.end_ms())
