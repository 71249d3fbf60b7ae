"""Quantum-inspired leaky integrate-and-fire neuron (QI-LIF): the first spike after a step comes at a random
time drawn from a Gaussian wave packet in time; after it, plain LIF dynamics with reset continue.

Source: S. Johnson, V. Puram, J. Thomas, A. Konuparamban, A. Kannan (2025), "Stimulus-Voltage-Based
Prediction of Action Potential Onset Timing: Classical vs. Quantum-Inspired Approaches", arXiv:2510.03155.

What the paper gives (from its abstract and the equation summaries indexed with it; the full text, its
parameter tables and its synthetic data sets could NOT be retrieved, see "Assumed" below). Potentials are
measured from rest, V_inf = I R_m:

    classical LIF        t_LIF = -tau_m ln(1 - V_th / V_inf)
    stimulus-accelerated tau_eff = tau_m / (1 + alpha S)
                         t_SA  = -tau_eff ln(1 - V_th (1 + alpha S) / (I R_m))
    QI-LIF               onset density |psi(t)|^2 = G(t; t0, sigma), a normal density centred on t0 with
                         width sigma, t0 built on the stimulus-dependent tau_eff.

Implemented here (the onset law, for a depolarising step of amplitude I starting at t_on):

    I_rh   = (V_th - V_rest) / R                      classical rheobase
    S      = I / I_rh                                  [assumed: the paper's S, made dimensionless]
    mu(I)  = -tau_m / (1 + alpha S) * ln(1 - alpha - 1 / S)     (= t_SA above with that S)
    I_rh_eff = I_rh / (1 - alpha)                      no spike at or below it (mu -> inf there)
    sigma(I) = sigma0 * (I_rh_eff / I) ** k_sigma      [assumed: the paper's sigma(I) was not retrievable]
    first-spike latency ~ N(mu, sigma^2) truncated to latency > 0 (an onset cannot precede the stimulus;
    the standard choice for a waiting time), drawn once per neuron and trial with the simulation's numpy rng.

alpha = 0 is the classical limit: mu(I) = t_LIF(I) exactly, and sigma -> 0 (sigma0 = 0, or large drive with
k_sigma > 0) recovers the deterministic LIF first spike. All presets use alpha = 0, i.e. the fallback
"mu(I) = LIF latency, sigma decreasing with drive"; alpha is a free parameter (fit it to data, as
`benchmarks/qilif_paper.py` does). With alpha > 0 the latency is longer than the LIF's at every drive and
the rheobase rises to I_rh / (1 - alpha); this follows from the paper's SA formula as summarised, where the
factor (1 + alpha S) multiplies the threshold term too.

Assumed (not in what could be retrieved of the paper): S = I / I_rh; the form of sigma(I) and the values of
sigma0 and k_sigma; truncation at zero latency; the "hippocampal" and "sensory" presets, which are typical
literature magnitudes (CA1 pyramidal: tau_m ~20 ms, R_in ~100 MOhm, V_rest ~-65 mV, threshold ~-50 mV;
small DRG-type sensory neuron: tau_m ~10 ms, R_in ~300 MOhm, V_rest ~-60 mV, threshold ~-40 mV), not values
from the paper.

How the draw governs the Brian2 group: the family reads each neuron's row of the 2-D TimedArray `I_stim`
from the namespace and reduces it to an equivalent step (`step_summary`: onset = first sample at or above
half the row's positive maximum, offset = after the last such sample, amplitude = mean drive in between;
exact for square steps, approximate for noisy steps, a documented reduction for other waveforms). The
drawn absolute onset time `t_onset` is a per-neuron constant; the threshold is `t_onset` (first spike) and
`v >= V_th` (every later spike). The membrane integrates the real drive throughout, but the recorded trace
`v_rec` is capped at V_th until the first spike so it waits at threshold rather than running past it. An
onset drawn after the step has ended gives no spike (the packet describes onset during the step). Spike
times follow Brian2's convention: a spike is reported at the start of the time step containing it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import brian2 as b2
import numpy as np
from scipy import stats

from .base import BuiltGroup, ModelFamily, ParamSpec, assign_params

_NO_SPIKE_S = 1e9  # "never": a t_onset far past any simulation

_EQS = """
dv/dt = (-(v - V_rest) + R * I_stim(t, i)) / tau_m : volt (unless refractory)
da/dt = -a / tau_spike : 1
v_cap = v - int(not first_done) * clip(v - V_th, 0*mV, 1e6*mV) : volt
v_rec = v_cap + a * (V_peak - V_reset) : volt
first_done : boolean
t_onset : second (constant)
tau_m : second (constant)
R : ohm (constant)
V_rest : volt (constant)
V_th : volt (constant)
V_reset : volt (constant)
t_ref : second (constant)
V_peak : volt (constant)
tau_spike : second (constant)
alpha : 1 (constant)
sigma0 : second (constant)
k_sigma : 1 (constant)
"""

# First spike: the time step containing the drawn onset (t <= t_onset < t + dt); later spikes: LIF threshold.
_THRESHOLD = "(not first_done and t + dt > t_onset) or (first_done and v >= V_th)"
_RESET = "v = V_reset; a = 1; first_done = True"


@dataclass(frozen=True)
class StepSummary:
    """Each neuron's stimulus reduced to an equivalent step: onset, offset (inf = never ends), amplitude."""

    t_on_ms: np.ndarray
    t_off_ms: np.ndarray
    amp_pA: np.ndarray


