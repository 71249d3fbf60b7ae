"""Protocols with a pre-step (a -100 pA step right before the test step, as many labs run them): the fit measures
the rest before the pre-step, simulates the pre-step as recorded, and takes the pre-step's deflection and sag
as features on every sweep; the physiology checks judge the pre-step deflection (input resistance) on every
sweep, so a 4x input-resistance error fails even on sweeps that fire.

A synthetic 'cell' from the hh model with known parameters (OU current noise), 4 sweeps of
[50 ms rest, 150 ms at -100 pA, 200 ms test step, 50 ms]."""

from __future__ import annotations

import numpy as np
import pytest

from noble.datagen.models import get as get_family
from noble.fit.hhmodel import IDX, params_row, pin_rest, resting_potential
from noble.fit.objective import FitProblem
from noble.fit.physiology import physiology_checks
from noble.fit.targets import prestep_window

from _synth import synthetic_recording  # tests/fit is on sys.path (pytest rootdir-relative import)

HH = get_family("hh")
TRUTH = HH.preset_values("regular_spiking", {})
AMPS = [0.0, 100.0, 200.0, 300.0]
REST_END, PRE, START, DUR, TAIL = 50.0, 150.0, 200.0, 200.0, 50.0


@pytest.fixture(scope="module")
def problem() -> FitProblem:
    rec = synthetic_recording(TRUTH, AMPS, start_ms=START, duration_ms=DUR, tail_ms=TAIL, prestep_pA=-100.0,
                              prestep_ms=PRE, noise_pA=2.0, seed=2)
    return FitProblem.from_recording(rec)


def test_the_rest_is_read_before_the_prestep_and_the_prestep_is_simulated(problem: FitProblem) -> None:
    sw = problem.recording.sweeps[1]
    # the cut keeps the pre-step and the baseline before it (pre_ms 150 reaches back to the trace's start)
    assert problem.crop_start_ms == [0.0] * len(AMPS)
    assert sw.rest_end_ms == pytest.approx(REST_END) and sw.stim_start_ms == pytest.approx(START)
    assert prestep_window(sw) == pytest.approx((REST_END, START))
    true_rest = float(resting_potential(params_row(TRUTH)[None])[0][0])
    t = problem.targets
    assert t.rest_mV == pytest.approx(true_rest, abs=1.0)
    defl = t.feature_array("prestep_deflection_mV")
    # -100 pA hyperpolarises the RS cell by ~15-20 mV: a baseline read over the whole pre-onset stretch (as
    # before) would have put the 'rest' there
    assert np.all(defl < -10.0) and np.ptp(defl) < 3.0
    assert np.all(np.isfinite(t.feature_array("prestep_sag_mV")))
    labels = [f for _s, f in problem.term_labels]
    assert labels.count("prestep_deflection_mV") == len(AMPS) and labels.count("prestep_sag_mV") == len(AMPS)


def test_the_prestep_terms_tell_a_4x_input_resistance_error_on_every_sweep(problem: FitProblem) -> None:
    truth = params_row(TRUTH)
    wrong = truth.copy()
    wrong[IDX["g_leak"]] *= 4.0
    rest = float(resting_potential(truth[None])[0][0])
    wrong = pin_rest(wrong[None], rest)[0][0]  # same rest: only the input resistance is wrong
    ev = problem.evaluate(np.stack([truth, wrong]), 0.025, keep_traces=True)
    cols = [j for j, (_s, f) in enumerate(problem.term_labels) if f == "prestep_deflection_mV"]
    z = ev.z[:, cols]
    assert np.all(np.abs(z[0]) < 2.0), z[0]
    assert np.all(np.abs(z[1]) > 5.0), z[1]
    assert ev.objective[0] < ev.objective[1]
    # the physiology check on the same traces: the truth passes it on every sweep, the wrong model fails it
    rec = problem.recording
    args = ([s.v_mV for s in rec.sweeps], [s.dt_ms for s in rec.sweeps])
    kw = dict(rest_end_ms=[s.rest_end_ms for s in rec.sweeps], prestep_ms=[prestep_window(s) for s in rec.sweeps])
    win = ([s.stim_start_ms for s in rec.sweeps], [s.stim_end_ms for s in rec.sweeps], AMPS)
    for row, expect in ((0, "ok"), (1, "fail")):
        doc = physiology_checks(*args, list(ev.v_mV[row]), ev.dt_ms, *win, **kw)
        status = [r["checks"]["prestep_deflection"]["status"] for r in doc["sweeps"]]
        assert status == [expect] * len(AMPS), (row, status)
        assert doc["cell"]["rest"]["status"] == "ok"


