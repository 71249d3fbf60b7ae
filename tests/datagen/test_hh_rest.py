"""Every `hh` run starts at the steady state of its holding current (the stimulus' first value).

Before, a run started at v = E_leak and drifted to rest during the trace: in the first 100 ms at 0 pA the FS
preset moved by -1.0 mV, RS -1.6, IB -1.0 and LTS -5.7 mV (and LTS then back up by 1.3 mV over the next
second). Now a neuron with a stable steady state starts exactly there; one without (it fires at the holding
current) is settled for `HH.settle_ms` first, not recorded.

One group of 16 rows over 450 ms at stim_dt 0.1 ms (the shapes of test_hh.py / test_hh_neuron.py, so the
compiled code is shared): the four presets at 0 pA, at a -50 pA holding current, at a holding current they fire
at, and at 0 pA with a 150 pA step from 50 ms.
"""

from __future__ import annotations

import numpy as np
import pytest

from noble.datagen.models.hh import HH
from noble.datagen.simulate import simulate, steps_matrix

PRESETS = ["fast_spiking", "regular_spiking", "intrinsically_bursting", "low_threshold_spiking"]
TOTAL_MS, DT, STIM_DT = 450.0, 0.025, 0.1
FIRING_HOLD_PA = {"fast_spiking": 150.0, "regular_spiking": 200.0, "intrinsically_bursting": 150.0,
                  "low_threshold_spiking": 100.0}
STEP_START, STEP_PA = 50.0, 150.0
CONDITIONS = ["rest", "hyperpolarised", "firing", "step"]


def _rows() -> tuple[np.ndarray, np.ndarray]:
    names = HH.param_names()
    params, stims = [], []
    T = int(round(TOTAL_MS / STIM_DT))
    for p in PRESETS:
        row = [HH.preset_values(p)[k] for k in names]
        for cond in CONDITIONS:
            params.append(row)
            if cond == "step":
                stims.append(steps_matrix(np.array([STEP_PA]), STEP_START, TOTAL_MS, TOTAL_MS, STIM_DT)[0])
            else:
                stims.append(np.full(T, {"rest": 0.0, "hyperpolarised": -50.0, "firing": FIRING_HOLD_PA[p]}[cond]))
    return np.array(params), np.array(stims)


def _k(preset: str, cond: str) -> int:
    return PRESETS.index(preset) * len(CONDITIONS) + CONDITIONS.index(cond)


@pytest.fixture(scope="module")
def run():
    params, stim = _rows()
    res = simulate(HH, params, stim, stim_dt_ms=STIM_DT, duration_ms=TOTAL_MS, dt_ms=DT, record_dt_ms=0.1)
    return params, stim, res


@pytest.mark.parametrize("preset", PRESETS)
def test_no_drift_at_rest(run, preset):
    """At 0 pA the trace starts at the steady state and stays there: |v(100 ms) - v(0)| < 0.2 mV (it was 1-6 mV)."""
    params, _, res = run
    v = res.v_mV[_k(preset, "rest")].astype(float)
    state, at_rest = HH.steady_state(params[_k(preset, "rest")][None], 0.0)
    assert at_rest[0]
    assert v[0] == pytest.approx(state["v"][0], abs=1e-3)
    assert v[0] < HH.preset_values(preset)["E_leak"] - 0.5  # the rest is not E_leak, where runs used to start
    assert abs(v[1000] - v[0]) < 0.2
    assert np.max(np.abs(v - v[0])) < 0.01 and len(res.spike_times_ms[_k(preset, "rest")]) == 0


@pytest.mark.parametrize("preset", PRESETS)
def test_a_holding_current_sets_the_start(run, preset):
    """At a constant -50 pA the trace starts at that current's steady state (below the 0 pA rest), no drift."""
    params, _, res = run
    v = res.v_mV[_k(preset, "hyperpolarised")].astype(float)
    state, at_rest = HH.steady_state(params[_k(preset, "hyperpolarised")][None], -50.0)
    assert at_rest[0] and v[0] == pytest.approx(state["v"][0], abs=1e-3)
    assert v[0] < res.v_mV[_k(preset, "rest"), 0] - 2.0
    assert np.max(np.abs(v - v[0])) < 0.01


@pytest.mark.parametrize("preset", PRESETS)
def test_neurons_firing_at_their_holding_current_are_settled_not_broken(run, preset):
    """No stable steady state at the holding current: the group was run for HH.settle_ms first, so the trace
    is already firing at t = 0 (first spike within the first 100 ms, no silent start) and stays finite."""
    params, _, res = run
    k = _k(preset, "firing")
    assert not HH.steady_state(params[k][None], FIRING_HOLD_PA[preset])[1][0]
    s = res.spike_times_ms[k]
    assert np.all(np.isfinite(res.v_mV[k]))
    assert len(s) >= 3 and 0.0 <= s[0] < 100.0, s[:5]
    if preset == "fast_spiking":  # little adaptation: on its limit cycle from the first interval on
        isi = np.diff(s)
        assert np.max(np.abs(isi - isi[-1])) < 0.02 * isi[-1], isi


def test_the_run_in_shifts_neither_stimulus_nor_spikes(run):
    """Rows at rest are not moved by another row's run-in: the same step responses, sample for sample and
    spike for spike, in a group that needs no run-in (every row at rest at t = 0)."""
    params, stim, res = run
    quiet = stim.copy()
    firing = [_k(p, "firing") for p in PRESETS]
    quiet[firing] = 0.0
    ref = simulate(HH, params, quiet, stim_dt_ms=STIM_DT, duration_ms=TOTAL_MS, dt_ms=DT, record_dt_ms=0.1)
    for p in PRESETS:
        k = _k(p, "step")
        np.testing.assert_allclose(res.v_mV[k], ref.v_mV[k], atol=1e-3)
        assert len(res.spike_times_ms[k]) == len(ref.spike_times_ms[k]) > 0
        np.testing.assert_allclose(res.spike_times_ms[k], ref.spike_times_ms[k], atol=1e-6)
        assert res.spike_times_ms[k][0] > STEP_START  # the step starts at 50 ms in the trace, not in the run-in
    explicit = simulate(HH, params, quiet, stim_dt_ms=STIM_DT, duration_ms=TOTAL_MS, dt_ms=DT, record_dt_ms=0.1,
                        settle_ms=300.0)  # a run-in of rows at rest changes nothing
    np.testing.assert_allclose(explicit.v_mV, ref.v_mV, atol=1e-3)
