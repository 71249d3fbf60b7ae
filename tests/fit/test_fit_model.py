"""The fit's model layer and objective: steady-state start, rest pinning (and the bias-current equivalence
it relies on), the unit-cube parameter space, Huber scoring, and the surrogate stage's soft spike features."""

from __future__ import annotations

import math
import types

import numpy as np
import pytest

from noble.datagen.models import get as get_family
from noble.datagen.simulate import simulate
from noble.fit.hhmodel import (HHFit, IDX, NAMES, ParamSpace, equivalent_bias_pA, params_row, pin_rest,
                               resting_potential, split_holding)
from noble.fit.objective import huber

HH = get_family("hh")


def test_pinned_rest_is_the_steady_state_and_a_bias_current_is_an_E_leak_shift() -> None:
    presets = sorted(HH.presets)
    rows = np.stack([params_row(HH.preset_values(p)) for p in presets])
    pinned, ok = pin_rest(rows, -60.0)
    assert ok.all()
    v0, stable = resting_potential(pinned)
    np.testing.assert_allclose(v0, -60.0, atol=0.05)
    assert stable.all()
    # Brian2: (a) pinned FS and RS from their steady state stay at -60 mV with no input (no start transient);
    # (b) the FS preset with a 30 pA holding current == the FS preset with E_leak shifted by the equivalent.
    fs = rows[presets.index("fast_spiking")]
    area_cm2 = math.pi * (fs[IDX["diam_um"]] * 1e-4) ** 2
    g_nS = fs[IDX["g_leak"]] * area_cm2 * 1e6  # mS/cm^2 x cm^2 -> nS
    shifted = fs.copy()
    shifted[IDX["E_leak"]] += 30.0 / g_nS  # pA / nS = mV
    assert equivalent_bias_pA(shifted[None], fs[IDX["E_leak"]])[0] == pytest.approx(30.0, rel=1e-9)
    # an effective E_leak beyond the family's range is simulated as the range edge plus that holding current
    beyond = fs.copy()
    beyond[IDX["E_leak"]] = -30.0
    legal, holding = split_holding(beyond[None])
    assert legal[0, IDX["E_leak"]] == HH.param_spec("E_leak").high
    assert holding[0] == pytest.approx(equivalent_bias_pA(beyond[None], HH.param_spec("E_leak").high)[0], rel=1e-9)
    assert holding[0] == pytest.approx(g_nS * 10.0, rel=1e-9)
    params = np.stack([pinned[presets.index("fast_spiking")], pinned[presets.index("regular_spiking")], fs, shifted])
    T = 3000  # 300 ms at 0.1 ms
    stim = np.zeros((4, T))
    stim[2] = 30.0
    res = simulate(HHFit, params, stim, stim_dt_ms=0.1, duration_ms=300.0, dt_ms=0.025, record_dt_ms=0.1)
    assert np.max(np.abs(res.v_mV[:2] + 60.0)) < 0.05
    # the held cell starts at its unheld rest and relaxes to where the shifted-E_leak cell sits from t = 0
    assert np.ptp(res.v_mV[3]) < 0.01
    assert float(res.v_mV[2, 0]) < float(res.v_mV[3, 0]) - 4.0
    assert abs(float(res.v_mV[2, -1]) - float(res.v_mV[3, -1])) < 0.05


