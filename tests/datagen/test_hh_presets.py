"""Every `hh` preset value (and what `hh_mc` shares with them) pinned to its cited source.

The table is the one in noble/datagen/models/hh.py's docstring, value by value. Source keys:
  OSB  github.com/OpenSourceBrain/PospischilEtAl2008, NEURON_MODIFIED/test_<cell>_Fig<k>.hoc (the paper figure's
       parameters as OSB transcribed them; S/cm^2 there) and XPP/RS_fromFigure.ode (paper section 2.2 values)
  MDB  ModelDB 123623 (github.com/ModelDBRepository/123623): sIN/sPY/sPYb/sPYr_template, IM_cortex.mod
  PYS  github.com/tjjlemaire/PySONIC PySONIC/neurons/cortical.py (S/m^2; membrane area -> d = sqrt(A / pi))
  BDT  github.com/bdtoolbox-org/bdtoolbox models/Pospischil2008.m
The paper itself (Biol Cybern 99:427-441) was not readable; "Fig. k" is the figure OSB's script names.
"""

from __future__ import annotations

import math

import pytest

from noble.datagen.models.hh import HH
from noble.datagen.models.hh_mc import HHMC

S_PER_CM2 = 1000.0  # S/cm^2 -> mS/cm^2
S_PER_M2 = 0.1  # S/m^2 -> mS/cm^2


def _d_from_area(area_m2: float) -> float:
    return round(math.sqrt(area_m2 / math.pi) * 1e6, 1)


SHARED = {  # family defaults no preset overrides (except where the preset's rows below say otherwise)
    "E_Na": (50.0, "paper sec. 2.2.1 per OSB XPP/RS_fromFigure.ode; MDB v_sodium = 50; PYS ENa"),
    "E_K": (-90.0, "paper sec. 2.2.1 per OSB XPP/RS_fromFigure.ode; PYS EK (MDB v_potassium = -100: not used)"),
    "E_Ca": (120.0, "MDB sPYb/sPYr_template eca = 120; PYS ECa (paper: source not found)"),
    "V_x": (2.0, "BDT Vx = 2 for every cell; no effect where g_T = 0 (paper/MDB: source not found)"),
    "g_T": (0.0, "no I_T in the paper's FS, RS and IB cells"),
    "g_L": (0.0, "no I_L in the paper's FS, RS and LTS cells"),
    "g_D": (0.0, "I_D is not Pospischil's (Golomb et al. 2007), off in every preset"),
    "tau_D": (150.0, "Golomb et al. 2007 tau_b = 150 ms"),
    "g_h": (0.0, "I_h is not Pospischil's (Kole et al. 2006), off in every preset"),
    "E_h": (-45.0, "Kole et al. 2006 / Hay et al. 2011 Ih.mod ehcn = -45 mV"),
    "g_Kir": (0.0, "I_Kir is not Pospischil's (Mahon et al. 2000), off in every preset"),
    "V_Kir": (-100.0, "Mahon et al. 2000, ModelDB 150621 Kirm.mod Vsm = -100 mV"),
    "phi_NaK": (1.0, "the published kinetics: hh2.mod's tadj at celsius 36"),
    "g_NaP": (0.0, "I_NaP is not Pospischil's (Magistretti & Alonso 1999), off in every preset"),
    "V_NaP": (-52.3, "Magistretti & Alonso 1999, J. Gen. Physiol. 114:491: V_1/2 of activation -52.3 mV"),
    "g_AHP": (0.0, "I_AHP is not Pospischil's (a Wang 1998-type slow AHP), off in every preset"),
    "tau_AHP": (1000.0, "the slow AHP's 1-2 s decay in cortical pyramidal cells (Sah & Faber 2002)"),
    "f_NaS": (0.0, "I_Na's slow inactivation is not Pospischil's (Fleidervish et al. 1996), off in every preset"),
    "phi_NaS": (1.0, "Fleidervish et al. 1996's rates (ModelDB 143671 naps.mod)"),
    "V_NaS": (0.0, "Fleidervish et al. 1996's rates, unshifted"),
}