def test_rest_end_skips_an_early_test_pulse_and_keeps_a_nearby_prestep() -> None:
    """The resting baseline ends where the last >= 50 ms stretch at holding before the step ends: an Allen-style
    test pulse at the sweep's start is not in the way; a pre-step 20 ms before the step is part of the protocol."""
    from noble.io import Sweep

    dt = 0.05
    t = np.arange(int(2500 / dt)) * dt
    v = -70.0 + 0.1 * np.random.default_rng(0).standard_normal(len(t))
    i = np.where((t >= 10) & (t < 20), -50.0, 0.0) + np.where((t >= 1020) & (t < 2020), 100.0, 0.0)
    s = Sweep(v_mV=v, i_pA=i, dt_ms=dt, stim_amplitude_pA=100.0, stim_start_ms=1020.0, stim_end_ms=2020.0)
    assert s.rest_end_ms == pytest.approx(1020.0) and s.presteps() == [] and prestep_window(s) is None
    i2 = i + np.where((t >= 900) & (t < 1000), -100.0, 0.0)
    s2 = Sweep(v_mV=v, i_pA=i2, dt_ms=dt, stim_amplitude_pA=100.0, stim_start_ms=1020.0, stim_end_ms=2020.0)
    assert s2.rest_end_ms == pytest.approx(900.0) and prestep_window(s2) == pytest.approx((900.0, 1000.0))


def test_sag_and_rebound_features_see_the_h_current() -> None:
    """The fit's sag ratio and rebound of a hyperpolarising step: near 0 without I_h, clearly positive with it (the
    features that make g_h identifiable when `h_current` frees it)."""
    from noble.fit.api import FitConfig, _space, recording_sags
    from noble.fit.targets import sweep_features

    out = {}
    for g_h in (0.0, 0.1):
        rec = synthetic_recording({**TRUTH, "g_h": g_h}, [-100.0, 100.0], start_ms=50.0, duration_ms=300.0,
                                  tail_ms=200.0, noise_pA=0.0)
        f = sweep_features(rec)
        out[g_h] = (float(f["sag_ratio"][0]), float(f["rebound_mV"][0]))
        # h_current 'auto' frees g_h exactly where the recording sags
        sags, why = recording_sags(FitProblem.from_recording(rec), FitConfig().sag_threshold)
        assert sags == (g_h > 0), why
        assert ("g_h" in _space(FitConfig(h_current="auto"), TRUTH, False, sags).free) == (g_h > 0)
    assert out[0.0][0] < 0.02 and out[0.1][0] > 0.1, out
    assert out[0.0][1] < 0.5 and out[0.1][1] > 1.0, out


def test_rectification_sees_the_inward_rectifier_and_frees_g_Kir() -> None:
    """`kir_current` 'auto' frees g_Kir exactly where the steady-state deflections rectify: a fast-spiking cell with
    I_Kir (Mahon et al. 2000) moves 4x less per pA at -100 pA than at -25 pA; without it the ratio is near 1."""
    from noble.fit.api import FitConfig, _space, recording_rectifies

    fs = HH.preset_values("fast_spiking", {})
    for g_kir in (0.0, 0.5):
        rec = synthetic_recording({**fs, "g_Kir": g_kir}, [-100.0, -25.0, 100.0], start_ms=50.0, duration_ms=300.0,
                                  tail_ms=100.0, noise_pA=0.0)
        rectifies, why = recording_rectifies(FitProblem.from_recording(rec), FitConfig().rectification_threshold)
        ratio = float(why.rsplit(" ", 1)[-1])
        assert rectifies == (g_kir > 0), why
        assert (ratio > 1.3) if g_kir > 0 else (0.9 < ratio < 1.1), why
        assert ("g_Kir" in _space(FitConfig(), fs, False, False, rectifies).free) == (g_kir > 0)


