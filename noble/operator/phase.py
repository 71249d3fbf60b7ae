"""The F-I phase prior of the embedding: phi(t), the number of spikes a neuron's own F-I features predict
by time t, so the FNO only shapes one spike per turn of phi (embedding.fi_phase).

phi grows at r(I(t)) * g(s(t)): r is the steady F-I curve of the features ('linear' fi_slope (I - I_thr)+,
or 'quadratic' fi_lin x + fi_quad x^2 with x = (I - I_thr)+), s is the time since the drive last went
suprathreshold, and g is the population's onset warp: nothing for the first `delay` ms (the first spike's
latency), then gain (1 + A exp(-(s - delay)/tau)): fast-spiking cells fire their first ISIs faster and
relax to the steady rate (spike-frequency adaptation). A, tau and delay are fitted once on the training
models' spike times (`fit_phase_warp`); gain makes phi at the end of the trained step equal r x duration, so
the features' rate (spikes / step duration) and phi count the same spikes. With `first_spike_latency`
[a, b] the constant delay is replaced by the first-spike latency L = a r^-b: phi ramps from 0 to the spike
phase over L (the first spike) and then turns at r gain (1 + A exp(-(s - L)/tau)); a, b from the training
steps' first spikes, A, tau, gain from the later ones. Measured on data/hh_fs held-out steps: the linear prior
gets the spike count within +-1 for 34 % of steps, the quadratic one with the warp 99 %, with the latency law
100 % and a first-spike latency median error of 1.2 ms.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

RATE_FEATURES: dict[str, tuple[str, ...]] = {
    "linear": ("I_thr_pA", "fi_slope_Hz_per_pA"),
    "quadratic": ("I_thr_pA", "fi_lin_Hz_per_pA", "fi_quad_Hz_per_pA2"),
}


def rate_Hz(features: torch.Tensor, names: Sequence[str], stim_pA: torch.Tensor, kind: str) -> torch.Tensor:
    """(B, F) features, (B, T) stimulus -> (B, T) steady firing rate the F-I curve predicts (>= 0)."""
    col = {n: features[:, list(names).index(n), None] for n in RATE_FEATURES[kind]}
    x = torch.relu(stim_pA - col["I_thr_pA"])
    if kind == "linear":
        return col["fi_slope_Hz_per_pA"] * x
    return torch.relu(col["fi_lin_Hz_per_pA"] * x + col["fi_quad_Hz_per_pA2"] * x * x)


def drive_clock_ms(on: torch.Tensor, dt_ms: float) -> torch.Tensor:
    """(B, T) bool 'drive suprathreshold' -> time since it last turned on (ms; 0 where it is off)."""
    T = on.shape[-1]
    idx = torch.arange(T, device=on.device, dtype=torch.int32).expand_as(on)  # int32: cummax 1.7x int64's speed
    last_off = torch.cummax(torch.where(on, torch.full_like(idx, -1), idx), dim=-1).values
    return torch.where(on, (idx - last_off).to(torch.float32) * dt_ms, torch.zeros((), device=on.device))


def warp_factor(clock_ms: torch.Tensor, warp: Sequence[float] | None) -> torch.Tensor:
    """g(s) of the module docstring; 1 everywhere when there is no warp."""
    if warp is None:
        return torch.ones_like(clock_ms)
    A, tau, delay, gain = (float(w) for w in warp)
    past = clock_ms - delay
    return torch.where(past > 0, gain * (1.0 + A * torch.exp(-past.clamp_min(0) / tau)), torch.zeros_like(past))


def first_spike_latency_ms(rate: torch.Tensor, latency: Sequence[float]) -> torch.Tensor:
    """L = a (r / 1 Hz)^(-b): the first-spike latency of a step whose steady rate is r (power law fitted on
    the training population; 1.2 ms median error on held-out hh_fs steps)."""
    a, b = (float(v) for v in latency)
    return a * rate.clamp_min(1e-3) ** (-b)


def phase_rate_Hz(features: torch.Tensor, names: Sequence[str], stim_pA: torch.Tensor, kind: str,
                  warp: Sequence[float] | None, dt_ms: float, latency: Sequence[float] | None = None,
                  spike_phase: float = 0.5) -> torch.Tensor:
    """(B, T) d phi / dt in Hz: the F-I rate times the onset warp. With `latency`, phi first ramps from 0 to
    spike_phase over the first-spike latency L(r) (so the first spike, at phi = spike_phase, comes at L) and
    the warp's delay is L instead of a constant."""
    r = rate_Hz(features, names, stim_pA, kind)
    if warp is None:
        return r
    on = stim_pA > features[:, list(names).index("I_thr_pA"), None]
    clock = drive_clock_ms(on, dt_ms)
    if latency is None:
        return r * warp_factor(clock, warp)
    A, tau, _delay, gain = (float(w) for w in warp)
    return latency_phase_rate_Hz(on, clock, first_spike_latency_ms(r, latency), r, A, tau, gain, spike_phase)


