"""A cell whose pre-step baseline drifts over the protocol (a bias current the command does not show): with
`sweep_bias` the model holds each sweep at its own baseline by a bias solved from its steady-state I-V, and
reproduces the sweeps the unbiased model cannot."""

from __future__ import annotations

import numpy as np

from noble.datagen.models.hh import HH
from noble.fit.api import FitConfig, _space
from noble.fit.hhmodel import IDX, params_row, pin_rest
from noble.fit.objective import FitProblem
from noble.fit.solver import candidates

from _synth import synthetic_recording  # tests/fit is on sys.path (pytest rootdir-relative import)

AMPS_PA = [-50.0, 60.0, 200.0]
BIAS_PA = [0.0, -15.0, -30.0]  # the larger steps come later and leave the cell hyperpolarised


def test_each_sweep_is_held_at_its_own_baseline_by_the_bias_the_cell_had() -> None:
    truth = dict(HH.preset_values("fast_spiking"))
    rec = synthetic_recording(truth, AMPS_PA, start_ms=300.0, duration_ms=300.0, tail_ms=100.0, noise_pA=0.0,
                              bias_pA=BIAS_PA)
    problem = FitProblem.from_recording(rec)
    base = np.asarray(problem.targets.baseline_mV)
    assert base[0] - base[2] > 5.0  # the drift the fit sees (its 'auto' threshold)
    row = params_row(truth)[None]
    assert problem.sweep_bias_pA(row) is None  # off unless asked
    problem.sweep_bias = True
    # relative to the median sweep (-15 pA): +15, 0, -15 pA, from the model's own I-V (nearly linear here)
    np.testing.assert_allclose(problem.sweep_bias_pA(row)[0], np.subtract(BIAS_PA, np.median(BIAS_PA)), atol=1.5)
    # the truth, pinned to the median rest, reproduces every sweep's baseline and its spikes
    pinned = pin_rest(row, problem.targets.rest_mV)[0]
    ev = problem.evaluate(pinned, 0.025)
    model_base = ev.features["v_rest_mV"][0]
    np.testing.assert_allclose(model_base, problem.targets.feature_array("v_rest_mV"), atol=0.5)
    np.testing.assert_array_equal(ev.features["spike_count"][0], problem.targets.feature_array("spike_count"))
    problem.sweep_bias = False
    off = problem.evaluate(pinned, 0.025).features["v_rest_mV"][0]
    assert np.max(np.abs(off - problem.targets.feature_array("v_rest_mV"))) > 2.0  # unbiased: the drift is missed


def test_the_area_is_solved_from_each_sweeps_own_baseline() -> None:
    truth = dict(HH.preset_values("fast_spiking"))
    rec = synthetic_recording(truth, [-60.0, -30.0, 150.0], start_ms=300.0, duration_ms=300.0, tail_ms=100.0,
                              noise_pA=0.0, bias_pA=[0.0, -20.0, -40.0])
    problem = FitProblem.from_recording(rec)
    problem.sweep_bias = True
    points = problem.subthreshold_points
    assert [pt[0] for pt in points] == [-60.0, -30.0]
    assert [pt[2] for pt in points] == problem.targets.baseline_mV[:2]
    wrong = {**truth, "diam_um": 1.6 * truth["diam_um"]}
    space = _space(FitConfig(), wrong, False, area_points=points)
    p = candidates(space, space.to_unit(wrong), problem.targets.rest_mV)
    assert abs(p[0, IDX["diam_um"]] / truth["diam_um"] - 1.0) < 0.05
