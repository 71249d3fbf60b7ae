"""Bio-realistic single-compartment conductance-based neuron (Pospischil et al. 2008).

Source: M. Pospischil, M. Toledo-Rodriguez, C. Monier, Z. Piwkowska, T. Bal, Y. Fregnac, H. Markram,
A. Destexhe (2008), "Minimal Hodgkin-Huxley type models for different classes of cortical and thalamic
neurons", Biol. Cybern. 99:427-441 (ModelDB 123623).

    C dV/dt = -g_leak (V - E_leak) - I_Na - I_Kd - I_M - I_T - I_L - I_D + I_inj

* I_Na = g_Na m^3 h (V - E_Na), I_Kd = g_Kd n^4 (V - E_K): Traub & Miles (1991) kinetics shifted by the
  threshold parameter V_T (alpha/beta below, V and V_T in mV, rates in 1/ms).
* I_M = g_M p (V - E_K): slow non-inactivating K+ (spike-frequency adaptation), p_inf = 1/(1+exp(-(V+35)/10)),
  tau_p = tau_max / (3.3 exp((V+35)/20) + exp(-(V+35)/20)).
* I_T = g_T s_inf^2 u (V - E_Ca) (low-threshold Ca2+, LTS cells; Destexhe et al. 1996 kinetics with shift V_x).
* I_L = g_L q^2 r (V - E_Ca) (high-threshold Ca2+, IB cells; Reuveni et al. 1993 kinetics).
* I_D = g_D a^3 b (V - E_K): the slowly inactivating d-type (Kv1) K+ current of Golomb et al. (2007),
  "Mechanisms of firing patterns in fast-spiking cortical interneurons", PLoS Comput Biol 3:e156:
  a_inf = 1/(1+exp(-(V+50)/20)), tau_a = 2 ms, b_inf = 1/(1+exp((V+70)/6)), tau_b = tau_D (150 ms there).
  Not in Pospischil's model (g_D = 0 in every preset, and then it is not integrated at all): it is what
  delays the first spike of many FS and pyramidal cells by 100s of ms above rheobase (the outward current
  inactivates slowly during the step), which the fit needs for real recordings.
* Simplification (stated): E_Ca is a fixed 120 mV instead of the Nernst potential of a Ca2+ pool.

Membrane: one cylinder with L = d (area pi d^2), specific capacitance 1 uF/cm^2; densities in mS/cm^2.
Presets: the fast-spiking (FS, PV interneuron) and regular-spiking (RS, adapting pyramidal) values are the
paper's Table 1 fits (g_Na 58/56, g_Kd 3.9/6, g_M 0.0787/0.075, g_leak 0.038/0.0205 mS/cm^2, E_leak
-70.4/-70.3 mV, V_T -57.9/-56.2 mV, tau_max 502/608 ms); intrinsically bursting (IB, I_L) and low-threshold
spiking (LTS, I_T) follow the paper's Figs. 7-8 parameter sets.

Cell-to-cell variability: `sample_params` draws log-normal conductances / time constants and normal
potentials around a preset; the acceptance window on features lives in the dataset config ('hall of fame').
Trial-to-trial variability: an Ornstein-Uhlenbeck current added to the stimulus (see `stimuli.ou_noise`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import brian2 as b2
import numpy as np

from .base import BuiltGroup, ModelFamily, ParamSpec, assign_params

_EQS = """
dv/dt = (I_leak - I_Na - I_Kd - I_M - I_T - I_L - I_D + I_inj) / Cm : volt
area = pi * diam_um**2 : metre**2
Cm = 1 * ufarad / cm**2 * area : farad
I_inj = I_stim(t, i) : amp
I_leak = g_leak * area * (E_leak - v) : amp
I_Na = g_Na * area * m**3 * h * (v - E_Na) : amp
I_Kd = g_Kd * area * n**4 * (v - E_K) : amp
I_M = g_M * area * p * (v - E_K) : amp
I_T = g_T * area * s_inf**2 * u * (v - E_Ca) : amp
I_L = g_L * area * q**2 * r * (v - E_Ca) : amp
I_D = g_D * area * a_D**3 * b_D * (v - E_K) : amp
vu = (v - V_T) / mV : 1
dm/dt = (alpha_m * (1 - m) - beta_m * m) : 1
dh/dt = (alpha_h * (1 - h) - beta_h * h) : 1
dn/dt = (alpha_n * (1 - n) - beta_n * n) : 1
alpha_m = 0.32 * (13 - vu) / (exp((13 - vu) / 4) - 1) / ms : Hz
beta_m = 0.28 * (vu - 40) / (exp((vu - 40) / 5) - 1) / ms : Hz
alpha_h = 0.128 * exp((17 - vu) / 18) / ms : Hz
beta_h = 4 / (1 + exp((40 - vu) / 5)) / ms : Hz
alpha_n = 0.032 * (15 - vu) / (exp((15 - vu) / 5) - 1) / ms : Hz
beta_n = 0.5 * exp((10 - vu) / 40) / ms : Hz
dp/dt = (p_inf - p) / tau_p : 1
p_inf = 1 / (1 + exp(-(v / mV + 35) / 10)) : 1
tau_p = tau_max / (3.3 * exp((v / mV + 35) / 20) + exp(-(v / mV + 35) / 20)) : second
vx = (v + V_x) / mV : 1
s_inf = 1 / (1 + exp(-(vx + 57) / 6.2)) : 1
du/dt = (u_inf - u) / tau_u : 1
u_inf = 1 / (1 + exp((vx + 81) / 4)) : 1
tau_u = (30.8 + (211.4 + exp((vx + 113.2) / 5)) / (1 + exp((vx + 84) / 3.2))) / 3.7 * ms : second
dq/dt = (alpha_q * (1 - q) - beta_q * q) : 1
dr/dt = (alpha_r * (1 - r) - beta_r * r) : 1
alpha_q = 0.055 * (-27 - v / mV) / (exp((-27 - v / mV) / 3.8) - 1) / ms : Hz
beta_q = 0.94 * exp((-75 - v / mV) / 17) / ms : Hz
alpha_r = 0.000457 * exp((-13 - v / mV) / 50) / ms : Hz
beta_r = 0.0065 / (exp((-15 - v / mV) / 28) + 1) / ms : Hz
da_D/dt = (a_D_inf - a_D) / (2 * ms) : 1
db_D/dt = (b_D_inf - b_D) / tau_D : 1
a_D_inf = 1 / (1 + exp(-(v / mV + 50) / 20)) : 1
b_D_inf = 1 / (1 + exp((v / mV + 70) / 6)) : 1
g_leak : siemens / metre**2 (constant)
E_leak : volt (constant)
g_Na : siemens / metre**2 (constant)
g_Kd : siemens / metre**2 (constant)
g_M : siemens / metre**2 (constant)
g_T : siemens / metre**2 (constant)
g_L : siemens / metre**2 (constant)
g_D : siemens / metre**2 (constant)
E_Na : volt (constant)
E_K : volt (constant)
E_Ca : volt (constant)
V_T : volt (constant)
V_x : volt (constant)
tau_max : second (constant)
tau_D : second (constant)
diam_um : metre (constant)
"""


def _gates_at_rest(v_mV: np.ndarray, V_T: np.ndarray, V_x: np.ndarray) -> dict[str, np.ndarray]:
    """Steady-state gating variables at a holding potential, so runs start at rest without a transient."""
    vu = v_mV - V_T
    with np.errstate(divide="ignore", invalid="ignore"):
        am = 0.32 * (13 - vu) / np.expm1((13 - vu) / 4)
        bm = 0.28 * (vu - 40) / np.expm1((vu - 40) / 5)
        ah = 0.128 * np.exp((17 - vu) / 18)
        bh = 4 / (1 + np.exp((40 - vu) / 5))
        an = 0.032 * (15 - vu) / np.expm1((15 - vu) / 5)
        bn = 0.5 * np.exp((10 - vu) / 40)
        aq = 0.055 * (-27 - v_mV) / np.expm1((-27 - v_mV) / 3.8)
        bq = 0.94 * np.exp((-75 - v_mV) / 17)
        ar = 0.000457 * np.exp((-13 - v_mV) / 50)
        br = 0.0065 / (np.exp((-15 - v_mV) / 28) + 1)
    return {
        "m": am / (am + bm),
        "h": ah / (ah + bh),
        "n": an / (an + bn),
        "p": 1 / (1 + np.exp(-(v_mV + 35) / 10)),
        "u": 1 / (1 + np.exp((v_mV + V_x + 81) / 4)),
        "q": aq / (aq + bq),
        "r": ar / (ar + br),
        "a_D": 1 / (1 + np.exp(-(v_mV + 50) / 20)),
        "b_D": 1 / (1 + np.exp((v_mV + 70) / 6)),
    }


class HH(ModelFamily):
    """Pospischil 2008 single-compartment HH neuron (Na, Kd, M, T, L currents; optional Golomb 2007 I_D)."""

    name: ClassVar[str] = "hh"
    description: ClassVar[str] = (
        "Bio-realistic single-compartment conductance-based neuron of Pospischil et al. 2008 "
        "(Na, Kd, M, T-type and L-type Ca2+ currents), with an optional slowly inactivating d-type K+ "
        "current (Golomb et al. 2007) for delayed firing."
    )
    # RK4 at dt 0.025 ms: spike times within 0.05 ms of NEURON run to convergence. exponential_euler at the
    # same dt made ISIs ~5% too long (10 ms drift over a 300 ms train; benchmarks/datagen.py measures it).
    method: ClassVar[str] = "rk4"
    default_preset: ClassVar[str] = "fast_spiking"
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec(name="g_leak", unit="mS/cm2", default=0.038, low=0.001, high=0.5, variability="lognormal",
                  description="leak conductance density"),
        ParamSpec(name="E_leak", unit="mV", default=-70.4, low=-100.0, high=-40.0, variability="normal",
                  description="leak reversal potential"),
        ParamSpec(name="g_Na", unit="mS/cm2", default=58.0, low=1.0, high=200.0, variability="lognormal",
                  description="fast Na+ conductance density"),
        ParamSpec(name="g_Kd", unit="mS/cm2", default=3.9, low=0.1, high=50.0, variability="lognormal",
                  description="delayed-rectifier K+ conductance density"),
        ParamSpec(name="g_M", unit="mS/cm2", default=0.0787, low=0.0, high=1.0, variability="lognormal",
                  description="slow (M-type) K+ conductance density: adaptation"),
        ParamSpec(name="g_T", unit="mS/cm2", default=0.0, low=0.0, high=2.0, variability="lognormal",
                  description="T-type (low-threshold) Ca2+ conductance density"),
        ParamSpec(name="g_L", unit="mS/cm2", default=0.0, low=0.0, high=1.0, variability="lognormal",
                  description="L-type (high-threshold) Ca2+ conductance density"),
        ParamSpec(name="E_Na", unit="mV", default=50.0, low=30.0, high=70.0, description="Na+ reversal"),
        ParamSpec(name="E_K", unit="mV", default=-90.0, low=-110.0, high=-70.0, description="K+ reversal"),
        ParamSpec(name="E_Ca", unit="mV", default=120.0, low=80.0, high=150.0, description="Ca2+ reversal (fixed)"),
        ParamSpec(name="V_T", unit="mV", default=-57.9, low=-75.0, high=-40.0, variability="normal",
                  description="spike-threshold shift of the Traub-Miles kinetics"),
        ParamSpec(name="V_x", unit="mV", default=2.0, low=-10.0, high=10.0, description="I_T voltage shift"),
        ParamSpec(name="tau_max", unit="ms", default=502.0, low=20.0, high=5000.0, variability="lognormal",
                  description="maximal time constant of I_M"),
        ParamSpec(name="g_D", unit="mS/cm2", default=0.0, low=0.0, high=5.0, variability="lognormal",
                  description="d-type (slowly inactivating, Kv1) K+ conductance density: delayed firing"),
        # Not varied: g_D is 0 in every preset (so tau_D means nothing there), and a draw here would shift the
        # random stream of the parameters after it, i.e. change every dataset made before I_D existed.
        ParamSpec(name="tau_D", unit="ms", default=150.0, low=10.0, high=3000.0,
                  description="inactivation time constant of I_D"),
        ParamSpec(name="diam_um", unit="um", default=67.0, low=10.0, high=200.0, variability="lognormal",
                  description="soma diameter = length of the cylinder"),
    )
    presets: ClassVar[dict[str, dict[str, float]]] = {
        "fast_spiking": {"g_leak": 0.038, "E_leak": -70.4, "g_Na": 58.0, "g_Kd": 3.9, "g_M": 0.0787,
                         "V_T": -57.9, "tau_max": 502.0, "diam_um": 67.0},
        "regular_spiking": {"g_leak": 0.0205, "E_leak": -70.3, "g_Na": 56.0, "g_Kd": 6.0, "g_M": 0.075,
                            "V_T": -56.2, "tau_max": 608.0, "diam_um": 61.4},
        "intrinsically_bursting": {"g_leak": 0.01, "E_leak": -70.0, "g_Na": 50.0, "g_Kd": 5.0, "g_M": 0.03,
                                   "g_L": 0.2, "V_T": -58.0, "tau_max": 608.0, "diam_um": 96.0},
        "low_threshold_spiking": {"g_leak": 0.019, "E_leak": -50.0, "g_Na": 50.0, "g_Kd": 4.0, "g_M": 0.028,
                                  "g_T": 0.4, "V_T": -50.0, "V_x": -7.0, "tau_max": 4000.0, "diam_um": 96.0},
    }

    @classmethod
    def equations(cls, with_T: bool = True, with_L: bool = True, with_D: bool = True) -> str:
        """The model's equations; a Ca2+ or d-type current whose conductance is zero in the whole group is
        dropped (its gates are not integrated), which halves the cost for FS/RS cells and changes nothing else."""
        drop: set[str] = set()
        if not with_D:
            drop |= {"I_D", "da_D/dt", "db_D/dt", "a_D_inf", "b_D_inf"}
        if not with_T:
            drop |= {"I_T", "vx", "s_inf", "du/dt", "u_inf", "tau_u"}
        if not with_L:
            drop |= {"I_L", "dq/dt", "dr/dt", "alpha_q", "beta_q", "alpha_r", "beta_r"}
        lines = []
        for line in _EQS.strip().splitlines():
            head = line.split("=")[0].strip()  # "I_T", "du/dt", ...
            if head in drop:
                if head in ("I_T", "I_L", "I_D"):
                    lines.append(f"{head} = 0*amp : amp")
                continue
            lines.append(line)
        return "\n".join(lines) + "\n"

    @classmethod
    def build(cls, n: int, params: np.ndarray, namespace: dict[str, Any], rng: np.random.Generator) -> BuiltGroup:
        cls.check_params(params)
        names = cls.param_names()
        with_T = bool(np.any(params[:, names.index("g_T")] > 0))
        with_L = bool(np.any(params[:, names.index("g_L")] > 0))
        with_D = bool(np.any(params[:, names.index("g_D")] > 0))
        group = b2.NeuronGroup(
            n, cls.equations(with_T, with_L, with_D), method=cls.method, threshold="v > -20*mV",
            refractory="v > -20*mV", namespace=namespace, name="neurons",
        )
        assign_params(group, cls, params)
        E_leak = params[:, names.index("E_leak")]
        gates = _gates_at_rest(E_leak, params[:, names.index("V_T")], params[:, names.index("V_x")])
        group.v = E_leak * b2.mV
        for key, val in gates.items():
            if key in group.variables:
                setattr(group, key, val)
        return BuiltGroup(group=group)


family = HH