def test_param_space_round_trip_and_bounds() -> None:
    base = HH.preset_values("regular_spiking")
    space = ParamSpace(free=("diam_um", "g_leak", "V_T", "tau_max"), base=base)
    u = space.to_unit(base)
    assert u.shape == (1, 4) and np.all((u >= 0) & (u <= 1))
    back = space.from_unit(u)[0]
    np.testing.assert_allclose(back, params_row(base), rtol=1e-12)
    corners = space.from_unit(np.array([[0, 0, 0, 0], [1, 1, 1, 1]], dtype=float))
    HH.check_params(corners)  # the fit box lies inside the family's ranges (round-off included)
    lo, hi = corners
    assert lo[IDX["diam_um"]] == 10.0 and hi[IDX["tau_max"]] == 5000.0
    # log scale: the middle of the cube is the geometric mean
    mid = space.from_unit(np.full((1, 4), 0.5))[0]
    assert mid[IDX["g_leak"]] == pytest.approx(math.sqrt(0.003 * 0.5))
    fixed = [n for n in NAMES if n not in space.free]
    np.testing.assert_array_equal(mid[[IDX[n] for n in fixed]], params_row(base)[[IDX[n] for n in fixed]])
    with pytest.raises(ValueError, match="unknown hh parameter"):
        ParamSpace(free=("g_foo",), base=base)


def test_a_fits_search_box_can_be_replaced_within_the_familys_range() -> None:
    """FitConfig.bounds widens or narrows a box (a cell firing from a depolarised plateau needs V_T above the
    default -42 mV); a box outside hh's range, or for a parameter without one, is refused naming it."""
    from pydantic import ValidationError

    from noble.fit.api import FitConfig, search_bounds

    cfg = FitConfig(bounds={"V_T": (-72.0, -28.0), "g_Na": (10.0, 100.0)})
    b = search_bounds(cfg)
    assert b["V_T"] == (-72.0, -28.0, False) and b["g_Na"] == (10.0, 100.0, True)
    assert b["g_Kd"] == search_bounds(FitConfig())["g_Kd"]  # the others keep their defaults
    space = ParamSpace(free=("V_T", "g_Na"), base=HH.preset_values("fast_spiking"), bounds=b)
    top = space.from_unit(np.ones((1, 2)))[0]
    assert top[IDX["V_T"]] == pytest.approx(-28.0) and top[IDX["g_Na"]] == pytest.approx(100.0)
    HH.check_params(top[None, :])  # the widened box is a model the family runs
    with pytest.raises(ValidationError, match=r"bounds\['V_T'\].*-75.0..-25.0"):
        FitConfig(bounds={"V_T": (-72.0, -10.0)})
    with pytest.raises(ValidationError, match="no search box for 'cm'"):
        FitConfig(bounds={"cm": (0.5, 2.0)})
    with pytest.raises(ValidationError, match="log scale"):
        FitConfig(bounds={"g_M": (0.0, 1.0)})


def test_huber_is_quadratic_then_linear_and_continuous() -> None:
    z = np.array([-10.0, -3.0, -1.0, 0.0, 2.0, 3.0, 3.0001, 8.0])
    r = huber(z, 3.0)
    np.testing.assert_allclose(r[[2, 3, 4, 5]], [1.0, 0.0, 4.0, 9.0])
    assert r[6] == pytest.approx(9.0, abs=1e-3)  # continuous at c
    assert r[7] == pytest.approx(2 * 3 * 8 - 9) and r[0] == pytest.approx(2 * 3 * 10 - 9)


def test_soft_cap_keeps_far_terms_pulling_and_bounded() -> None:
    """Beyond z_cap a term still grows with |z| (a fit far off on one feature is pulled back, where a clip was
    flat) but never past 2 z_cap, the score a diverged candidate gets on every term."""
    from noble.fit.objective import soft_cap

    z = np.array([-1e9, -200.0, -60.0, -50.0, -3.0, 0.0, 3.0, 50.0, 50.001, 60.0, 200.0, 1e9])
    out = soft_cap(z, 50.0)
    np.testing.assert_array_equal(out[3:8], z[3:8])  # unchanged up to the cap
    assert out[8] == pytest.approx(50.001, abs=1e-6)  # continuous (slope 1) at the cap
    pos = out[7:]
    assert np.all(np.diff(pos[:-1]) > 0) and pos[-1] <= 100.0 and pos[-2] > 99.0  # monotone, saturating at 2 cap
    np.testing.assert_allclose(soft_cap(-z, 50.0), -out)  # odd: an overshoot and an undershoot cost the same


