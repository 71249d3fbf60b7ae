"""`noble fit --scheduler ADDRESS`: the restarts and polish runs go to a Dask cluster's workers (a real
LocalCluster of worker processes here) and the fit is the same as with local processes: each run is
deterministic in its seed, wherever it runs."""

from __future__ import annotations

import numpy as np
import pytest

from noble.datagen.models.hh import HH
from noble.fit.api import FitConfig, fit_recording
from noble.fit.polish import PolishConfig
from noble.fit.solver import SolverConfig

from _synth import synthetic_recording  # tests/fit is on sys.path (pytest rootdir-relative import)


@pytest.fixture(scope="module")
def recording():  # noqa: ANN201
    params = dict(HH.preset_values("fast_spiking"))
    return synthetic_recording(params, [-50.0, 150.0, 300.0], duration_ms=250.0, tail_ms=100.0, seed=3)


def test_fit_on_a_dask_cluster_equals_the_local_fit(recording) -> None:  # noqa: ANN001
    from distributed import LocalCluster

    cfg = FitConfig(stage1="off", restarts=2, final_dt_ms=0.05, time_budget_s=None,
                    solver=SolverConfig(popsize=4, max_generations=1, probe=False, sigma0=0.2, seed=4),
                    polish=PolishConfig(generations=1, popsize=4, runs=2))
    local = fit_recording(recording, cfg.model_copy(update={"workers": 1}))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        remote = fit_recording(recording, cfg.model_copy(update={"scheduler": cluster.scheduler_address}))
    assert remote.objective == pytest.approx(local.objective, rel=1e-12)
    for name, p in local.parameters.items():
        assert remote.parameters[name]["value"] == pytest.approx(p["value"], rel=1e-12), name
    assert [r["objective"] for r in remote.solver["restarts"]] == pytest.approx([r["objective"]
                                                                                 for r in local.solver["restarts"]])
    assert np.isfinite(remote.objective) and remote.solver["polish"]["ran"] == local.solver["polish"]["ran"]


def test_one_run_with_its_candidates_split_over_workers_equals_the_serial_run(recording) -> None:  # noqa: ANN001
    """restarts=1 (the default): each generation's candidates go to the local worker processes, or to the Dask
    cluster's workers, in chunks (pool.ParallelEvaluator); every candidate is evaluated on its own, so the run is
    the one a single process makes."""
    from distributed import LocalCluster

    cfg = FitConfig(stage1="off", restarts=1, final_dt_ms=0.05, time_budget_s=None,
                    solver=SolverConfig(popsize=5, max_generations=2, probe=False, sigma0=0.2, seed=7),
                    polish=PolishConfig(generations=0))
    serial = fit_recording(recording, cfg.model_copy(update={"workers": 1}))
    pooled = fit_recording(recording, cfg.model_copy(update={"workers": 2}))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        remote = fit_recording(recording, cfg.model_copy(update={"scheduler": cluster.scheduler_address}))
    for other in (pooled, remote):
        assert other.objective == pytest.approx(serial.objective, rel=1e-12)
        for name, p in serial.parameters.items():
            assert other.parameters[name]["value"] == pytest.approx(p["value"], rel=1e-12), name
        # the workers' simulations are counted: the same neuron-runs as the serial fit
        assert other.timing_s["neuron_runs"] == serial.timing_s["neuron_runs"]