def step_summary(stim_pA: np.ndarray, dt_ms: float) -> StepSummary:
    """Equivalent step of each row of `stim_pA` (n, T) sampled at dt_ms: the half-maximum plateau of the
    positive drive. Rows with no positive drive get amplitude 0 (they never reach rheobase)."""
    x = np.atleast_2d(np.asarray(stim_pA, dtype=np.float64))
    n, T = x.shape
    peak = np.maximum(x, 0.0).max(axis=1) if T else np.zeros(n)
    has = peak > 0
    above = x >= (0.5 * peak)[:, None]
    on = np.argmax(above, axis=1)
    last = T - 1 - np.argmax(above[:, ::-1], axis=1)
    csum = np.concatenate([np.zeros((n, 1)), np.cumsum(x, axis=1)], axis=1)
    rows = np.arange(n)
    amp = (csum[rows, last + 1] - csum[rows, on]) / np.maximum(last + 1 - on, 1)
    # A plateau that reaches the last sample lasts for ever: a TimedArray holds its last value.
    t_off = np.where(above[rows, T - 1] if T else False, np.inf, (last + 1) * dt_ms)
    return StepSummary(
        t_on_ms=np.where(has, on * dt_ms, np.inf),
        t_off_ms=np.where(has, t_off, np.inf),
        amp_pA=np.where(has, amp, 0.0),
    )