def test_wide_spikes_free_the_gate_kinetics_and_high_troughs_are_seen() -> None:
    """`spike_kinetics` 'auto' frees phi_NaK where the recording's APs are wider than the family's at 36 C, and
    starts it at the factor the width asks for: a fast-spiking cell at phi_NaK 0.5 (hh2.mod's tadj ~7 C cooler)
    has ~1.5 ms APs and is freed near 0.5; the same cell at 1 (~0.8 ms) is not. The interspike-trough evidence
    (`persistent_sodium`) reads the recording's troughs between APs."""
    from noble.fit.api import FitConfig, interspike_trough, spike_half_width

    fs = HH.preset_values("fast_spiking", {})
    cfg = FitConfig()
    found = {}
    for phi in (1.0, 0.5):
        rec = synthetic_recording({**fs, "phi_NaK": phi}, [-50.0, 150.0, 250.0], start_ms=50.0, duration_ms=300.0,
                                  tail_ms=100.0, noise_pA=0.0)
        problem = FitProblem.from_recording(rec)
        wide, why, phi0 = spike_half_width(problem, cfg.half_width_range_ms)
        high, trough_why = interspike_trough(problem, cfg.trough_threshold_mV)
        found[phi] = (wide, phi0, float(trough_why.split(" mV")[0].rsplit(" ", 1)[-1]))
        assert wide == (phi < 1.0), why
        assert phi0 == pytest.approx(phi, rel=0.25), why
        assert not high, trough_why  # the fast-spiking preset's troughs are far below -50 mV
    assert found[0.5][2] < found[1.0][2] - 2.0, found  # slower Kd deactivation: deeper troughs
    # the warm starts move to that factor where they are at the published kinetics, and only there
    from noble.fit.api import _moved_from_default

    rows = np.stack([params_row(fs), params_row({**fs, "phi_NaK": 0.8})])
    base, moved = _moved_from_default(fs, rows, "phi_NaK", found[0.5][1])
    assert base["phi_NaK"] == found[0.5][1] and fs["phi_NaK"] == 1.0
    assert moved[:, IDX["phi_NaK"]].tolist() == [found[0.5][1], 0.8] and rows[0, IDX["phi_NaK"]] == 1.0


def test_spikes_peaking_above_the_family_reversal_free_e_na() -> None:
    """`sodium_reversal` 'auto' frees E_Na where the recording's APs peak above what the family's E_Na 50 mV allows
    (an AP cannot overshoot E_Na): the fast-spiking cell at E_Na 65 mV peaks above +49 mV and is freed, starting 8 mV
    above its highest peak (at most the search's 70 mV); the same cell at 50 mV (peaks +48 mV) is not."""
    from noble.fit.api import FitConfig, _space, spike_peak

    fs = HH.preset_values("fast_spiking", {})
    cfg = FitConfig()
    peaks = {}
    for e_na in (50.0, 65.0):
        rec = synthetic_recording({**fs, "E_Na": e_na}, [-50.0, 150.0, 250.0], start_ms=50.0, duration_ms=300.0,
                                  tail_ms=100.0, noise_pA=0.0)
        high, why, e_na0 = spike_peak(FitProblem.from_recording(rec), cfg.ap_peak_threshold_mV)
        peaks[e_na] = float(why.split(" mV")[0].rsplit(" ", 1)[-1])
        assert high == (e_na > 50.0), why
        assert peaks[e_na] < e_na and e_na0 is not None and e_na0 >= min(70.0, peaks[e_na] + 7.9), why  # (bounds)
    assert peaks[65.0] > peaks[50.0] + 8.0, peaks  # the overshoot follows the reversal
    assert "E_Na" in _space(FitConfig(), fs, False, extra_free=("E_Na",)).free


def test_spikes_that_start_high_widen_the_threshold_and_sodium_boxes() -> None:
    """`depolarised_spikes` 'auto' widens V_T's box (to -28 mV) and g_Na's (to 1 mS/cm2) where the recording's APs
    start above -30 mV: a fast-spiking cell with its threshold shifted to V_T -36 mV (onsets ~-25 mV, beyond what
    the default box's -42 reaches with the other parameters at their presets) is widened, the preset (onsets near
    -50 mV) is not; the widened box contains the cell and the default one does not."""
    from noble.fit.api import FitConfig, _space, spike_onset

    fs = HH.preset_values("fast_spiking", {})
    cfg = FitConfig()
    onsets = {}
    for v_t in (-57.9, -36.0):
        rec = synthetic_recording({**fs, "V_T": v_t}, [-50.0, 150.0, 300.0], start_ms=50.0, duration_ms=300.0,
                                  tail_ms=100.0, noise_pA=0.0)
        high, why = spike_onset(FitProblem.from_recording(rec), cfg.onset_threshold_mV)
        onsets[v_t] = float(why.split(" mV")[0].rsplit(" ", 1)[-1])
        assert high == (v_t > -42.0), why
    assert onsets[-36.0] > onsets[-57.9] + 15.0, onsets  # the onset follows V_T
    wide = _space(cfg, fs, False, depolarised=True)
    narrow = _space(cfg, fs, False)
    assert wide.bounds["V_T"][1] == -28.0 and wide.bounds["g_Na"][0] == 1.0
    assert narrow.bounds["V_T"][1] == -42.0 and narrow.bounds["g_Na"][0] == 5.0
    # a user's box still wins over the widened one
    assert _space(FitConfig(bounds={"V_T": (-60.0, -30.0)}), fs, False, depolarised=True).bounds["V_T"][:2] == (
        -60.0, -30.0)


