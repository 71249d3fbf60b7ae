"""Bio-realistic single-compartment conductance-based neuron (Pospischil et al. 2008).

Source: M. Pospischil, M. Toledo-Rodriguez, C. Monier, Z. Piwkowska, T. Bal, Y. Fregnac, H. Markram,
A. Destexhe (2008), "Minimal Hodgkin-Huxley type models for different classes of cortical and thalamic
neurons", Biol. Cybern. 99:427-441 (ModelDB 123623).

    C dV/dt = -g_leak (V - E_leak) - I_Na - I_Kd - I_M - I_T - I_L - I_D - I_h - I_Kir - I_NaP - I_AHP + I_inj

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
* I_h = g_h w (V - E_h): the hyperpolarisation-activated cation current (HCN) of Kole, Hallermann & Stuart
  (2006), J. Neurosci. 26:1677, as in Hay et al. (2011) ModelDB 139653 (Ih.mod), the same kinetics as `hh_mc`'s:
  alpha_w = 0.00643 (V+154.9) / (exp((V+154.9)/11.9) - 1), beta_w = 0.193 exp(V/33.1) (1/ms), E_h = -45 mV.
  Not in Pospischil's model either (g_h = 0 in every preset, then not integrated): the sag and rebound of
  pyramidal cells' hyperpolarising responses (w_inf 0.03 at -75 mV, 0.27 at -100 mV; tau_w 49 / 77 ms), which a
  fit needs where a recording shows them.
* I_Kir = g_Kir m_inf (V - E_K), m_inf = 1 / (1 + exp((V - V_Kir) / 10 mV)), instantaneous: the inward-rectifier
  K+ current (Kir2) of Mahon, Deniau & Charpier (2000) (striatal neuron model; ModelDB 150621, Kirm.mod: V_Kir
  -100 mV, slope 10 mV, E_K -90 mV). Not Pospischil's (g_Kir = 0 in every preset, then not integrated): a cell
  with it conducts more the further it is hyperpolarised, without a sag (the current has no kinetics), so its
  steady-state deflections grow less than linearly with the injected current (striatal fast-spiking
  interneurons and spiny neurons: a few mV per 25 pA near -95 mV where it is 10 near -75 mV).
* I_NaP = g_NaP m_inf (V - E_Na), m_inf = 1 / (1 + exp(-(V - V_NaP) / 6.8 mV)), instantaneous: the persistent
  Na+ current of cortical principal cells, with the activation Magistretti & Alonso (1999), J. Gen. Physiol.
  114:491 measured in entorhinal layer-II neurons (V_1/2 -52.3 mV, slope 6.8 mV; activation within ~1 ms, so
  taken as instantaneous). Its slow inactivation (seconds) is left out (stated simplification). Not Pospischil's
  (g_NaP = 0 in every preset, then not integrated): an inward current that turns on just below threshold, so a
  cell with it depolarises more near threshold than below rest, and sits well above E_K between spikes (the
  interspike troughs of -40..-50 mV that pyramidal recordings show, where the presets' fall to -65 mV).
* I_AHP = g_AHP z (V - E_K), dz/dt = (c - z) / 50 ms, dc/dt = alpha_c(V) (1 - c) - c / tau_AHP, alpha_c = 0.2 / ms
  / (1 + exp(-(V + 10) / 2 mV)): the slow afterhyperpolarisation current of cortical principal cells, a
  Ca2+-activated K+ current, in the structure of Wang (1998), J. Neurophysiol. 79:1549 (each spike raises
  [Ca2+]_i by a fixed amount, which decays with tau_Ca; the K+ conductance follows [Ca2+]_i). Stated
  simplification: no Ca2+ current: c, the pool's occupancy, rises only while the membrane is above ~-10 mV
  (during an AP: ~0.1 per AP of ~0.5 ms there, saturating at 1) and decays with tau_AHP; the conductance follows
  it with a 50 ms lag (AHP_RISE_MS: the slow AHP rises over 100s of ms, Sah & Faber 2002, so it does not end the
  burst that raises it). Its steady state is < 1e-6 below -50 mV (6e-5 at -40 mV, tau_AHP 1 s), so it leaves
  the rest and the subthreshold I-V alone and acts after spikes: it holds a cell
  that has fired a burst below where a weaker step that did not fire leaves it (File_axon_5 at +200..+300 pA sits
  at -60 mV after 2-3 APs, at -57 mV at +150 pA without one): at steady state a cell of voltage-gated currents
  sits higher at the larger current, and the family's slow I_M did not get there anywhere on a grid over its
  range (docs/fit.md). Not Pospischil's (g_AHP = 0 in every preset, then not integrated).
* Slow inactivation of I_Na: I_Na = g_Na m^3 h s_Na (V - E_Na), ds_Na/dt = phi_NaS (alpha_s (1 - s_Na) - beta_s
  (s_Na - 1 + f_NaS)), alpha_s = 0.001 exp((-85 - V) / 30) (recovery), beta_s = 0.0034 / (1 + exp((-17 - V) / 10))
  (entry), 1/ms: the slow inactivation Fleidervish, Friedman & Gutnick (1996), J. Physiol. 493:83 measured in
  neocortical neurons, in the rate form of ModelDB 143671's naps.mod (its `ar` is 1 - f_NaS). Entry is ~0.003/ms
  at the AP's peak and ~2e-4/ms near -45 mV, recovery ~1.6 s at -70 mV: each AP makes ~0.3 % x f_NaS of the
  channels unavailable and the loss builds up over a train, so APs shrink the longer and faster a cell fires. At
  these rates the effect is small: a fast-spiking cell with g_Na 20 at 300 pA loses 5.5 mV of AP height over 300 ms
  at f_NaS 0.8 and phi_NaS 10 (1.9 mV at the preset's g_Na 58), where the FSI and 17o05028 recordings lose 10-20 mV
  over their fastest trains. f_NaS is the share of channels that can enter it (s_Na at rest is then
  1 - 0.027 f_NaS at -70 mV), phi_NaS scales both rates and V_NaS shifts both along the voltage axis (the rates are
  read at V - V_NaS): Fleidervish's cells rested near -70 mV, and at 0 a cell resting at -48 mV has a third of its
  f_NaS already inactivated at rest (alpha = beta near -43 mV). f_NaS = 0 in every preset, and then s_Na is 1 and
  not integrated.
* phi_NaK multiplies every rate of I_Na's and I_Kd's gates (m, h, n): the temperature factor
  tadj = 3^((celsius - 36) / 10) of Pospischil's hh2.mod (Q10 3; the Traub-Miles rates hold at 36 C, where
  tadj is 1). Steady states are unchanged, the gates' time constants divide by it: at 0.5 (a recording ~6 C
  below the model's temperature, e.g. slices at 30 C) APs are wider and slower to repolarise. 1 in every preset.
* Simplification (stated): E_Ca is a fixed 120 mV instead of the Nernst potential of a Ca2+ pool.

Membrane: one cylinder with L = d (area pi d^2, no end caps), specific capacitance 1 uF/cm^2 (cm = 1 in every
ModelDB template); densities in mS/cm^2.

Start and settling: a run starts at the steady state of the stimulus' first value (the holding current), see
`steady_state` and `noble.datagen.simulate.simulate`: where that state is a stable fixed point the neuron
starts exactly there and its trace does not drift; where there is none (the neuron fires at the holding
current) `simulate` runs the group for `HH.settle_ms` at the holding current first, not recorded.

Presets: every value and where it comes from. The paper's full text was not accessible when these were checked
(its abstract and first page were), so its figure values are as transcribed by OpenSourceBrain's per-figure
reproduction scripts [OSB], checked against an independent re-implementation [PYS]; [MDB] is the authors'
NEURON code.

* [OSB] github.com/OpenSourceBrain/PospischilEtAl2008, NEURON_MODIFIED/test_<cell>_Fig<k>.hoc: each passes one
  paper figure's parameters to run_cell.py (diameter = L = d, g_pas = g_leak, e_pas = E_leak, gnabar_hh2,
  gkbar_hh2, vtraub_hh2 = V_T, gkbar_im = g_M, taumax_im, gcabar_* = g_T / g_L, shift_it = V_x; S/cm^2);
  XPP/RS_fromFigure.ode's comments give the paper's section 2.2 values (E_K, tau_max).
* [MDB] ModelDB 123623 (github.com/ModelDBRepository/123623; copy in OSB NEURON_ORIG/): the demo cells
  sIN_template (FS), sPY_template (RS), sPYb_template (IB), sPYr_template (LTS) and IM_cortex.mod. These demo
  cells are not the paper's fitted cells (FS, RS, LTS): other sizes, leaks and densities, and E_K = -100 mV.
* [PYS] github.com/tjjlemaire/PySONIC, PySONIC/neurons/cortical.py, CorticalFS/RS/IB/LTS (S/m^2 = 0.1
  mS/cm^2; membrane area A -> d = sqrt(A / pi)).

fast_spiking, the paper's Fig. 4 fit ([OSB] test_RS_Fig4.hoc, which runs the FS cell; [PYS] CorticalFS):
g_leak 0.038 (3.8e-5 S/cm^2), E_leak -70.4 mV, g_Na 58, g_Kd 3.9, g_M 0.0787, V_T -57.9 mV, tau_max 502 ms,
diam_um 56.9 ([OSB] diameter 56.9; [PYS] area 10.17e-9 m^2 -> 56.9 um). diam_um was 67: [MDB]
sIN_template's diam = L = 67, the demo FS cell, a different model (g_pas 1.5e-4 S/cm^2, gkbar 0.01, no I_M).

regular_spiking, the paper's Fig. 2b fit ([OSB] test_RS_Fig2b.hoc; [PYS] CorticalRS): g_leak 0.0205, E_leak
-70.3 mV, g_Na 56, g_Kd 6, g_M 0.075, V_T -56.2 mV, diam_um 61.4 ([OSB] diameter 61.4; [PYS] area 11.84e-9 m^2
-> 61.4 um), tau_max 608 ms ([PYS] TauMax 0.608 s). [OSB]'s Fig. 2b script has taumax 934 ms, the value of its
Fig. 2a script (another cell: 61.8 um, g_pas 1.33e-5 S/cm^2); without the paper's caption this is not settled:
608 kept.

intrinsically_bursting, the paper's Fig. 5b (left) ([OSB] test_IB_Fig5bleft.hoc; [MDB] sPYb_template): g_leak
0.01, E_leak -70 mV, g_Na 50, g_Kd 5, g_M 0.03, diam_um 96 (also [PYS] area 28.95e-9 m^2), g_L 0.2 ([OSB]
gcabar_ical 2e-4 S/cm^2; [MDB] and [PYS] have 1e-4, the Fig. 5b right panel's value, there with a +0.05 nA
background current). V_T -55 mV and tau_max 1000 ms: [MDB] sPYb_template (vtraub_hh2 = -55, taumax_im = 1000),
the code ModelDB's README says reproduces Fig. 5B; [OSB]'s Fig. 5b scripts set neither (so, as OSB read it,
the caption gives neither). They were -58 mV ([OSB] test_IB_Fig6a.hoc: Fig. 6a's fitted IB cell, whose other values
differ: g_leak 1e-4 S/cm^2, E_leak -75 mV, g_Kd 4.2e-3, g_M 4.2e-5, g_L 1.2e-4) and 608 ms ([PYS] CorticalIB,
which reuses its RS V_T -56.2 mV and TauMax too).

low_threshold_spiking, the paper's Fig. 9b fit ([OSB] test_LTS_Fig9btop.hoc / Fig9bbottom.hoc; [PYS]
CorticalLTS): g_leak 0.019, E_leak -50 mV, g_Na 50, g_Kd 4, g_M 0.028, g_T 0.4 ([PYS] gCaTbar 4 S/m^2; [OSB]
passes 4e-4 S/cm^2 as gcabar_ical, which the LTS template lacks), V_T -50 mV, V_x -7 mV ([OSB] shift_it),
diam_um 89.2 ([OSB] diameter 89.2; [PYS] area 25.00e-9 m^2 -> 89.2 um), tau_max 4000 ms ([PYS] TauMax 4 s; the
paper's section 2.2.2 per [OSB] XPP/RS_fromFigure.ode, "4000ms in section 2.2.2"; [MDB] has 1000 ms everywhere,
[OSB]'s Fig. 9b scripts do not set it). diam_um was 96: [MDB] sPYr_template, the demo LTS cell of Fig. 8
(E_leak -85 mV, g_leak 1e-5 S/cm^2, g_T 1e-3 S/cm^2).

Values every preset shares (family defaults): E_Na 50 mV (the paper's section 2.2.1 per [OSB] XPP comment;
[MDB] v_sodium; [PYS]); E_K -90 mV (section 2.2.1 per [OSB] XPP comment; [PYS]; [MDB] uses -100 mV: the
paper's value is used); E_Ca 120 mV ([MDB] eca = 120 in sPYb/sPYr_template; [PYS]; fixed, see above; a value
in the paper: source not found); V_x 2 mV where g_T = 0, where it has no effect (source not found in the paper
or [MDB]; the Brain Dynamics Toolbox's Pospischil2008.m, github.com/bdtoolbox-org/bdtoolbox models/, uses 2 mV
for every cell); g_T = 0 / g_L = 0 where the paper's cell has no such current; g_D = 0 (not Pospischil's) and
tau_D 150 ms (Golomb et al. 2007's tau_b); g_h = 0 (not Pospischil's) and E_h -45 mV (Kole et al. 2006);
g_Kir = 0 (not Pospischil's) and V_Kir -100 mV (Mahon et al. 2000); phi_NaK 1 (the kinetics as published);
g_NaP = 0 (not Pospischil's) and V_NaP -52.3 mV (Magistretti & Alonso 1999); g_AHP = 0 (not Pospischil's) and
tau_AHP 1000 ms (the slow AHP's decay in cortical pyramidal cells: 1-2 s, e.g. Sah & Faber 2002's review); f_NaS = 0
(not Pospischil's), phi_NaS 1 and V_NaS 0 mV (Fleidervish et al. 1996's rates).
tests/datagen/test_hh_presets.py pins each value to this table.

Cell-to-cell variability: `sample_params` draws log-normal conductances / time constants and normal
potentials around a preset; the acceptance window on features lives in the dataset config ('hall of fame').
Trial-to-trial variability: an Ornstein-Uhlenbeck current added to the stimulus (see `stimuli.ou_noise`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import brian2 as b2
import numpy as np

from ..state_updaters import cached_method
from .base import BuiltGroup, ModelFamily, ParamSpec, assign_params

KIR_SLOPE_MV = 10.0  # I_Kir's activation slope (Mahon et al. 2000), written as 10 * mV in _EQS
NAP_SLOPE_MV = 6.8  # I_NaP's activation slope (Magistretti & Alonso 1999), written as 6.8 * mV in _EQS

# Where the gates' rates are read (written as -75 and -150 in _EQS). Below V_T - 75 mV the Traub-Miles gates sit at
# their limits (m, n < 1e-7, 1 - h < 1e-9) and alpha_h, beta_m keep growing (alpha_h 21/ms there, 340/ms at V_T - 125):
# RK4 at dt 0.025-0.05 ms diverges from ~V_T - 105 mV (a 1.7 GOhm cell at -100 pA went to NaN near -169 mV). The
# rates are held at their value there, and those of I_M and I_L's q gate below -150 mV (tau_p and beta_q grow the
# same way); no steady state moves by more than 1e-5, and above these floors nothing changes.
GATE_FLOOR_REL_MV = -75.0
GATE_FLOOR_MV = -150.0

_EQS = """
dv/dt = (I_leak - I_Na - I_Kd - I_M - I_T - I_L - I_D - I_h - I_Kir - I_NaP - I_AHP + I_inj) / Cm : volt
area = pi * diam_um**2 : metre**2
Cm = 1 * ufarad / cm**2 * area : farad
I_inj = I_stim(t, i) : amp
I_leak = g_leak * area * (E_leak - v) : amp
I_Na = g_Na * area * m**3 * h * s_Na * (v - E_Na) : amp
I_Kd = g_Kd * area * n**4 * (v - E_K) : amp
I_M = g_M * area * p * (v - E_K) : amp
I_T = g_T * area * s_inf**2 * u * (v - E_Ca) : amp
I_L = g_L * area * q**2 * r * (v - E_Ca) : amp
I_D = g_D * area * a_D**3 * b_D * (v - E_K) : amp
I_h = g_h * area * w_h * (v - E_h) : amp
I_Kir = g_Kir * area * m_Kir_inf * (v - E_K) : amp
I_NaP = g_NaP * area * m_NaP_inf * (v - E_Na) : amp
I_AHP = g_AHP * area * z_AHP * (v - E_K) : amp
vu = clip((v - V_T) / mV, -75, 1000) : 1
vg = clip(v / mV, -150, 1000) : 1
dm/dt = phi_NaK * (alpha_m * (1 - m) - beta_m * m) : 1
dh/dt = phi_NaK * (alpha_h * (1 - h) - beta_h * h) : 1
dn/dt = phi_NaK * (alpha_n * (1 - n) - beta_n * n) : 1
alpha_m = 0.32 * (13 - vu) / (exp((13 - vu) / 4) - 1) / ms : Hz
beta_m = 0.28 * (vu - 40) / (exp((vu - 40) / 5) - 1) / ms : Hz
alpha_h = 0.128 * exp((17 - vu) / 18) / ms : Hz
beta_h = 4 / (1 + exp((40 - vu) / 5)) / ms : Hz
alpha_n = 0.032 * (15 - vu) / (exp((15 - vu) / 5) - 1) / ms : Hz
beta_n = 0.5 * exp((10 - vu) / 40) / ms : Hz
dp/dt = (p_inf - p) / tau_p : 1
p_inf = 1 / (1 + exp(-(vg + 35) / 10)) : 1
tau_p = tau_max / (3.3 * exp((vg + 35) / 20) + exp(-(vg + 35) / 20)) : second
vx = (v + V_x) / mV : 1
s_inf = 1 / (1 + exp(-(vx + 57) / 6.2)) : 1
du/dt = (u_inf - u) / tau_u : 1
u_inf = 1 / (1 + exp((vx + 81) / 4)) : 1
tau_u = (30.8 + (211.4 + exp((vx + 113.2) / 5)) / (1 + exp((vx + 84) / 3.2))) / 3.7 * ms : second
dq/dt = (alpha_q * (1 - q) - beta_q * q) : 1
dr/dt = (alpha_r * (1 - r) - beta_r * r) : 1
alpha_q = 0.055 * (-27 - vg) / (exp((-27 - vg) / 3.8) - 1) / ms : Hz
beta_q = 0.94 * exp((-75 - vg) / 17) / ms : Hz
alpha_r = 0.000457 * exp((-13 - v / mV) / 50) / ms : Hz
beta_r = 0.0065 / (exp((-15 - v / mV) / 28) + 1) / ms : Hz
da_D/dt = (a_D_inf - a_D) / (2 * ms) : 1
db_D/dt = (b_D_inf - b_D) / tau_D : 1
a_D_inf = 1 / (1 + exp(-(v / mV + 50) / 20)) : 1
b_D_inf = 1 / (1 + exp((v / mV + 70) / 6)) : 1
dw_h/dt = alpha_w * (1 - w_h) - beta_w * w_h : 1
alpha_w = 0.00643 * 11.9 / exprel((v / mV + 154.9) / 11.9) / ms : Hz
beta_w = 0.193 * exp(v / mV / 33.1) / ms : Hz
m_Kir_inf = 1 / (1 + exp((v - V_Kir) / (10 * mV))) : 1
m_NaP_inf = 1 / (1 + exp(-(v - V_NaP) / (6.8 * mV))) : 1
dz_AHP/dt = (c_AHP - z_AHP) / (50 * ms) : 1
dc_AHP/dt = alpha_c * (1 - c_AHP) - c_AHP / tau_AHP : 1
alpha_c = 0.2 / ms / (1 + exp(-(v / mV + 10) / 2)) : Hz
ds_Na/dt = phi_NaS * (alpha_sNa * (1 - s_Na) - beta_sNa * (s_Na - 1 + f_NaS)) : 1
alpha_sNa = 0.001 * exp((-85 - clip((v - V_NaS) / mV, -150, 1000)) / 30) / ms : Hz
beta_sNa = 0.0034 / (exp((-17 - (v - V_NaS) / mV) / 10) + 1) / ms : Hz
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
g_h : siemens / metre**2 (constant)
E_h : volt (constant)
g_Kir : siemens / metre**2 (constant)
V_Kir : volt (constant)
phi_NaK : 1 (constant)
g_NaP : siemens / metre**2 (constant)
V_NaP : volt (constant)
g_AHP : siemens / metre**2 (constant)
tau_AHP : second (constant)
f_NaS : 1 (constant)
phi_NaS : 1 (constant)
V_NaS : volt (constant)
"""


def _gates_at_rest(v_mV: np.ndarray, V_T: np.ndarray, V_x: np.ndarray, f_NaS: np.ndarray | float = 0.0,
                   V_NaS: np.ndarray | float = 0.0) -> dict[str, np.ndarray]:
    """Steady-state gating variables at a holding potential, so runs start at rest without a transient."""
    vu = np.maximum(v_mV - V_T, GATE_FLOOR_REL_MV)
    vg = np.maximum(v_mV, GATE_FLOOR_MV)
    with np.errstate(divide="ignore", invalid="ignore"):
        am = 0.32 * (13 - vu) / np.expm1((13 - vu) / 4)
        bm = 0.28 * (vu - 40) / np.expm1((vu - 40) / 5)
        ah = 0.128 * np.exp((17 - vu) / 18)
        bh = 4 / (1 + np.exp((40 - vu) / 5))
        an = 0.032 * (15 - vu) / np.expm1((15 - vu) / 5)
        bn = 0.5 * np.exp((10 - vu) / 40)
        aq = 0.055 * (-27 - vg) / np.expm1((-27 - vg) / 3.8)
        bq = 0.94 * np.exp((-75 - vg) / 17)
        ar = 0.000457 * np.exp((-13 - v_mV) / 50)
        br = 0.0065 / (np.exp((-15 - v_mV) / 28) + 1)
    return {
        "m": am / (am + bm),
        "h": ah / (ah + bh),
        "n": an / (an + bn),
        "p": 1 / (1 + np.exp(-(vg + 35) / 10)),
        "u": 1 / (1 + np.exp((v_mV + V_x + 81) / 4)),
        "q": aq / (aq + bq),
        "r": ar / (ar + br),
        "a_D": 1 / (1 + np.exp(-(v_mV + 50) / 20)),
        "b_D": 1 / (1 + np.exp((v_mV + 70) / 6)),
        "w_h": _w_inf(v_mV),
        "z_AHP": np.zeros_like(np.asarray(v_mV, dtype=np.float64)),  # below -50 mV: < 1e-6 (module docstring)
        "c_AHP": np.zeros_like(np.asarray(v_mV, dtype=np.float64)),
        "s_Na": slow_na_inactivation_inf(np.asarray(v_mV, dtype=np.float64) - V_NaS, f_NaS),
    }


def _w_rates(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(alpha_w, beta_w) of I_h in 1/ms at v (mV)."""
    return 0.00643 * _vtrap(np.asarray(v, dtype=np.float64) + 154.9, 11.9), 0.193 * np.exp(np.asarray(v) / 33.1)