def test_soft_spike_count_and_latency_match_hard_ones() -> None:
    """The surrogate stage's differentiable features on traces with known spikes."""
    torch = pytest.importorskip("torch")
    from noble.fit.surrogate_stage import SurrogateStageConfig, _Objective, _Targets

    dt, T, onset = 0.2, 3000, 100.0
    cfg = types.SimpleNamespace(
        feature_names=["I_thr_pA"], feature_units=["pA"], feature_ranges={"I_thr_pA": (0.0, 1.0)},
        dt_ms=dt, n_time=T, stimulus=types.SimpleNamespace(start_ms=onset, duration_ms=400.0))
    sur = types.SimpleNamespace(config=cfg, step_stimulus=lambda a: np.full(T, float(a), np.float32), device="cpu")
    t = np.arange(T) * dt
    spikes = {0: [], 1: [137.3], 2: [120.1, 250.0, 401.7]}  # the last one starts inside, 401.7 < 500 window
    v = np.full((3, T), -65.0)
    for k, times in spikes.items():
        for ts in times:
            v[k] += 100.0 * np.exp(-0.5 * ((t - ts) / 0.4) ** 2)
    tg = _Targets(amps=np.array([50.0, 100.0, 200.0]), window_ms=np.array([300.0, 300.0, 400.0]),
                  count=np.array([0.0, 1.0, 3.0]), latency_ms=np.array([300.0, 37.3, 20.1]),
                  deflection_mV=np.full(3, np.nan), mean_v_mV=np.zeros(3), rest_mV=-65.0, sd_count=1.0,
                  sd_latency=1.0, sd_rest=1.0)
    obj = _Objective(sur, tg, SurrogateStageConfig())
    chi2, z = obj.chi2_terms(torch.tensor(v[None], dtype=torch.float32))
    z = z[0].numpy()
    # z = [count residuals (3), latency residuals (3), window-mean voltage (3), rest (1)], sds 1 (mean: 2 mV)
    np.testing.assert_allclose(z[:3], 0.0, atol=0.05)
    np.testing.assert_allclose(z[3:6], 0.0, atol=1.5)  # latency to within ~ a spike upstroke (ms)
    win = [(t >= onset) & (t < onset + w) for w in (300.0, 300.0, 400.0)]
    np.testing.assert_allclose(z[6:9], [v[k][win[k]].mean() / 2.0 for k in range(3)], rtol=1e-4)
    assert abs(z[9]) < 1e-3
    # and a trace missing its spike is scored as missing one spike, late by the rest of the window
    chi2b, zb = obj.chi2_terms(torch.tensor(v[[0, 0, 2]][None], dtype=torch.float32))
    assert zb[0, 1].item() == pytest.approx(-1.0, abs=0.05) and zb[0, 4].item() == pytest.approx(300 - 37.3, abs=1.5)


def test_settling_run_in_is_cut_exactly() -> None:
    """The run-in before each sweep (for spontaneously active cells) is discarded on the record grid: a model
    at its stable rest gives the same traces with and without it, step onset and spikes included."""
    from noble.fit.objective import FitProblem, ObjectiveConfig

    from _synth import synthetic_recording

    HH = get_family("hh")
    truth = HH.preset_values("fast_spiking")
    rec = synthetic_recording(truth, [-40, 300], start_ms=60.0, duration_ms=120.0, tail_ms=40.0, noise_pA=0.0)
    plain = FitProblem.from_recording(rec, ObjectiveConfig(pre_ms=50.0, tail_ms=30.0))
    assert not plain.targets.spontaneously_active and plain.settle_ms == 0.0
    settled = FitProblem.from_recording(rec, ObjectiveConfig(pre_ms=50.0, tail_ms=30.0, settle_ms=200.0))
    row = params_row(truth)[None]
    hint = np.array([truth["E_leak"]])
    a, dt_a = plain.simulate(row, 0.05, v_hint_mV=hint)
    b, dt_b = settled.simulate(row, 0.05, v_hint_mV=hint)
    assert dt_a == dt_b and a.shape == b.shape
    assert plain.measure(a, dt_a)[0]["spike_count"][0, 1] >= 3  # the 300 pA step fires
    np.testing.assert_allclose(b, a, atol=1e-3)