TABLE: dict[str, dict[str, tuple[float, str]]] = {
    "fast_spiking": {
        "g_leak": (3.8e-5 * S_PER_CM2, "Fig. 4: OSB test_RS_Fig4.hoc g_pas 3.8e-5; PYS CorticalFS gLeak 0.38"),
        "E_leak": (-70.4, "Fig. 4: OSB e_pas -70.4; PYS ELeak"),
        "g_Na": (0.058 * S_PER_CM2, "Fig. 4: OSB gnabar_hh2 0.058; PYS gNabar 580"),
        "g_Kd": (0.0039 * S_PER_CM2, "Fig. 4: OSB gkbar_hh2 0.0039; PYS gKdbar 39"),
        "g_M": (7.87e-5 * S_PER_CM2, "Fig. 4: OSB gkbar_im 7.87e-5; PYS gMbar 0.787"),
        "V_T": (-57.9, "Fig. 4: OSB vtraub_hh2 -57.9; PYS VT"),
        "tau_max": (502.0, "Fig. 4: OSB taumax_im 502; PYS TauMax 0.502 s"),
        "diam_um": (56.9, "Fig. 4: OSB diameter 56.9; PYS area 10.17e-9 m^2 (MDB sIN_template's 67: demo cell)"),
    },
    "regular_spiking": {
        "g_leak": (2.05e-5 * S_PER_CM2, "Fig. 2b: OSB test_RS_Fig2b.hoc g_pas 2.05e-5; PYS CorticalRS gLeak 0.205"),
        "E_leak": (-70.3, "Fig. 2b: OSB e_pas -70.3; PYS ELeak"),
        "g_Na": (0.056 * S_PER_CM2, "Fig. 2b: OSB gnabar_hh2 0.056; PYS gNabar 560"),
        "g_Kd": (0.006 * S_PER_CM2, "Fig. 2b: OSB gkbar_hh2 0.006; PYS gKdbar 60"),
        "g_M": (7.5e-5 * S_PER_CM2, "Fig. 2b: OSB gkbar_im 7.5e-5; PYS gMbar 0.75"),
        "V_T": (-56.2, "Fig. 2b: OSB vtraub_hh2 -56.2; PYS VT"),
        "tau_max": (608.0, "PYS TauMax 0.608 s (OSB's Fig. 2b script: 934, its Fig. 2a value)"),
        "diam_um": (61.4, "Fig. 2b: OSB diameter 61.4; PYS area 11.84e-9 m^2"),
    },
    "intrinsically_bursting": {
        "g_leak": (1e-5 * S_PER_CM2, "Fig. 5b: OSB test_IB_Fig5bleft.hoc g_pas 1e-5; MDB sPYb_template"),
        "E_leak": (-70.0, "Fig. 5b: OSB e_pas -70; MDB sPYb_template"),
        "g_Na": (0.05 * S_PER_CM2, "Fig. 5b: OSB gnabar_hh2 0.05; MDB sPYb_template"),
        "g_Kd": (0.005 * S_PER_CM2, "Fig. 5b: OSB gkbar_hh2 0.005; MDB sPYb_template"),
        "g_M": (3e-5 * S_PER_CM2, "Fig. 5b: OSB gkbar_im 3e-5; MDB sPYb_template"),
        "g_L": (2e-4 * S_PER_CM2, "Fig. 5b left: OSB gcabar_ical 2e-4 (MDB, PYS: 1e-4, the right panel's)"),
        "V_T": (-55.0, "MDB sPYb_template vtraub_hh2 -55 (not in Fig. 5b per OSB; was -58, Fig. 6a's cell)"),
        "tau_max": (1000.0, "MDB sPYb_template taumax_im 1000 (not in Fig. 5b per OSB; was 608, PYS)"),
        "diam_um": (96.0, "Fig. 5b: OSB diameter 96; MDB sPYb_template diam = L = 96; PYS area 28.95e-9 m^2"),
    },
    "low_threshold_spiking": {
        "g_leak": (1.9e-5 * S_PER_CM2, "Fig. 9b: OSB test_LTS_Fig9btop.hoc g_pas 1.9e-5; PYS CorticalLTS 0.19"),
        "E_leak": (-50.0, "Fig. 9b: OSB e_pas -50; PYS ELeak"),
        "g_Na": (0.05 * S_PER_CM2, "Fig. 9b: OSB gnabar_hh2 0.05; PYS gNabar 500"),
        "g_Kd": (0.004 * S_PER_CM2, "Fig. 9b: OSB gkbar_hh2 0.004; PYS gKdbar 40"),
        "g_M": (2.8e-5 * S_PER_CM2, "Fig. 9b: OSB gkbar_im 2.8e-5; PYS gMbar 0.28"),
        "g_T": (4.0 * S_PER_M2, "Fig. 9b: PYS gCaTbar 4.0 S/m^2; OSB 4e-4 S/cm^2 (keyed gcabar_ical)"),
        "V_T": (-50.0, "Fig. 9b: OSB vtraub_hh2 -50; PYS VT"),
        "V_x": (-7.0, "Fig. 9b: OSB shift_it -7; PYS Vx"),
        "tau_max": (4000.0, "PYS TauMax 4 s; paper sec. 2.2.2 per OSB XPP (MDB: 1000)"),
        "diam_um": (89.2, "Fig. 9b: OSB diameter 89.2; PYS area 25.00e-9 m^2 (MDB sPYr_template's 96: demo)"),
    },
}


