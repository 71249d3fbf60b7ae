"""Leaky integrate-and-fire neuron with refractoriness and a stereotyped spike waveform in the trace.

    tau_m dV/dt = -(V - V_rest) + R I(t);   V >= V_th -> spike, V <- V_reset, refractory t_ref.

For a step I from rest the first spike comes after t = tau_m ln(R I / (R I - (V_th - V_rest))) when
R I > V_th - V_rest (rheobase I_rh = (V_th - V_rest) / R; `analytic_latency_ms`). After a spike v is held at
V_reset for t_ref and then relaxes toward V_rest + R I, so every later interval is t_ref plus the time from
V_reset (not V_rest) up to V_th, and the steady rate under a constant I above rheobase is

    1000 / (t_ref + tau_m ln((R I + V_rest - V_reset) / (R I + V_rest - V_th))) Hz     (`analytic_rate_Hz`)

(times in ms; R I in mV for I in pA and R in Mohm: R I = 1e-3 I R). The first-spike formula is its V_reset = V_rest,
t_ref = 0 case (every preset has V_reset != V_rest). Integration is exponential Euler, exact for this linear
ODE with a piecewise-constant input, so simulated latencies are exact up to the one-step detection (the
threshold v >= V_th is checked once per time step).

The recorded trace `v_rec = v + a (V_peak - V_reset)` adds a stereotyped action potential: `a` jumps to 1 at
each spike and decays with tau_spike, so traces look like recordings without touching the LIF dynamics.
"""

from __future__ import annotations

from typing import Any, ClassVar

import brian2 as b2
import numpy as np

from .base import BuiltGroup, ModelFamily, ParamSpec, assign_params

_EQS = """
dv/dt = (-(v - V_rest) + R * I_stim(t, i)) / tau_m : volt (unless refractory)
da/dt = -a / tau_spike : 1
v_rec = v + a * (V_peak - V_reset) : volt
tau_m : second (constant)
R : ohm (constant)
V_rest : volt (constant)
V_th : volt (constant)
V_reset : volt (constant)
t_ref : second (constant)
V_peak : volt (constant)
tau_spike : second (constant)
"""


class LIF(ModelFamily):
    """Leaky integrate-and-fire neuron (MODELS.md section 2)."""

    name: ClassVar[str] = "lif"
    description: ClassVar[str] = "Leaky integrate-and-fire neuron with refractoriness and a stereotyped spike waveform."
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
                  description="spike threshold"),
        ParamSpec(name="V_reset", unit="mV", default=-65.0, low=-100.0, high=-40.0, variability="normal",
                  description="reset potential"),
        ParamSpec(name="t_ref", unit="ms", default=2.0, low=0.0, high=50.0, description="refractory period"),
        ParamSpec(name="V_peak", unit="mV", default=30.0, low=-20.0, high=60.0, description="drawn AP peak"),
        ParamSpec(name="tau_spike", unit="ms", default=0.3, low=0.05, high=5.0,
                  description="decay of the drawn AP waveform"),
    )
    presets: ClassVar[dict[str, dict[str, float]]] = {
        "default": {},
        "fast_spiking": {"tau_m": 8.0, "R": 120.0, "V_rest": -68.0, "V_th": -48.0, "V_reset": -60.0, "t_ref": 1.0},
        "regular_spiking": {"tau_m": 25.0, "R": 150.0, "V_rest": -70.0, "V_th": -50.0, "V_reset": -68.0, "t_ref": 3.0},
    }

    @classmethod
    def equations(cls) -> str:
        return _EQS

    @classmethod
    def build(cls, n: int, params: np.ndarray, namespace: dict[str, Any], rng: np.random.Generator) -> BuiltGroup:
        cls.check_params(params)
        group = b2.NeuronGroup(
            n, cls.equations(), method=cls.method, threshold="v >= V_th", reset="v = V_reset; a = 1",
            refractory="t_ref", namespace=namespace, name="neurons",
        )
        assign_params(group, cls, params)
        group.v = params[:, cls.param_names().index("V_rest")] * b2.mV
        return BuiltGroup(group=group, v_name="v_rec")

    # Analytic references (used by tests and the QI-LIF's classical limit).
    @staticmethod
    def analytic_latency_ms(I_pA: np.ndarray | float, tau_m_ms: float, R_Mohm: float, V_rest_mV: float,
                            V_th_mV: float) -> np.ndarray:
        """First-spike latency after a step from rest; +inf at or below rheobase."""
        RI = np.asarray(I_pA, dtype=float) * R_Mohm * 1e-3  # pA * Mohm = 1e-6 V = 1e-3 mV
        gap = V_th_mV - V_rest_mV
        with np.errstate(divide="ignore", invalid="ignore"):
            out = tau_m_ms * np.log(RI / (RI - gap))
        return np.where(RI > gap, out, np.inf)

    @staticmethod
    def analytic_rate_Hz(I_pA: np.ndarray | float, tau_m_ms: float, R_Mohm: float, V_rest_mV: float,
                         V_th_mV: float, V_reset_mV: float, t_ref_ms: float) -> np.ndarray:
        """Steady firing rate for a constant current (reset to V_reset, refractory t_ref)."""
        RI = np.asarray(I_pA, dtype=float) * R_Mohm * 1e-3
        drive = V_rest_mV + RI  # asymptotic voltage
        with np.errstate(divide="ignore", invalid="ignore"):
            isi = t_ref_ms + tau_m_ms * np.log((drive - V_reset_mV) / (drive - V_th_mV))
        return np.where(drive > V_th_mV, 1000.0 / isi, 0.0)


family = LIF