def _w_inf(v: np.ndarray) -> np.ndarray:
    a, b = _w_rates(v)
    return a / (a + b)


def kir_activation(v_mV: np.ndarray, V_Kir_mV: np.ndarray | float) -> np.ndarray:
    """I_Kir's instantaneous activation 1 / (1 + exp((V - V_Kir) / 10 mV)) (Mahon et al. 2000)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp((np.asarray(v_mV, dtype=np.float64) - V_Kir_mV) / KIR_SLOPE_MV))


def ahp_entry_rate(v_mV: np.ndarray) -> np.ndarray:
    """I_AHP's Ca2+-pool entry rate alpha_c (1/ms): 0.2 / (1 + exp(-(V + 10) / 2 mV)), non-zero only during APs."""
    with np.errstate(over="ignore"):
        return 0.2 / (1.0 + np.exp(-(np.asarray(v_mV, dtype=np.float64) + 10.0) / 2.0))


def slow_na_rates(v_mV: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recovery alpha, entry beta) of I_Na's slow inactivation gate s_Na in 1/ms at v (mV; pass v - V_NaS),
    phi_NaS = 1 (Fleidervish et al. 1996 as in ModelDB 143671 naps.mod; module docstring)."""
    v = np.asarray(v_mV, dtype=np.float64)
    with np.errstate(over="ignore"):
        return 0.001 * np.exp((-85.0 - np.maximum(v, GATE_FLOOR_MV)) / 30.0), 0.0034 / (np.exp((-17.0 - v) / 10.0) + 1)


def slow_na_inactivation_inf(v_mV: np.ndarray, f_NaS: np.ndarray | float) -> np.ndarray:
    """s_Na's steady state at v (mV; pass v - V_NaS): 1 - f_NaS beta / (alpha + beta), the share of Na+ channels
    not slowly inactivated."""
    a, b = slow_na_rates(v_mV)
    return 1.0 - np.asarray(f_NaS, dtype=np.float64) * b / (a + b)


def nap_activation(v_mV: np.ndarray, V_NaP_mV: np.ndarray | float) -> np.ndarray:
    """I_NaP's instantaneous activation 1 / (1 + exp(-(V - V_NaP) / 6.8 mV)) (Magistretti & Alonso 1999)."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-(np.asarray(v_mV, dtype=np.float64) - V_NaP_mV) / NAP_SLOPE_MV))