def _expected(preset: str) -> dict[str, tuple[float, str]]:
    return {**SHARED, **TABLE[preset]}


@pytest.mark.parametrize("preset", sorted(TABLE))
def test_every_preset_value_is_its_cited_source_value(preset: str) -> None:
    values = HH.preset_values(preset)
    expected = _expected(preset)
    assert set(expected) == set(values), "every parameter of the preset must have a cited value"
    for name, (value, source) in expected.items():
        assert values[name] == pytest.approx(value, rel=1e-12, abs=1e-12), f"{preset}.{name}: {source}"


def test_presets_cover_the_four_classes_and_the_default_is_fast_spiking() -> None:
    assert set(HH.presets) == set(TABLE)
    defaults = {p.name: p.default for p in HH.params}
    assert defaults == HH.preset_values("fast_spiking")  # the defaults are the FS cell's, cited above


def test_diameters_are_the_cited_membrane_areas() -> None:
    """PySONIC gives membrane areas: d = sqrt(A / pi) is the paper's L = d to the 0.1 um it is quoted to."""
    areas = {"fast_spiking": 10.17e-9, "regular_spiking": 11.84e-9, "intrinsically_bursting": 28.95e-9,
             "low_threshold_spiking": 25.00e-9}
    for preset, area in areas.items():
        assert _d_from_area(area) == HH.preset_values(preset)["diam_um"], preset


HHMC_SHARED = {  # hh_mc values taken from the Pospischil cells (the rest of hh_mc is tuned by hand)
    "fast_spiking": {"V_T": -57.9, "tau_max": 502.0, "g_Na_soma": 58.0, "g_M_soma": 0.0787, "E_Na": 50.0,
                     "E_K": -90.0},
    "regular_spiking": {"E_leak": -70.3, "V_T": -56.2, "tau_max": 608.0, "g_Na_soma": 56.0, "E_Na": 50.0,
                        "E_K": -90.0},
}


@pytest.mark.parametrize("preset", sorted(HHMC_SHARED))
def test_hh_mc_shares_the_cited_values(preset: str) -> None:
    mc = HHMC.preset_values(preset)
    hh = HH.preset_values(preset)
    for name, value in HHMC_SHARED[preset].items():
        assert mc[name] == value, f"hh_mc {preset}.{name}"
        hh_name = {"g_Na_soma": "g_Na", "g_M_soma": "g_M"}.get(name, name)
        assert hh[hh_name] == value, f"hh {preset}.{hh_name} (source: {_expected(preset)[hh_name][1]})"