def latency_phase_rate_Hz(on: torch.Tensor, clock_ms: torch.Tensor, L_ms: torch.Tensor, rate: torch.Tensor,
                          A: torch.Tensor | float, tau_ms: torch.Tensor | float, gain: float,
                          spike_phase: float) -> torch.Tensor:
    """(B, T) d phi / dt in Hz: a ramp from 0 to spike_phase over the latency L, then the warped steady rate
    gain r (1 + A exp(-(s - L) / tau)). Shared by the population prior and the learned per-neuron one."""
    past = clock_ms - L_ms
    steady = rate * gain * (1.0 + A * torch.exp(-past.clamp_min(0) / tau_ms))
    return torch.where(on, torch.where(past <= 0, spike_phase * 1000.0 / L_ms, steady), 0.0)


CLOCK_TAUS_MS = (1.0, 8.0)


def spike_clock(phi: torch.Tensor, rate_Hz: torch.Tensor, offset: float) -> torch.Tensor:
    """(B, T) phase and its rate -> (B, 2 * len(CLOCK_TAUS_MS), T): exp(-t_since/tau) then exp(-t_until/tau),
    t_since/t_until = time since the last / until the next crossing of phi = k + offset, estimated as the
    phase distance over the current rate (so it stays differentiable in the features, as the fit needs).
    Before the first crossing there is no 'last' spike (t_since = inf); with no drive both are inf."""
    x = phi - offset
    frac = x - torch.floor(x)
    per_ms = (rate_Hz / 1000.0).clamp_min(1e-6)
    inf = torch.full_like(phi, float("inf"))
    moving = rate_Hz > 1e-6
    since = torch.where(moving & (x >= 0), frac / per_ms, inf)
    until = torch.where(moving, (1.0 - frac) / per_ms, inf)
    chans = [torch.exp(-since / tau) for tau in CLOCK_TAUS_MS] + [torch.exp(-until / tau) for tau in CLOCK_TAUS_MS]
    return torch.stack(chans, dim=1)


# ---- fitting the warp on the training population (numpy; steps only) ----

def warped_elapsed(past_ms, A, tau_ms):  # type: ignore[no-untyped-def]  # numpy arrays or torch tensors alike
    """Integral of (1 + A exp(-u / tau)) du from 0 to past_ms (>= 0): the warped time since the warp began."""
    exp = torch.exp if isinstance(past_ms, torch.Tensor) else np.exp
    return past_ms + A * tau_ms * (1.0 - exp(-past_ms / tau_ms))


def _warped_time(s_ms: np.ndarray, A: float, tau: float, delay: float) -> np.ndarray:
    """Integral of (1 + A exp(-(s - delay)/tau)) over the time past the delay."""
    return warped_elapsed(np.maximum(s_ms - delay, 0.0), A, tau)


def step_phase(rate: float, s_ms: np.ndarray, warp: Sequence[float]) -> np.ndarray:
    """phi at times s_ms after the onset of a suprathreshold step with steady rate `rate` (Hz)."""
    A, tau, delay, gain = warp
    return rate / 1000.0 * gain * _warped_time(np.asarray(s_ms, dtype=float), A, tau, delay)