def _pacemaker_recording(params: dict[str, float], amps: list[float], lead_ms: list[float], *, start_ms: float,
                         duration_ms: float, tail_ms: float, dt_ms: float = 0.05):
    """Steps on a spontaneously firing model, each sweep recorded after its own lead time at 0 pA (so each
    catches the pacemaker at a different phase), like a recording of a pacemaking cell."""
    from noble.datagen.simulate import steps_matrix
    from noble.io import Recording, Sweep

    total = max(lead_ms) + start_ms + duration_ms + tail_ms
    rows = [steps_matrix(np.array([a]), lead + start_ms, duration_ms, total, dt_ms)[0]
            for a, lead in zip(amps, lead_ms)]
    res = simulate(HHFit, np.repeat(params_row(params)[None], len(amps), axis=0), np.stack(rows), stim_dt_ms=dt_ms,
                   duration_ms=total, dt_ms=0.025, record_dt_ms=dt_ms)
    n = int(round((start_ms + duration_ms + tail_ms) / dt_ms))
    sweeps = []
    for k, (a, lead) in enumerate(zip(amps, lead_ms)):
        i0 = int(round(lead / dt_ms))
        sweeps.append(Sweep(v_mV=res.v_mV[k, i0:i0 + n].astype(np.float64), i_pA=rows[k][i0:i0 + n], dt_ms=dt_ms,
                            stim_amplitude_pA=float(a), stim_start_ms=start_ms, stim_end_ms=start_ms + duration_ms,
                            index=k))
    return Recording(sweeps, source="synthetic-pacemaker", format="memory", cell="synthetic")


def test_phase_alignment_reproduces_a_pacemakers_latencies() -> None:
    """A pacemaker's first spike in a small step is the rest of its current cycle. Simulated with its own
    parameters and each sweep started at the recording's phase (its last pre-step spike), the model reproduces
    every sweep's first-spike latency and spike count; with a plain run-in (arbitrary phase) it does not."""
    from noble.fit.objective import FitProblem, ObjectiveConfig

    truth = HH.preset_values("fast_spiking")
    truth["E_leak"] = -45.0  # fires on its own every ~170 ms
    truth["diam_um"] = 67.0  # the size the 10 and 20 pA steps were chosen for (the preset's was 67 um then)
    amps = [0.0, 0.0, 10.0, 20.0]
    rec = _pacemaker_recording(truth, amps, [400.0, 470.0, 530.0, 610.0], start_ms=200.0, duration_ms=300.0,
                               tail_ms=50.0)
    row = params_row(truth)[None]
    out = {}
    for align in (True, False):
        prob = FitProblem.from_recording(rec, ObjectiveConfig(pre_ms=190.0, tail_ms=40.0, settle_ms=300.0,
                                                              phase_align=align))
        assert prob.targets.spontaneously_active
        if align:
            prob_aligned = prob
        v, dt = prob.simulate(row, 0.025)
        out[align] = prob.measure(v, dt)[0]
    data_lat = prob.targets.feature_array("first_spike_latency_ms")
    data_n = prob.targets.feature_array("spike_count")
    assert np.all(data_lat > 15.0)  # every step's first spike waits for the cycle, not an evoked latency
    assert len(set(np.round(data_lat[:2]))) == 2  # the two 0 pA sweeps are at different phases
    np.testing.assert_allclose(out[True]["first_spike_latency_ms"][0], data_lat, atol=0.3)
    np.testing.assert_array_equal(out[True]["spike_count"][0], data_n)
    assert np.max(np.abs(out[False]["first_spike_latency_ms"][0] - data_lat)) > 10.0
    # aligned, a latency varies only with the ISI jitter: CV x the interval from the last pre-step spike (no
    # sweep here has the 3 spikes an ISI CV needs: the 5 % default)
    jitter = prob_aligned.phase_aligned_latency_sd()
    assert sorted(jitter) == [0, 1, 2, 3]
    last = np.array(prob_aligned.prestep_spike_ms, dtype=float)
    interval = data_lat + 190.0 - last
    assert np.all((interval > 100.0) & (interval < 200.0))  # one cycle of the ~170 ms pacemaker, step-shortened
    np.testing.assert_allclose([jitter[k] for k in range(4)], 0.05 * interval)


