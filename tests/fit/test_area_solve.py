"""The membrane area solved from the recorded subthreshold steady states (`FitConfig.input_resistance` 'solve'):
each passive step (and pre-step) is a point on the cell's steady-state I-V curve; the densities shape that curve
and the area only scales it, so the area that puts the model's steady states on the recorded ones is closed
form. Synthetic cells of known diameter (noise-free Brian2 steps), candidates started 1.7x too large in diameter."""

from __future__ import annotations

import numpy as np
import pytest

from noble.datagen.models import get as get_family
from noble.fit.api import FitConfig, _space, free_parameters, solved_area_at_edge
from noble.fit.hhmodel import IDX
from noble.fit.objective import FitProblem
from noble.fit.solver import candidates

from _synth import synthetic_recording  # tests/fit is on sys.path (pytest rootdir-relative import)

HH = get_family("hh")


@pytest.mark.parametrize("preset, extra", [("regular_spiking", {}), ("fast_spiking", {"g_Kir": 0.5}),
                                           ("fast_spiking", {"g_h": 0.05})])
def test_the_solved_area_is_the_cells_and_the_deflections_follow(preset: str, extra: dict[str, float]) -> None:
    truth = {**HH.preset_values(preset, {}), **extra}
    amps = [-100.0, -50.0, -20.0, 20.0, 150.0]
    rec = synthetic_recording(truth, amps, start_ms=100.0, duration_ms=400.0, tail_ms=100.0, noise_pA=0.0)
    problem = FitProblem.from_recording(rec)
    points = problem.subthreshold_points
    assert [pt[0] for pt in points] == [-100.0, -50.0, -20.0, 20.0]  # the spiking +150 pA step is no steady state
    assert all(np.isnan(pt[2]) for pt in points)  # unbiased sweeps: the model's steady state meets the command alone
    wrong = {**truth, "diam_um": 1.7 * truth["diam_um"]}
    space = _space(FitConfig(), wrong, False, "g_h" in extra, "g_Kir" in extra, (), points)
    assert "diam_um" not in space.free and space.area_points == points
    assert {"name": "diam_um", "transform": "solved"}.items() <= free_parameters(space, True)[-2].items()
    p = candidates(space, space.to_unit(wrong), problem.targets.rest_mV)
    assert p[0, IDX["diam_um"]] == pytest.approx(truth["diam_um"], rel=0.01)
    # the steady-state deflections of the solved model are the recorded ones (within the checks' 2 mV)
    ev = problem.evaluate(p, 0.025)
    defl = problem.targets.feature_array("deflection_mV")
    model = ev.features["deflection_mV"][0]
    passive = [k for k in range(len(amps)) if problem.is_passive_step(k)]
    np.testing.assert_allclose(model[passive], defl[passive], atol=0.5)


def test_the_area_is_searched_without_a_passive_step_or_when_asked() -> None:
    fs = HH.preset_values("fast_spiking", {})
    # a protocol without hyperpolarising steps: its passive depolarising step is the point; without one, none
    rec = synthetic_recording(fs, [20.0, 150.0], start_ms=50.0, duration_ms=200.0, tail_ms=50.0, noise_pA=0.0)
    assert [pt[0] for pt in FitProblem.from_recording(rec).subthreshold_points] == [20.0]
    rec = synthetic_recording(fs, [150.0, 250.0], start_ms=50.0, duration_ms=200.0, tail_ms=50.0, noise_pA=0.0)
    assert FitProblem.from_recording(rec).subthreshold_points == ()
    assert "diam_um" in _space(FitConfig(), fs, False).free  # no points: nothing to solve from
    pts = ((-50.0, -80.0),)
    assert "diam_um" in _space(FitConfig(input_resistance="search"), fs, False, area_points=pts).free
    assert _space(FitConfig(input_resistance="search"), fs, False, area_points=pts).area_points == ()


def test_the_area_solve_is_exact_on_the_steady_state_i_v_with_a_leak_shift() -> None:
    """Without a simulation: a pacemaker's candidate (E_leak pinned at its median voltage, then shifted by +8 mV,
    a depolarising bias) whose steady states under I_k are found by `resting_potential` with I_k as an E_leak shift
    (I / (g_leak A)); the area solved from those points is the true one, for any starting diameter."""
    from noble.fit.hhmodel import params_row, pin_rest, resting_potential, solve_area

    true_diam = 41.0
    row = params_row({**HH.preset_values("fast_spiking", {}), "g_Kir": 0.3, "diam_um": true_diam})
    p, _ok = pin_rest(row[None], -60.0)
    p[:, IDX["E_leak"]] += 8.0
    area_cm2 = np.pi * (true_diam * 1e-4) ** 2
    points = []
    for amp in (-100.0, -60.0, -30.0):
        q = p.copy()
        q[:, IDX["E_leak"]] += amp * 1e-6 / (q[0, IDX["g_leak"]] * area_cm2)  # pA -> uA over mS/cm2 x cm2
        v, stable = resting_potential(q, lo_mV=-130.0, step_mV=0.01)
        assert stable[0]
        points.append((amp, float(v[0])))
    for start in (15.0, 41.0, 150.0):
        wrong = p.copy()
        wrong[:, IDX["diam_um"]] = start
        solved, ok = solve_area(wrong, points)
        assert ok[0] and solved[0, IDX["diam_um"]] == pytest.approx(true_diam, rel=2e-3)
        np.testing.assert_array_equal(np.delete(solved[0], IDX["diam_um"]), np.delete(wrong[0], IDX["diam_um"]))
    # as FitProblem.subthreshold_points gives them for unbiased sweeps (no start: NaN), the same; measured from
    # the rest instead (where a shifted model has a net inward current), the area is wrong: the stop-31 regression
    # that left 17o05028's hyperpolarising steps 30-50 % short
    unbiased = [(a, v, np.nan) for a, v in points]
    assert solve_area(p, unbiased)[0][0, IDX["diam_um"]] == pytest.approx(true_diam, rel=2e-3)
    from_rest = [(a, v, -60.0) for a, v in points]
    assert abs(solve_area(p, from_rest)[0][0, IDX["diam_um"]] / true_diam - 1.0) > 0.1


def test_a_solved_area_at_the_families_edge_is_said() -> None:
    """Densities far too leaky for a 7 GOhm cell ask for a cell below 5 um: the fit says so."""
    from noble.fit.hhmodel import params_row, pin_rest, solve_area

    fs = HH.preset_values("fast_spiking", {})
    row, _ok = pin_rest(params_row({**fs, "g_leak": 0.5})[None], -60.0)
    points = ((-10.0, -130.0),)  # 70 mV for 10 pA: 7 GOhm
    space = _space(FitConfig(), fs, False, area_points=points)
    solved, ok = solve_area(row, points)
    assert ok[0] and solved[0, IDX["diam_um"]] == HH.param_spec("diam_um").low
    assert "smallest diameter" in solved_area_at_edge(space, solved[0])
    assert solved_area_at_edge(space, params_row(fs)) is None  # 56.9 um: inside the range