def spike_times_ms(v_mV: np.ndarray, dt_ms: float, start_ms: float, end_ms: float,
                   threshold_mV: float = -20.0) -> np.ndarray:
    """Upward threshold crossings inside [start, end) (ms from the trace's start)."""
    k = np.flatnonzero((v_mV[:-1] < threshold_mV) & (v_mV[1:] >= threshold_mV)) + 1
    t = k * dt_ms
    return t[(t >= start_ms) & (t < end_ms)]


def fit_phase_warp(trains: Sequence[tuple[float, np.ndarray]], duration_ms: float) -> tuple[list[float], float]:
    """([A, tau_ms, delay_ms, gain], c) by least squares on spike phases: each (steady rate Hz, spike times
    from step onset in ms) of a suprathreshold step should put spike k at phi = k + c (c one free phase)."""
    from scipy.optimize import least_squares

    trains = [(float(r), np.asarray(s, dtype=float)) for r, s in trains if r > 0 and len(s)]
    if not trains:
        raise ValueError("fit_phase_warp: no suprathreshold step with spikes in the training models")

    def resid(q: np.ndarray) -> np.ndarray:
        A, tau, delay, c = q
        gain = duration_ms / _warped_time(np.array(duration_ms), A, tau, delay)
        return np.concatenate([step_phase(r, s, (A, tau, delay, gain)) - np.arange(len(s)) - c for r, s in trains])

    q = least_squares(resid, [1.0, 30.0, 10.0, 0.0], bounds=([0.0, 1.0, 0.0, -1.0], [10.0, 300.0, 50.0, 1.0])).x
    A, tau, delay = float(q[0]), float(q[1]), float(q[2])
    gain = float(duration_ms / _warped_time(np.array(duration_ms), A, tau, delay))
    if not all(math.isfinite(v) for v in (A, tau, delay, gain)):
        raise ValueError("fit_phase_warp: the fit did not converge")
    return [A, tau, delay, gain], float(q[3])


def fit_first_spike_latency(trains: Sequence[tuple[float, np.ndarray]]) -> list[float]:
    """[a_ms, b] of L = a r^(-b) by least squares on log latency over the steps that spike."""
    pts = [(float(r), float(s[0])) for r, s in trains if r > 0 and len(s) and s[0] > 0]
    if len(pts) < 2:
        raise ValueError("fit_first_spike_latency: need at least two suprathreshold steps with spikes")
    r, lat = np.array(pts).T
    slope, icpt = np.polyfit(np.log(r), np.log(lat), 1)
    return [float(np.exp(icpt)), float(-slope)]


def fit_phase_warp_after_first_spike(trains: Sequence[tuple[float, np.ndarray]],
                                     latency: Sequence[float]) -> list[float]:
    """[A, tau_ms, 0, gain] by least squares: with the first spike at L(r), spike k >= 1 of each step sits
    where r gain (s' + A tau (1 - exp(-s'/tau))) reaches k turns, s' = time past L."""
    from scipy.optimize import least_squares

    a, b = latency
    trains = [(float(r), np.asarray(s, dtype=float)) for r, s in trains if r > 0 and len(s) > 1]
    if not trains:
        raise ValueError("fit_phase_warp: no suprathreshold step with two spikes in the training models")

    def resid(q: np.ndarray) -> np.ndarray:
        A, tau, gain = q
        out = []
        for r, s in trains:
            out.append(r / 1000.0 * gain * _warped_time(s[1:], A, tau, a * r ** (-b)) - np.arange(1, len(s)))
        return np.concatenate(out)

    A, tau, gain = (float(v) for v in least_squares(resid, [1.0, 30.0, 1.0],
                                                     bounds=([0.0, 1.0, 0.2], [10.0, 300.0, 5.0])).x)
    return [A, tau, 0.0, gain]