@pytest.mark.parametrize("g_AHP, g_M, frees", [(0.2, 0.075, True), (0.0, 0.3, False), (0.0, 0.075, False)])
def test_a_cell_that_settles_below_a_weaker_silent_step_after_firing_frees_the_slow_ahp(
        g_AHP: float, g_M: float, frees: bool) -> None:
    """`ahp_current` 'auto' frees I_AHP (g_AHP, tau_AHP) where the recording, after its APs, settles at or below the
    steady state of a weaker step that did not fire, which a steady-state I-V of voltage-gated currents cannot give:
    a regular-spiking cell with I_AHP (1 AP at +100 pA, then 5 mV below the silent +50 pA step) is freed; the same
    cell adapting through a 4x I_M (1 AP, then above the +50 pA step's level) and the tonic preset are not."""
    from noble.fit.api import FitConfig, _space, settles_low_after_firing

    rs = HH.preset_values("regular_spiking", {})
    cell = {**rs, "g_AHP": g_AHP, "tau_AHP": 1000.0, "g_M": g_M}
    rec = synthetic_recording(cell, [-50.0, 50.0, 100.0, 150.0, 200.0], start_ms=50.0, duration_ms=400.0,
                              tail_ms=100.0, noise_pA=0.0)
    problem = FitProblem.from_recording(rec)
    settles, why = settles_low_after_firing(problem, FitConfig().settle_margin_mV)
    assert settles == frees, why
    t = problem.targets
    fired = t.feature_array("spike_count") > 0
    late, defl = t.feature_array("late_deflection_mV"), t.feature_array("deflection_mV")
    if frees:
        assert "+100 pA" in why and late[2] < defl[1] - 3.0, (late, defl)
    elif g_M > 0.1:  # it fires once and settles too, but above where the weaker silent step left it
        assert fired[2] and t.feature_array("last_spike_fraction")[2] < 0.5 and late[2] > defl[1] + 3.0, (late, defl)
    space = _space(FitConfig(), cell, False, extra_free=("g_AHP", "tau_AHP") if settles else ())
    assert {"g_AHP", "tau_AHP"} <= set(space.free) if frees else "g_AHP" not in space.free


@pytest.mark.parametrize("preset, g_T, frees", [("low_threshold_spiking", 0.4, True),
                                                ("low_threshold_spiking", 0.0, False),
                                                ("regular_spiking", 0.0, False)])
def test_a_cell_that_fires_after_a_hyperpolarising_step_frees_the_t_current(preset: str, g_T: float,
                                                                            frees: bool) -> None:
    """`t_current` 'auto' frees I_T (g_T, V_x) where the recording fires after a hyperpolarising step: the LTS
    preset's rebound AP after -100 pA (I_T de-inactivated below rest); the same cell without I_T and the
    regular-spiking preset do not rebound. The rebound count is 0 after -50 pA and undefined on depolarising steps."""
    from noble.fit.api import T_START, FitConfig, _space, rebounds_after_hyperpolarisation

    cell = HH.preset_values(preset, {"g_T": g_T})
    rec = synthetic_recording(cell, [-100.0, -50.0, 50.0, 100.0], start_ms=100.0, duration_ms=300.0,
                              tail_ms=200.0, noise_pA=0.0)
    problem = FitProblem.from_recording(rec)
    counts = problem.targets.feature_array("rebound_spike_count")
    assert counts[1] == 0 and np.isnan(counts[2:]).all(), counts
    assert (counts[0] >= 1) == frees, counts
    rebounds, why = rebounds_after_hyperpolarisation(problem)
    assert rebounds == frees, why
    if frees:
        assert "-100 pA" in why
    space = _space(FitConfig(), {**cell, **T_START}, False, extra_free=("g_T", "V_x") if rebounds else ())
    assert {"g_T", "V_x"} <= set(space.free) if frees else "g_T" not in space.free