# ---- steady state -----------------------------------------------------------------------------------
_STATE = ("v", "m", "h", "n", "p", "u", "q", "r", "a_D", "b_D", "w_h", "z_AHP", "c_AHP", "s_Na")
AHP_RISE_MS = 50.0  # I_AHP's conductance follows its Ca2+ pool with this lag (written as 50 * ms in _EQS)
_GATES = _STATE[1:]


def _vtrap(x: np.ndarray, y: float) -> np.ndarray:
    """x / (exp(x / y) - 1), continuous at x = 0 (limit y)."""
    x = np.asarray(x, dtype=np.float64)
    small = np.abs(x) < 1e-6
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        out = x / np.expm1(np.where(small, 1.0, x) / y)
    return np.where(small, y - x / 2, out)


def _kinetics(v: np.ndarray, col: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(x_inf, tau_x in ms) of every gate at v (mV): exactly the rate functions of `_EQS`."""
    vu = np.maximum(v - col["V_T"], GATE_FLOOR_REL_MV)
    vg = np.maximum(v, GATE_FLOOR_MV)
    vx = v + col["V_x"]
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        am, bm = 0.32 * _vtrap(13 - vu, 4), 0.28 * _vtrap(vu - 40, 5)
        ah, bh = 0.128 * np.exp((17 - vu) / 18), 4 / (1 + np.exp((40 - vu) / 5))
        an, bn = 0.032 * _vtrap(15 - vu, 5), 0.5 * np.exp((10 - vu) / 40)
        aq, bq = 0.055 * _vtrap(-27 - vg, 3.8), 0.94 * np.exp((-75 - vg) / 17)
        ar, br = 0.000457 * np.exp((-13 - v) / 50), 0.0065 / (np.exp((-15 - v) / 28) + 1)
        aw, bw = _w_rates(v)
        az = ahp_entry_rate(v)
        a_s, b_s = slow_na_rates(v - col["V_NaS"])
        phi = col["phi_NaK"]
        tau_p = col["tau_max"] / (3.3 * np.exp((vg + 35) / 20) + np.exp(-(vg + 35) / 20))
        tau_u = (30.8 + (211.4 + np.exp((vx + 113.2) / 5)) / (1 + np.exp((vx + 84) / 3.2))) / 3.7
        out = {
            "m": (am / (am + bm), 1 / (am + bm) / phi),
            "h": (ah / (ah + bh), 1 / (ah + bh) / phi),
            "n": (an / (an + bn), 1 / (an + bn) / phi),
            "p": (1 / (1 + np.exp(-(vg + 35) / 10)), tau_p),
            "u": (1 / (1 + np.exp((vx + 81) / 4)), tau_u),
            "q": (aq / (aq + bq), 1 / (aq + bq)),
            "r": (ar / (ar + br), 1 / (ar + br)),
            "a_D": (1 / (1 + np.exp(-(v + 50) / 20)), np.full_like(v, 2.0)),
            "b_D": (1 / (1 + np.exp((v + 70) / 6)), np.broadcast_to(col["tau_D"], np.shape(v))),
            "w_h": (aw / (aw + bw), 1 / (aw + bw)),
            # z relaxes to the pool c, not to a function of v: its steady state is c's (see _derivatives)
            "z_AHP": (az / (az + 1 / col["tau_AHP"]), np.full_like(v, AHP_RISE_MS)),
            "c_AHP": (az / (az + 1 / col["tau_AHP"]), 1 / (az + 1 / col["tau_AHP"])),
            # ds/dt = phi (a (1 - s) - b (s - 1 + f)): relaxes to 1 - f b / (a + b) at rate phi (a + b)
            "s_Na": (1 - col["f_NaS"] * b_s / (a_s + b_s), 1 / (a_s + b_s) / col["phi_NaS"]),
        }
    return out


def _columns(params: np.ndarray) -> dict[str, np.ndarray]:
    params = np.atleast_2d(np.asarray(params, dtype=np.float64))
    return {name: params[:, j] for j, name in enumerate(HH.param_names())}


def _ionic_current(v: np.ndarray, gates: dict[str, np.ndarray], col: dict[str, np.ndarray]) -> np.ndarray:
    """Outward current density (uA/cm^2 = mS/cm^2 x mV) of the active channels, leak excluded."""
    vx = v + col["V_x"]
    s_inf = 1 / (1 + np.exp(-(vx + 57) / 6.2))
    return (col["g_Na"] * gates["m"] ** 3 * gates["h"] * gates["s_Na"] * (v - col["E_Na"])
            + col["g_Kd"] * gates["n"] ** 4 * (v - col["E_K"])
            + col["g_M"] * gates["p"] * (v - col["E_K"])
            + col["g_T"] * s_inf**2 * gates["u"] * (v - col["E_Ca"])
            + col["g_L"] * gates["q"] ** 2 * gates["r"] * (v - col["E_Ca"])
            + col["g_D"] * gates["a_D"] ** 3 * gates["b_D"] * (v - col["E_K"])
            + col["g_h"] * gates["w_h"] * (v - col["E_h"])
            + col["g_Kir"] * kir_activation(v, col["V_Kir"]) * (v - col["E_K"])
            + col["g_NaP"] * nap_activation(v, col["V_NaP"]) * (v - col["E_Na"])
            + col["g_AHP"] * gates["z_AHP"] * (v - col["E_K"]))


def _derivatives(y: np.ndarray, col: dict[str, np.ndarray], J_hold: np.ndarray) -> np.ndarray:
    """d(state)/dt (mV/ms, 1/ms) of `_EQS` for states y (..., 14) in `_STATE` order, C = 1 uF/cm^2 and a
    constant injected current density J_hold (uA/cm^2)."""
    v = y[..., 0]
    gates = {g: y[..., k + 1] for k, g in enumerate(_GATES)}
    kin = _kinetics(v, col)
    out = np.empty_like(y)
    out[..., 0] = col["g_leak"] * (col["E_leak"] - v) + J_hold - _ionic_current(v, gates, col)
    for k, g in enumerate(_GATES):
        inf, tau = kin[g]
        out[..., k + 1] = (inf - gates[g]) / tau
    k = _GATES.index("z_AHP")  # I_AHP's conductance follows the pool's state, not v
    out[..., k + 1] = (gates["c_AHP"] - gates["z_AHP"]) / AHP_RISE_MS
    return out


def steady_state(params: np.ndarray, holding_pA: np.ndarray | float = 0.0, v_lo_mV: float = -150.0,
                 v_hi_mV: float = 40.0, grid_mV: float = 0.5) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(state, at_rest): per neuron, the lowest linearly stable steady state under a constant current.

    The fixed points are the zeros of the steady-state I-V curve, g_leak (E_leak - V) + I_hold / A - I_ion(V)
    with every gate at its steady state: bracketed on a `grid_mV` grid over [v_lo, v_hi] where the net current
    turns from inward to outward (the others are saddles), then bisected to round-off. Each is checked by the
    eigenvalues of the full model's Jacobian there (finite differences), which also rejects the foci that
    lose stability in a Hopf bifurcation. `state` maps 'v' (mV) and every gate to (n,) arrays: that fixed
    point where `at_rest`, else (no stable fixed point: the neuron fires at this current) v = E_leak with the
    gates at their steady state there, the start `HH` used before it started at rest."""
    params = np.atleast_2d(np.asarray(params, dtype=np.float64))
    n = params.shape[0]
    hold = np.broadcast_to(np.asarray(holding_pA, dtype=np.float64), (n,))
    uniq, inverse = np.unique(np.column_stack([params, hold]), axis=0, return_inverse=True)
    inverse = np.asarray(inverse).reshape(-1)
    col = _columns(uniq[:, :-1])
    area_cm2 = np.pi * (col["diam_um"] * 1e-4) ** 2
    J = uniq[:, -1] * 1e-6 / area_cm2  # pA -> uA/cm^2

    def net(v: np.ndarray, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Net inward current density (uA/cm^2) at v (rows, G) with the gates at steady state."""
        c = {k: a[rows][:, None] for k, a in col.items()}
        kin = _kinetics(v, c)
        gates = {g: kin[g][0] for g in _GATES}
        with np.errstate(over="ignore", invalid="ignore"):
            return c["g_leak"] * (c["E_leak"] - v) + J[rows][:, None] - _ionic_current(v, gates, c)

    U = len(uniq)
    # Below every reversal potential (E_K, the leak's shifted by the holding current) the net current is
    # inward, above them outward: widen the grid to hold every root.
    E_eff = col["E_leak"] + J / col["g_leak"]
    lo_all = min(v_lo_mV, float(np.min(np.minimum(E_eff, col["E_K"]))) - 1.0)
    hi_all = max(v_hi_mV, float(np.max(E_eff)) + 1.0)
    grid = np.arange(max(lo_all, -1000.0), min(hi_all, 1000.0) + 1e-9, grid_mV)
    F = net(np.broadcast_to(grid, (U, len(grid))))
    down = (F[:, :-1] > 0) & (F[:, 1:] <= 0)  # inward -> outward with rising V: a node or a focus
    ri, gi = np.nonzero(down)  # (row, bracket) pairs, rows ascending, brackets ascending within a row
    lo, hi = grid[gi].astype(np.float64), grid[gi + 1].astype(np.float64)
    for _ in range(60):  # 0.5 mV / 2^60: round-off
        mid = 0.5 * (lo + hi)
        inward = net(mid[:, None], ri)[:, 0] > 0
        lo, hi = np.where(inward, mid, lo), np.where(inward, hi, mid)
    roots = 0.5 * (lo + hi)
    # Jacobian of the full model at each candidate (central differences), stable iff every eigenvalue < 0.
    c_ri = {k: a[ri] for k, a in col.items()}
    kin = _kinetics(roots, c_ri)
    y0 = np.column_stack([roots] + [kin[g][0] for g in _GATES])
    eps = 1e-6
    jac = np.empty((len(roots), len(_STATE), len(_STATE)))
    for k in range(len(_STATE)):
        dy = np.zeros(len(_STATE))
        dy[k] = eps
        jac[:, :, k] = (_derivatives(y0 + dy, c_ri, J[ri]) - _derivatives(y0 - dy, c_ri, J[ri])) / (2 * eps)
    ok = np.all(np.isfinite(jac), axis=(1, 2))
    stable = np.zeros(len(roots), dtype=bool)
    if np.any(ok):
        stable[ok] = np.max(np.linalg.eigvals(jac[ok]).real, axis=1) < -1e-9
    chosen = np.full(U, -1)
    for j in np.flatnonzero(stable)[::-1]:  # the lowest stable root of each row wins
        chosen[ri[j]] = j
    at_rest_u = chosen >= 0
    v_u = np.where(at_rest_u, roots[np.maximum(chosen, 0)] if len(roots) else 0.0, col["E_leak"])
    kin_u = _kinetics(v_u, col)
    state_u = {"v": v_u, **{g: kin_u[g][0] for g in _GATES}}
    return {k: np.asarray(a)[inverse].copy() for k, a in state_u.items()}, at_rest_u[inverse]


class HH(ModelFamily):
    """Pospischil 2008 single-compartment HH neuron (Na, Kd, M, T, L currents; optional Golomb 2007 I_D,
    Kole 2006 I_h, Mahon 2000 I_Kir, Magistretti & Alonso 1999 I_NaP, a Wang 1998-type slow I_AHP and I_Na's
    slow inactivation after Fleidervish et al. 1996)."""

    name: ClassVar[str] = "hh"
    description: ClassVar[str] = (
        "Bio-realistic single-compartment conductance-based neuron of Pospischil et al. 2008 "
        "(Na, Kd, M, T-type and L-type Ca2+ currents), with an optional slowly inactivating d-type K+ "
        "current (Golomb et al. 2007) for delayed firing, an optional h-current (Kole et al. 2006) for sag and an "
        "optional inward rectifier (Mahon et al. 2000) for hyperpolarised input resistance and an optional "
        "persistent Na+ current (Magistretti & Alonso 1999) for depolarised interspike troughs and an optional "
        "spike-activated slow K+ current (I_AHP, after Wang 1998) for where a cell settles after a burst and an "
        "optional slow inactivation of I_Na (Fleidervish et al. 1996) for APs that shrink over a train."
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
        ParamSpec(name="V_T", unit="mV", default=-57.9, low=-75.0, high=-25.0, variability="normal",
                  description="spike-threshold shift of the Traub-Miles kinetics (up to -25: cells that fire from a "
                              "depolarised plateau, e.g. 190619B_0003's APs from -20 mV)"),
        ParamSpec(name="V_x", unit="mV", default=2.0, low=-10.0, high=10.0, description="I_T voltage shift"),
        ParamSpec(name="tau_max", unit="ms", default=502.0, low=20.0, high=5000.0, variability="lognormal",
                  description="maximal time constant of I_M"),
        ParamSpec(name="g_D", unit="mS/cm2", default=0.0, low=0.0, high=5.0, variability="lognormal",
                  description="d-type (slowly inactivating, Kv1) K+ conductance density: delayed firing"),
        # Not varied: g_D is 0 in every preset (so tau_D means nothing there), and a draw here would shift the
        # random stream of the parameters after it, i.e. change every dataset made before I_D existed.
        ParamSpec(name="tau_D", unit="ms", default=150.0, low=10.0, high=3000.0,
                  description="inactivation time constant of I_D"),
        # 5..400 um: a single compartment's equivalent area, from a cerebellar granule cell's ~3 pF (~10 um) to the
        # few nF a large pyramidal cell's input resistance and time constant ask for as one compartment
        ParamSpec(name="diam_um", unit="um", default=56.9, low=5.0, high=400.0, variability="lognormal",
                  description="soma diameter = length of the cylinder"),
        # Last and not varied, like I_D's: 0 in every preset, and a draw would change every dataset made before.
        ParamSpec(name="g_h", unit="mS/cm2", default=0.0, low=0.0, high=2.0,
                  description="h-current (HCN) conductance density: sag and rebound"),
        ParamSpec(name="E_h", unit="mV", default=-45.0, low=-60.0, high=-20.0, description="I_h reversal"),
        # Last and not varied, like I_D's and I_h's.
        ParamSpec(name="g_Kir", unit="mS/cm2", default=0.0, low=0.0, high=5.0,
                  description="inward-rectifier K+ (Kir2) conductance density: rectification below E_K"),
        ParamSpec(name="V_Kir", unit="mV", default=-100.0, low=-130.0, high=-60.0,
                  description="half-activation voltage of I_Kir"),
        # Last and not varied (1 in every preset, as the paper's models run at their own temperature).
        ParamSpec(name="phi_NaK", unit="1", default=1.0, low=0.1, high=3.0,
                  description="temperature factor of the Na+ and Kd gates' rates (hh2.mod's tadj)"),
        # Last and not varied, like I_Kir's.
        ParamSpec(name="g_NaP", unit="mS/cm2", default=0.0, low=0.0, high=1.0,
                  description="persistent Na+ conductance density: depolarising drive near threshold"),
        ParamSpec(name="V_NaP", unit="mV", default=-52.3, low=-70.0, high=-35.0,
                  description="half-activation voltage of I_NaP"),
        # Last and not varied, like I_NaP's.
        ParamSpec(name="g_AHP", unit="mS/cm2", default=0.0, low=0.0, high=2.0,
                  description="spike-activated slow K+ (sAHP) conductance density: holds a cell down after a burst"),
        ParamSpec(name="tau_AHP", unit="ms", default=1000.0, low=20.0, high=10000.0,
                  description="decay time constant of I_AHP's activation"),
        # Last and not varied, like I_AHP's.
        ParamSpec(name="f_NaS", unit="1", default=0.0, low=0.0, high=1.0,
                  description="share of Na+ channels that can enter slow inactivation: APs that shrink over a train"),
        ParamSpec(name="phi_NaS", unit="1", default=1.0, low=0.1, high=30.0,
                  description="rate factor of I_Na's slow inactivation (entry and recovery)"),
        ParamSpec(name="V_NaS", unit="mV", default=0.0, low=-20.0, high=40.0,
                  description="voltage shift of I_Na's slow inactivation rates (positive: entry only at higher V)"),
    )
    # Sources of every value: module docstring (pinned by tests/datagen/test_hh_presets.py).
    presets: ClassVar[dict[str, dict[str, float]]] = {
        "fast_spiking": {"g_leak": 0.038, "E_leak": -70.4, "g_Na": 58.0, "g_Kd": 3.9, "g_M": 0.0787,
                         "V_T": -57.9, "tau_max": 502.0, "diam_um": 56.9},
        "regular_spiking": {"g_leak": 0.0205, "E_leak": -70.3, "g_Na": 56.0, "g_Kd": 6.0, "g_M": 0.075,
                            "V_T": -56.2, "tau_max": 608.0, "diam_um": 61.4},
        "intrinsically_bursting": {"g_leak": 0.01, "E_leak": -70.0, "g_Na": 50.0, "g_Kd": 5.0, "g_M": 0.03,
                                   "g_L": 0.2, "V_T": -55.0, "tau_max": 1000.0, "diam_um": 96.0},
        "low_threshold_spiking": {"g_leak": 0.019, "E_leak": -50.0, "g_Na": 50.0, "g_Kd": 4.0, "g_M": 0.028,
                                  "g_T": 0.4, "V_T": -50.0, "V_x": -7.0, "tau_max": 4000.0, "diam_um": 89.2},
    }
    # Run-in `simulate` gives a group at its holding current, before the trace, when some neuron has no
    # stable steady state there (it fires): long enough for the first spikes' transient, not for adaptation
    # over seconds. Neurons with one start exactly at it and need none (module docstring).
    settle_ms: ClassVar[float] = 300.0

    @classmethod
    def equations(cls, with_T: bool = True, with_L: bool = True, with_D: bool = True, with_h: bool = True,
                  with_Kir: bool = True, with_NaP: bool = True, with_AHP: bool = True, with_NaS: bool = True) -> str:
        """The model's equations; a Ca2+, d-type, h or Kir current whose conductance is zero in the whole group
        is dropped (its gates are not integrated), which halves the cost for FS/RS cells and changes nothing else."""
        drop: set[str] = set()
        if not with_NaS:
            drop |= {"ds_Na/dt", "alpha_sNa", "beta_sNa"}
        if not with_AHP:
            drop |= {"I_AHP", "dz_AHP/dt", "dc_AHP/dt", "alpha_c"}
        if not with_NaP:
            drop |= {"I_NaP", "m_NaP_inf"}
        if not with_Kir:
            drop |= {"I_Kir", "m_Kir_inf"}
        if not with_h:
            drop |= {"I_h", "dw_h/dt", "alpha_w", "beta_w"}
        if not with_D:
            drop |= {"I_D", "da_D/dt", "db_D/dt", "a_D_inf", "b_D_inf"}
        if not with_T:
            drop |= {"I_T", "vx", "s_inf", "du/dt", "u_inf", "tau_u"}
        if not with_L:
            drop |= {"I_L", "dq/dt", "dr/dt", "alpha_q", "beta_q", "alpha_r", "beta_r"}
        lines = []
        for line in _EQS.strip().splitlines():
            head = line.split("=")[0].strip()  # "I_T", "du/dt", ...
            if head == "I_Na" and not with_NaS:
                line = line.replace(" * s_Na", "")  # every channel available: s_Na = 1, not integrated
            if head in drop:
                if head in ("I_T", "I_L", "I_D", "I_h", "I_Kir", "I_NaP", "I_AHP"):
                    lines.append(f"{head} = 0*amp : amp")
                continue
            lines.append(line)
        return "\n".join(lines) + "\n"

    @classmethod
    def steady_state(cls, params: np.ndarray, holding_pA: np.ndarray | float = 0.0
                     ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """(state, at_rest) of every neuron under a constant current: `steady_state` (module level)."""
        return steady_state(params, holding_pA)

    @classmethod
    def build(cls, n: int, params: np.ndarray, namespace: dict[str, Any], rng: np.random.Generator,
              start: dict[str, np.ndarray] | None = None) -> BuiltGroup:
        """The group, each neuron at `start` (v in mV and every gate, e.g. from `steady_state`); by default at
        its steady state without input."""
        cls.check_params(params)
        names = cls.param_names()
        with_T = bool(np.any(params[:, names.index("g_T")] > 0))
        with_L = bool(np.any(params[:, names.index("g_L")] > 0))
        with_D = bool(np.any(params[:, names.index("g_D")] > 0))
        with_h = bool(np.any(params[:, names.index("g_h")] > 0))
        with_Kir = bool(np.any(params[:, names.index("g_Kir")] > 0))
        with_NaP = bool(np.any(params[:, names.index("g_NaP")] > 0))
        with_AHP = bool(np.any(params[:, names.index("g_AHP")] > 0))
        with_NaS = bool(np.any(params[:, names.index("f_NaS")] > 0))
        group = b2.NeuronGroup(
            n, cls.equations(with_T, with_L, with_D, with_h, with_Kir, with_NaP, with_AHP, with_NaS),
            method=cached_method(cls.method),
            threshold="v > -20*mV",
            refractory="v > -20*mV", namespace=namespace, name="neurons",
        )
        assign_params(group, cls, params)
        if start is None:
            start = cls.steady_state(params)[0]
        group.v = np.asarray(start["v"], dtype=np.float64) * b2.mV
        for key in _GATES:
            if key in group.variables:
                setattr(group, key, np.asarray(start[key], dtype=np.float64))
        return BuiltGroup(group=group)


family = HH
