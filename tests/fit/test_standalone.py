"""The search's compiled runs (noble/fit/standalone.py) give the runtime's traces: same parameters, start states
and stimuli through command-line run args, re-run without recompiling, shapes compiled only once they repeat."""

from __future__ import annotations

import os

import numpy as np
import pytest

from noble.datagen.simulate import simulate
from noble.fit.hhmodel import IDX, NAMES, HHFit
from noble.fit.standalone import BuildHorizon, StandaloneRunner
from noble.datagen.models import get

DT_MS = 0.05
T_MS = 200.0


def _preset(name: str, n: int) -> np.ndarray:
    values = get("hh").preset_values(name)
    return np.repeat(np.array([values[k] for k in NAMES], dtype=np.float64)[None], n, axis=0)


def _steps(amps_pA: list[float]) -> np.ndarray:
    stim = np.zeros((len(amps_pA), int(round(T_MS / DT_MS))))
    stim[:, int(40 / DT_MS):int(160 / DT_MS)] = np.asarray(amps_pA)[:, None]
    return stim


@pytest.fixture(scope="module")
def runner() -> StandaloneRunner:
    r = StandaloneRunner(compile_after=2)
    if r.disabled:
        pytest.fail("no C++ compiler or make: cpp_standalone cannot be tested")
    return r


def test_a_repeated_shape_is_compiled_and_reruns_new_values_as_the_runtime_does(runner: StandaloneRunner) -> None:
    stim = _steps([-40.0, 60.0, 250.0])
    fs = _preset("fast_spiking", 3)
    fs[:, IDX["g_D"]] = 0.05  # an optional current on: its gates are state variables the binary must start right
    assert runner.run(HHFit, fs, stim, T_MS, DT_MS, DT_MS) is None  # first use: the runtime's
    rs = _preset("regular_spiking", 3)
    rs[:, IDX["g_D"]] = 0.05
    for params in (fs, rs, fs * np.where(np.arange(len(NAMES)) == IDX["g_Kd"], 1.5, 1.0)):
        got = runner.run(HHFit, params, stim, T_MS, DT_MS, DT_MS)
        assert got is not None
        want = simulate(HHFit, params, stim, stim_dt_ms=DT_MS, duration_ms=T_MS, dt_ms=DT_MS, record_dt_ms=DT_MS)
        np.testing.assert_allclose(got.v_mV, want.v_mV, atol=1e-4)
        assert np.array_equal(got.spike_counts, want.spike_counts)
        assert want.spike_counts[2] >= 3 and want.spike_counts[0] == 0  # a real AP train and a silent step
    assert len(runner.compiled) == 1 and next(iter(runner.compiled.values())).runs == 3


def test_state_recording_and_start_states_match_the_runtime(runner: StandaloneRunner) -> None:
    """The phase-aligned search records every state variable and starts sweeps mid-trajectory."""
    params = _preset("fast_spiking", 2)
    stim = _steps([0.0, 200.0])
    for _ in range(2):
        got = runner.run(HHFit, params, stim, T_MS, DT_MS, 0.1, record_state=True)
    want = simulate(HHFit, params, stim, stim_dt_ms=DT_MS, duration_ms=T_MS, dt_ms=DT_MS, record_dt_ms=0.1,
                    record_state=True)
    assert got is not None and got.state is not None and want.state is not None
    assert set(got.state) == set(want.state)
    for name in want.state:
        np.testing.assert_allclose(got.state[name], want.state[name], atol=1e-6, err_msg=name)
    # from the state at t = 120 ms (mid-train) instead of rest
    k = int(120 / 0.1)
    v_k = want.state["v"][:, k].copy()
    family = HHFit.starting_from({name: a[:, k] for name, a in want.state.items()})
    for _ in range(2):
        got = runner.run(family, params, stim, T_MS, DT_MS, DT_MS)
    want = simulate(family, params, stim, stim_dt_ms=DT_MS, duration_ms=T_MS, dt_ms=DT_MS, record_dt_ms=DT_MS)
    assert got is not None
    np.testing.assert_allclose(got.v_mV, want.v_mV, atol=1e-4)
    assert np.allclose(got.v_mV[:, 0], v_k, atol=1e-4)  # the run starts where the state was taken


def test_a_bad_candidate_is_refused_as_on_the_runtime(runner: StandaloneRunner) -> None:
    params = _preset("fast_spiking", 1)
    params[0, IDX["g_Na"]] = -1.0
    with pytest.raises(ValueError):
        runner.run(HHFit, params, _steps([0.0]), T_MS, DT_MS, DT_MS)


def test_a_binary_that_cannot_run_falls_back_to_the_runtime() -> None:
    """A compiled project whose binary is gone (a cleaned temp directory) is not a lost fit: the run goes to the
    runtime, as do the process's later ones."""
    r = StandaloneRunner(compile_after=1)
    params, stim = _preset("fast_spiking", 1), _steps([150.0])
    assert r.run(HHFit, params, stim, T_MS, DT_MS, DT_MS) is not None
    (compiled,) = r.compiled.values()
    (compiled.directory / "main").unlink()
    assert r.run(HHFit, params, stim, T_MS, DT_MS, DT_MS) is None and r.disabled


def test_no_build_where_what_is_left_of_the_search_cannot_pay_for_it() -> None:
    """A build (~6-10 s) is paid back only over the runs after it: with fewer than `min_runs_left` runs to come, or
    less than `payback` builds' worth of the caller's budget left, the shape stays on the runtime; the measured
    build time sets the next estimate."""
    import time

    r = StandaloneRunner(compile_after=1, payback=3.0, first_build_s=10.0, min_runs_left=20)
    params, stim = _preset("fast_spiking", 1), _steps([100.0])
    short = BuildHorizon(deadline_s=time.time() + 25.0)
    assert r.run(HHFit, params, stim, T_MS, DT_MS, DT_MS, horizon=short) is None
    assert r.run(HHFit, params, stim, T_MS, DT_MS, DT_MS, horizon=BuildHorizon(runs_left=19)) is None
    assert not r.compiled and not r.build_s
    assert not r.worth_building(BuildHorizon(time.time() + 29.0)) and r.worth_building(BuildHorizon(time.time() + 31.0))
    assert r.worth_building(None) and r.worth_building(BuildHorizon(None, 20))  # no budget, enough runs: build
    r.build_s.append(2.0)  # a fast compiler: 3 x 2 s are enough
    assert r.worth_building(BuildHorizon(time.time() + 7.0)) and not r.worth_building(BuildHorizon(time.time() + 5.0))


def test_a_killed_workers_compiled_projects_are_removed_by_the_next_runner(tmp_path) -> None:
    """A worker killed mid-fit never runs its atexit cleanup: the next runner in any process removes the
    projects of processes that are gone, and leaves a live process's alone."""
    import subprocess
    import sys

    from noble.fit.standalone import ROOT_PREFIX, remove_orphaned_projects

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f"{ROOT_PREFIX}{int(gone.stdout)}-abc123"
    (dead / "project").mkdir(parents=True)
    (dead / "project" / "main").write_bytes(b"\0" * 1024)
    live = tmp_path / f"{ROOT_PREFIX}{os.getpid()}-def456"
    live.mkdir()
    other = tmp_path / "noble-fit-standalone-notapid"
    other.mkdir()
    assert remove_orphaned_projects(tmp_path) == [dead]
    assert not dead.exists() and live.is_dir() and other.is_dir()
