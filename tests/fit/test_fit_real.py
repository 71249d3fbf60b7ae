"""The fit on every real recording in ../shared/data with a modest budget: runs end to end (surrogate stage
when a surrogate is installed, then CMA-ES), writes its files, pins the rest, never makes the fit worse
than its start, rests at the model's own stable fixed point (at the pinned rest for the quiescent cell), and
prints the acceptance figures (the full-budget table comes from benchmarks/fit.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from noble.fit.api import FitConfig, fit_recording, n_checks_ok, score_decline_where_freed
from noble.fit.hhmodel import NAMES as HH_NAMES
from noble.fit.hhmodel import params_row, resting_potential
from noble.fit.objective import FitProblem
from noble.fit.polish import PolishConfig
from noble.fit.report import write_outputs
from noble.fit.solver import SolverConfig
from noble.fit.surrogate_stage import SurrogateStageConfig
from noble.io import read_recording
from noble.operator import default_surrogate_path
from noble.operator.checkpoint import read_config

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
# a quiescent cell and a spontaneously active one (17o05028_ic_steps, the third development recording, is fitted
# by benchmarks/fit.py; here it doubled the CI time of this test for no path the other two do not take)
FILES = ["171116sh_0018.abf", "2019_07_24_0055_fsi.abf"]


def _r(x: float | None, nd: int = 1) -> str:
    return "-" if x is None else f"{x:.{nd}f}"


def acceptance_row(name: str, res) -> str:  # noqa: ANN001 - FitResult
    c = res.checks
    lat = ", ".join(f"{x['amplitude_pA']:+.0f}pA {_r(x['data_ms'])}/{_r(x['model_ms'])}" for x in c["latency"])
    return (f"{name[:24]:24s} counts ok {c['spike_counts_ok']:>6s} | rheobase {_r(c['rheobase']['data_pA'])}/"
            f"{_r(c['rheobase']['model_pA'])} pA | latency data/model {lat} ms | rest {_r(c['rest']['data_mV'])}/"
            f"{_r(c['rest']['model_mV'])} mV | objective {res.objective:.2f} "
            f"(start {res.solver['objective_start']:.2f})")


def test_fit_every_real_recording_modest_budget(tmp_path: Path) -> None:
    if not DATA.is_dir():
        pytest.skip(f"real recordings folder {DATA} is absent")
    # the smallest budget that still runs every stage: 2 warm starts at one area, one pacemaking shift, one
    # CMA-ES generation, one 2-generation polish run (this test took 250-390 s with the defaults' 4 x 3 warm
    # starts x 4 shifts and 2 polish runs of 3 generations: most of the CI suite's fit time); in-process, as one
    # generation does not pay for spawning the worker processes (133 -> 85 s; the pool has its own tests)
    cfg = FitConfig(stage1="auto", final_dt_ms=0.05, n_warm_starts=2, warm_area_scales=(1.0,),
                    shift_starts_mV=(12.0,), restarts=1, workers=1,
                    solver=SolverConfig(popsize=6, max_generations=1, probe=False, sigma0=0.2),
                    surrogate_stage=SurrogateStageConfig(n_starts=1, steps=1, max_sweeps=3),
                    polish=PolishConfig(generations=2, popsize=6, runs=1))
    rows = []
    for name in FILES:
        res = fit_recording(DATA / name, cfg)
        files = write_outputs(res, tmp_path / name.split(".")[0])
        rows.append(acceptance_row(name, res))
        assert res.stage1["status"] in {"ok", "unavailable"}
        swapped = any("reported instead of" in n for n in res.notes)  # the feasibility-first choice of restart
        assert np.isfinite(res.objective) and (swapped or res.objective_search <= res.solver["objective_start"] + 1e-9)
        # E_leak (with a holding current beyond its range) is solved so the steady state sits at the recorded
        # rest, then shifted by the fitted leak shift for spontaneously active cells (no rest to pin)
        model_rest, pinned = res.checks["rest"]["model_mV"], res.checks["rest"]["data_mV"]
        quiet = res.model_measures["spontaneous_rate_Hz"] == 0.0
        if res.holding_current_pA == 0.0 and quiet:
            # the simulation rests at the model's own stable fixed point: the one nearest where it starts (the
            # recorded rest), as a model can be bistable (a 1-generation winner on 17o05028 had stable points at
            # -98.9 mV and, in depolarisation block, -23.1 mV, and sat at the latter)
            vals = {k: v["value"] for k, v in res.parameters.items() if k in HH_NAMES}
            fixed = resting_potential(params_row(vals)[None], hint_mV=pinned)[0][0]
            assert abs(model_rest - fixed) < 1.0
        if name == FILES[0]:  # a quiescent cell: the pinned fixed point is its rest
            assert abs(model_rest - pinned) < 1.0
        # For the spontaneously active cells the model may pace (its median voltage is then no fixed point) or
        # rest at a shifted fixed point; the rest term of the full fit moves it.
        print(name, "rest data/pinned/model", res.checks["rest"]["data_mV"], pinned, model_rest)
        assert len(res.checks["spike_counts"]) > 0 and len(res.checks["latency"]) == 2
        # the reported objective is chi2 plus the L1 tolerance penalty, which is 0 only when every check passes
        problem = FitProblem.from_recording(read_recording(DATA / name), cfg.objective)
        # the AP decline is scored where the fit frees I_Na's slow inactivation (the FSI: its APs shrink)
        problem = score_decline_where_freed(problem, [p["name"] for p in res.free_parameters], cfg.objective.weights)
        w = float(problem.term_weights.sum())
        assert res.objective == pytest.approx((res.chi2 + cfg.objective.tolerance_penalty * res.tolerance_excess) / w)
        assert res.checks["all_ok"] or res.tolerance_excess > 0.0
        # the feasibility polish runs exactly when the search's best misses a check, and what it reports meets
        # every check inside the acceptable region of that best's chi2 (else the best stands, with a note)
        pol = res.solver["polish"]
        if not pol["ran"]:
            assert res.checks["all_ok"]
        elif pol["accepted"]:
            assert res.checks["all_ok"] and res.chi2 == pytest.approx(pol["chi2"], rel=1e-9)
            assert pol["chi2"] <= pol["chi2_limit"]
            assert pol["checks_met_before"] < n_checks_ok(res.checks)
        else:
            assert res.chi2 == pol["chi2_before"] and any("found no model meeting" in n for n in res.notes)
        rec = read_recording(DATA / name)
        back = read_recording(files["nwb"])
        np.testing.assert_allclose(back.amplitudes_pA, rec.amplitudes_pA)
        for m, r in zip(back.sweeps, rec.sweeps):  # whole sweeps on the recording's time base
            assert (m.n_samples, m.dt_ms, m.t0_ms) == (r.n_samples, pytest.approx(r.dt_ms), pytest.approx(r.t0_ms))
        if res.stage1["status"] == "ok":  # the surrogate's traces too, on its grid, aligned with the recording's steps
            sur = read_recording(files["surrogate_nwb"])
            np.testing.assert_allclose(sur.amplitudes_pA, rec.amplitudes_pA)
            for s, r in zip(sur.sweeps, rec.sweeps):
                assert s.t0_ms + s.stim_start_ms == pytest.approx(r.stim_start_ms, abs=1e-6)
                assert s.t0_ms + s.stim_end_ms == pytest.approx(r.stim_end_ms, abs=s.dt_ms)
            grid = read_config(default_surrogate_path()).dt_ms
            assert all(s.dt_ms == pytest.approx(grid) for s in sur.sweeps)  # the shipped surrogate's grid
        else:
            assert "surrogate_nwb" not in files
        if name != FILES[0]:
            assert any("spontaneously active" in n for n in res.notes)
    print("\n" + "\n".join(rows))
