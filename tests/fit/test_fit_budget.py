"""The fit's wall-clock budget (`FitConfig.time_budget_s`, `noble fit --time-budget`): the search starts no
generation that its measured cost per evaluation says would end past the budget, and the fit says so."""

from __future__ import annotations

import time

import pytest

from noble.datagen.models.hh import HH
from noble.fit.api import FINAL_RESERVE_S, FitConfig, fit_recording
from noble.fit.polish import PolishConfig
from noble.fit.solver import SolverConfig, _would_overrun

from _synth import synthetic_recording  # tests/fit is on sys.path (pytest rootdir-relative import)


def test_a_generation_that_would_end_past_the_limit_is_not_started() -> None:
    cfg = SolverConfig(popsize=10, probe=False, time_limit_s=10.0)
    # the last generation cost 0.1 s per evaluation: the next one costs 1 s
    assert not _would_overrun(cfg, 3, [0.1, 0.1], now=5.0, t_start=0.0)  # 5 + 1 < 10
    assert _would_overrun(cfg, 3, [0.1, 0.1], now=9.5, t_start=0.0)  # 9.5 + 1 > 10
    # the posterior probe (2 d per scale) is reserved too: 4 scales x 6 evaluations = 24 more
    probed = cfg.model_copy(update={"probe": True, "probe_scales": (0.5, 1.0, 2.0, 4.0)})
    assert _would_overrun(probed, 3, [0.1, 0.1], now=7.0, t_start=0.0)  # 7 + 3.4 > 10
    # a first generation slowed by Brian2's compilation predicts nothing: the search goes on until a second one
    # has run (unless the limit itself has passed), and then the last generation's cost decides
    assert not _would_overrun(probed, 3, [4.0], now=6.0, t_start=0.0)
    assert _would_overrun(probed, 3, [4.0], now=10.5, t_start=0.0)
    assert not _would_overrun(probed, 3, [4.0, 0.05], now=7.0, t_start=0.0)  # 7 + 34 x 0.05 < 10
    # slow generations early on (Brian2's compilations of new group sizes, a cpp_standalone build) do not stop the
    # search: before five generations the cheapest predicts, then the median of the last five
    assert not _would_overrun(probed, 3, [0.05, 0.05, 0.5], now=7.0, t_start=0.0)  # 7 + 34 x 0.05 < 10
    assert not _would_overrun(probed, 3, [0.85, 0.05, 0.5], now=7.0, t_start=0.0)  # two of three compiled
    assert not _would_overrun(probed, 3, [0.05] * 3 + [0.5, 0.5], now=7.0, t_start=0.0)  # median 0.05
    assert _would_overrun(probed, 3, [0.05] * 2 + [0.5] * 3, now=7.0, t_start=0.0)  # risen for good: 7 + 34 x 0.5


@pytest.mark.serial  # asserts the fit's wall time
def test_a_fit_stops_at_its_time_budget_and_says_so() -> None:
    rec = synthetic_recording(dict(HH.preset_values("fast_spiking")), [-50.0, 150.0, 300.0], duration_ms=250.0,
                              tail_ms=100.0, seed=3)
    budget_s = 30.0
    cfg = FitConfig(stage1="off", restarts=1, final_dt_ms=0.05, time_budget_s=budget_s,
                    solver=SolverConfig(popsize=6, max_generations=5000, probe=False, tolfun=0.0, seed=1),
                    polish=PolishConfig(generations=0))
    t0 = time.perf_counter()
    res = fit_recording(rec, cfg)
    wall = time.perf_counter() - t0
    (run,) = res.solver["restarts"]
    assert run["stop"] == "time_limit" and 1 <= run["generations"] < 5000
    assert any("time budget" in n for n in res.notes)
    # the search's share: search_share of the budget less the final reserve (the polish, off here, gets the rest);
    # it uses most of it and does not overrun it by more than one generation's (small) cost
    share_s = cfg.search_share * (budget_s - FINAL_RESERVE_S)
    assert 0.6 * share_s < res.timing_s["stage2"] < share_s + 1.5
    assert wall < budget_s