def test_leak_shift_is_a_bias_on_top_of_the_pinned_rest() -> None:
    """The spontaneously-active coordinate shifts E_leak from its pinned value: exactly a holding current
    g_leak A x shift (monotone in excitability), the other parameters untouched."""
    from noble.fit.solver import candidates

    base = HH.preset_values("fast_spiking")
    space = ParamSpace(base=base, leak_shift_mV=(-10.0, 30.0))
    assert space.names[-1] == "leak_shift_mV" and space.dim == len(space.free) + 1
    u = np.repeat(space.to_unit(base), 3, axis=0)
    assert space.leak_shifts(u)[0] == pytest.approx(0.0)
    u[1, -1], u[2, -1] = 25.0 / 40.0, 1.0  # shifts +15 and +30 mV
    rows = candidates(space, u, -60.0)
    pinned, _ = pin_rest(rows[:1], -60.0)
    assert rows[0, IDX["E_leak"]] == pytest.approx(pinned[0, IDX["E_leak"]])
    np.testing.assert_allclose(rows[1:, IDX["E_leak"]] - rows[0, IDX["E_leak"]], [15.0, 30.0], atol=1e-9)
    others = [k for k in range(len(NAMES)) if k != IDX["E_leak"]]
    np.testing.assert_array_equal(rows[1:, others], np.repeat(rows[:1, others], 2, axis=0))
    bias = equivalent_bias_pA(rows, rows[0, IDX["E_leak"]])
    area_cm2 = math.pi * (rows[0, IDX["diam_um"]] * 1e-4) ** 2
    np.testing.assert_allclose(bias, rows[0, IDX["g_leak"]] * area_cm2 * 1e6 * np.array([0.0, 15.0, 30.0]))


def test_a_pacemakers_deflection_is_fitted_on_hyperpolarising_steps_only() -> None:
    """A spontaneously active cell's baseline is its firing cycle's median: a silent depolarising step's
    'deflection' from it is no passive property, but a hyperpolarising step silences the cell and its
    steady-state deflection is its input resistance (a fit without it ended 20x too leaky on 17o05028)."""
    from noble.fit.objective import FitProblem, ObjectiveConfig

    truth = HH.preset_values("fast_spiking")
    truth["E_leak"] = -45.0  # fires on its own every ~170 ms
    truth["diam_um"] = 30.0  # small: a few tens of pA move it by tens of mV
    rec = _pacemaker_recording(truth, [-40.0, -20.0, 0.0, 10.0], [400.0, 470.0, 530.0, 610.0], start_ms=200.0,
                               duration_ms=300.0, tail_ms=50.0)
    prob = FitProblem.from_recording(rec, ObjectiveConfig(pre_ms=190.0, tail_ms=40.0, settle_ms=300.0))
    assert prob.targets.spontaneously_active
    defl = prob.targets.feature_array("deflection_mV")
    assert defl[0] < defl[1] < -5.0  # silenced, deeper with more current
    with_term = sorted(label for label, name in prob.term_labels if name == "deflection_mV")
    assert with_term == ["sweep 0 (-40 pA)", "sweep 1 (-20 pA)"]