class QILIF(ModelFamily):
    """Quantum-inspired LIF of Johnson et al. 2025 (MODELS.md section 3): Gaussian-packet first-spike onset."""

    name: ClassVar[str] = "qilif"
    description: ClassVar[str] = (
        "Quantum-inspired LIF (Johnson et al. 2025): first-spike onset drawn from a Gaussian wave packet "
        "N(mu(I), sigma(I)) per trial, then LIF dynamics with reset."
    )
    method: ClassVar[str] = "exponential_euler"
    default_preset: ClassVar[str] = "default"
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec(name="tau_m", unit="ms", default=20.0, low=1.0, high=200.0, variability="lognormal",
                  description="membrane time constant"),
        ParamSpec(name="R", unit="Mohm", default=100.0, low=5.0, high=2000.0, variability="lognormal",
                  description="input resistance"),
        ParamSpec(name="V_rest", unit="mV", default=-70.0, low=-100.0, high=-40.0, variability="normal",
                  description="resting potential"),
        ParamSpec(name="V_th", unit="mV", default=-50.0, low=-80.0, high=-20.0, variability="normal",
                  description="spike threshold (sets the rheobase; later spikes cross it)"),
        ParamSpec(name="V_reset", unit="mV", default=-65.0, low=-100.0, high=-40.0, variability="normal",
                  description="reset potential"),
        ParamSpec(name="t_ref", unit="ms", default=2.0, low=0.0, high=50.0, description="refractory period"),
        ParamSpec(name="V_peak", unit="mV", default=30.0, low=-20.0, high=60.0, description="drawn AP peak"),
        ParamSpec(name="tau_spike", unit="ms", default=0.3, low=0.05, high=5.0,
                  description="decay of the drawn AP waveform"),
        ParamSpec(name="alpha", unit="1", default=0.0, low=0.0, high=0.95,
                  description="stimulus acceleration: tau_eff = tau_m / (1 + alpha I/I_rh); 0 = classical LIF"),
        ParamSpec(name="sigma0", unit="ms", default=2.0, low=0.0, high=50.0, variability="lognormal",
                  description="onset width at rheobase"),
        ParamSpec(name="k_sigma", unit="1", default=1.0, low=0.0, high=4.0,
                  description="sigma(I) = sigma0 (I_rh_eff / I)^k_sigma"),
    )
    presets: ClassVar[dict[str, dict[str, float]]] = {
        "default": {},
        # Assumed literature magnitudes, not the paper's (not retrievable): CA1 pyramidal cell.
        "hippocampal": {"tau_m": 20.0, "R": 100.0, "V_rest": -65.0, "V_th": -50.0, "V_reset": -60.0,
                        "t_ref": 2.0, "sigma0": 3.0, "k_sigma": 1.0},
        # Small DRG-type sensory neuron: high input resistance, depolarised threshold, faster membrane.
        "sensory": {"tau_m": 10.0, "R": 300.0, "V_rest": -60.0, "V_th": -40.0, "V_reset": -55.0,
                    "t_ref": 1.5, "sigma0": 1.5, "k_sigma": 1.5},
    }

    @classmethod
    def equations(cls) -> str:
        return _EQS

    # ---- the onset law ---------------------------------------------------------------------------------
    @classmethod
    def _columns(cls, params: Mapping[str, float] | np.ndarray) -> dict[str, np.ndarray]:
        """Parameter values by name, from a name->value mapping or rows/row of a params array."""
        if isinstance(params, Mapping):
            full = cls.preset_values(None)
            full.update({k: float(v) for k, v in params.items()})
            return {k: np.asarray(v, dtype=float) for k, v in full.items()}
        arr = np.asarray(params, dtype=float)
        if arr.shape[-1] != len(cls.params):
            raise ValueError(f"expected {len(cls.params)} parameters {cls.param_names()}, got {arr.shape[-1]}")
        return {name: arr[..., j] for j, name in enumerate(cls.param_names())}

    @classmethod
    def rheobase_pA(cls, params: Mapping[str, float] | np.ndarray) -> np.ndarray:
        """Smallest step amplitude that ever fires: I_rh / (1 - alpha), I_rh = (V_th - V_rest) / R."""
        p = cls._columns(params)
        return (p["V_th"] - p["V_rest"]) / (p["R"] * 1e-3) / (1.0 - p["alpha"])

    @classmethod
    def onset_distribution(cls, I_pA: np.ndarray | float,
                           params: Mapping[str, float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mu_ms, sigma_ms) of the Gaussian onset packet for a step of I_pA from rest (broadcasts with the
        params rows). At or below rheobase there is no spike: mu = inf and sigma = nan."""
        p = cls._columns(params)
        I = np.asarray(I_pA, dtype=float)
        I_rh = (p["V_th"] - p["V_rest"]) / (p["R"] * 1e-3)  # mV / Mohm = nA -> pA via 1e-3 Mohm
        alpha = p["alpha"]
        I_eff = I_rh / (1.0 - alpha)
        fires = I > I_eff
        with np.errstate(divide="ignore", invalid="ignore"):
            S = I / I_rh
            mu = -p["tau_m"] / (1.0 + alpha * S) * np.log(1.0 - alpha - 1.0 / S)
            sigma = p["sigma0"] * (I_eff / I) ** p["k_sigma"]
        return np.where(fires, mu, np.inf), np.where(fires, sigma, np.nan)

    @classmethod
    def onset_law(cls, I_pA: float, params: Mapping[str, float] | np.ndarray) -> Any:
        """The first-spike latency distribution (ms) for one suprathreshold step: a scipy frozen normal
        truncated to latency > 0 (use .cdf/.pdf/.rvs/.mean)."""
        mu, sigma = (float(x) for x in cls.onset_distribution(I_pA, params))
        if not np.isfinite(mu):
            raise ValueError(f"{I_pA} pA is at or below rheobase {float(cls.rheobase_pA(params)):.3g} pA")
        if sigma == 0:
            return stats.uniform(loc=mu, scale=0.0)  # a point mass at mu
        return stats.truncnorm(-mu / sigma, np.inf, loc=mu, scale=sigma)

    @classmethod
    def draw_latency_ms(cls, I_pA: np.ndarray, params: np.ndarray | Mapping[str, float],
                        rng: np.random.Generator) -> np.ndarray:
        """One first-spike latency per entry of I_pA (inf below rheobase), by inverse CDF of the truncated
        packet; consumes exactly len(I_pA) uniforms from rng, so runs are reproducible for a seed."""
        I = np.atleast_1d(np.asarray(I_pA, dtype=float))
        u = rng.random(I.shape)
        mu, sigma = cls.onset_distribution(I, params)
        mu, sigma = np.broadcast_to(mu, I.shape), np.broadcast_to(sigma, I.shape)
        out = np.full(I.shape, np.inf)
        fires = np.isfinite(mu)
        point = fires & (sigma == 0)
        out[point] = mu[point]
        wide = fires & (sigma > 0)
        if np.any(wide):
            m, s = mu[wide], sigma[wide]
            out[wide] = stats.truncnorm.ppf(u[wide], -m / s, np.inf, loc=m, scale=s)
        return out

    # ---- Brian2 ----------------------------------------------------------------------------------------
    @classmethod
    def build(cls, n: int, params: np.ndarray, namespace: dict[str, Any], rng: np.random.Generator) -> BuiltGroup:
        cls.check_params(params)
        params = np.atleast_2d(np.asarray(params, dtype=float))
        stim = namespace.get("I_stim")
        if not isinstance(stim, b2.TimedArray) or np.ndim(stim.values) != 2 or stim.values.shape[1] < n:
            raise ValueError("qilif needs a 2-D TimedArray I_stim(t, i) with a column per neuron in the namespace")
        if stim.dim != b2.amp.dim:
            raise ValueError("I_stim must be a current")
        dt_ms = float(stim.dt) * 1e3
        # Columns past n are padding added by simulate() (compiled-shape buckets).
        summary = step_summary(np.asarray(stim.values)[:, :n].T * 1e12, dt_ms)
        latency = cls.draw_latency_ms(summary.amp_pA, params, rng)
        onset = summary.t_on_ms + latency
        onset = np.where(np.isfinite(onset) & (onset < summary.t_off_ms), onset, _NO_SPIKE_S * 1e3)

        group = b2.NeuronGroup(
            n, cls.equations(), method=cls.method, threshold=_THRESHOLD, reset=_RESET,
            refractory="t_ref", namespace=namespace, name="neurons",
        )
        assign_params(group, cls, params)
        group.v = params[:, cls.param_names().index("V_rest")] * b2.mV
        group.t_onset = onset * b2.ms
        group.first_done = False
        return BuiltGroup(group=group, v_name="v_rec")


family = QILIF
