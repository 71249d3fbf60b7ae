"""Wall time to fit one recording: surrogate stage alone, solver stage alone from a cold start, and both
together, with the objective each reaches, side by side.

    .venv/bin/python benchmarks/fit.py [RECORDING ...] [--cold-generations 120] [--warm-generations 30]
                                       [--popsize 12] [--out runs/bench_fit] [--seed 0] [--restarts 1]

Default recording: the regular-spiking cell of ../shared/data. For each recording:
  surrogate   stage 1 (gradient descent through the FNO + Laplace) and the hall-of-fame map to hh parameters;
              its objective is the Brian2 objective of the best mapped warm start (one extra generation,
              not counted in its time)
  solver      CMA-ES from the cold preset, `--cold-generations`
  two-stage   stage 1 + CMA-ES from the warm start, `--warm-generations`
All objectives are the same feature objective at the search dt (mean squared z, Huber beyond 3 sds).
The target is: two-stage reaches an objective <= the cold solver's at >= 10x less wall time; the script
reports the ratio of the cold solver's time to first reach the two-stage objective (from its history) to
the two-stage time, and whether the cold solver ever reaches it. It also prints the acceptance figures of
the two-stage fit of each file (spike counts, rheobase, latency, rest) and writes everything as JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from noble.fit.api import FitConfig, _space, _warm_start, fit_recording  # noqa: E402
from noble.fit.objective import FitProblem  # noqa: E402
from noble.fit.report import write_outputs  # noqa: E402
from noble.fit.solver import SolverConfig, candidates  # noqa: E402
from noble.fit.surrogate_stage import fit_embedding, load  # noqa: E402
from noble.io import read_recording  # noqa: E402

DEFAULT = ROOT.parent / "shared" / "data" / "171116sh_0018.abf"


def surrogate_only(path: Path, cfg: FitConfig) -> dict[str, Any]:
    """Stage 1 + hall-of-fame map, timed; then the Brian2 objective of the mapped parameters (untimed)."""
    rec = read_recording(path)
    problem = FitProblem.from_recording(rec, cfg.objective)
    t0 = time.perf_counter()
    sur = load(cfg.surrogate)
    fit = fit_embedding(problem, sur, cfg.surrogate_stage)
    notes: list[str] = []
    base, extra, info = _warm_start(problem, cfg, sur, fit, notes)
    wall = time.perf_counter() - t0
    t = problem.targets
    space = _space(cfg, base, t.spontaneously_active)
    rows = [space.to_unit(base)]
    if extra is not None:
        rows.append(space.to_unit(extra))
    unit = np.concatenate(rows)
    params = candidates(space, unit, t.rest_mV)
    ev = problem.evaluate(params, cfg.solver.dt_ms, v_hint_mV=np.full(len(unit), t.rest_mV))
    return {"wall_s": wall, "objective": float(np.min(ev.objective)), "stage1_objective": fit.objective,
            "features": dict(zip(fit.feature_names, fit.features.tolist())),
            "sd": dict(zip(fit.feature_names, fit.sd.tolist())), "at_edge": fit.at_edge,
            "hall_of_fame": info.get("source")}


def time_to_reach(history: list[dict[str, float]], target: float) -> float | None:
    for h in history:
        if h["best"] <= target + 1e-12:
            return float(h["wall_s"])
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recordings", nargs="*", type=Path, default=[DEFAULT])
    ap.add_argument("--cold-generations", type=int, default=120)
    ap.add_argument("--warm-generations", type=int, default=30)
    ap.add_argument("--popsize", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--restarts", type=int, default=1,
                    help="CMA-ES restarts of each variant (1: the time-to-reach below is one run's own history)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_fit")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    logging.getLogger("brian2").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": platform.platform(), "python": platform.python_version(), "runs": []}
    rows = []
    for path in args.recordings:
        base = FitConfig(solver=SolverConfig(popsize=args.popsize, seed=args.seed, probe=False),
                         restarts=args.restarts)
        # warm up Brian2's compiled-code cache and torch so no variant pays first-use costs
        fit_recording(path, base.model_copy(update={"stage1": "off", "solver": SolverConfig(
            popsize=4, max_generations=1, probe=False), "final_dt_ms": base.solver.dt_ms}))
        s1 = surrogate_only(path, base)
        cold_cfg = base.model_copy(update={"stage1": "off", "solver": base.solver.model_copy(
            update={"max_generations": args.cold_generations, "sigma0": 0.25, "tolfun": 0.0})})
        t0 = time.perf_counter()
        cold = fit_recording(path, cold_cfg)
        cold_wall = time.perf_counter() - t0
        warm_cfg = base.model_copy(update={"stage1": "on", "solver": base.solver.model_copy(
            update={"max_generations": args.warm_generations})})
        t0 = time.perf_counter()
        warm = fit_recording(path, warm_cfg)
        warm_wall = time.perf_counter() - t0
        write_outputs(warm, args.out / path.stem)
        reach = time_to_reach(cold.solver["history"], warm.objective_search)
        run = {
            "recording": str(path),
            "surrogate_only": s1,
            "solver_only": {"wall_s": cold_wall, "objective": cold.objective_search, "generations":
                            cold.solver["generations"], "history": cold.solver["history"]},
            "two_stage": {"wall_s": warm_wall, "stage1_s": warm.timing_s["stage1"],
                          "stage2_s": warm.timing_s["stage2"], "objective": warm.objective_search,
                          "generations": warm.solver["generations"], "history": warm.solver["history"]},
            "cold_time_to_reach_two_stage_objective_s": reach,
            "speedup_at_equal_objective": None if reach is None else reach / warm_wall,
            "two_stage_better_or_equal": warm.objective_search <= cold.objective_search + 1e-12,
            "checks_two_stage": warm.checks, "checks_solver_only": cold.checks,
        }
        report["runs"].append(run)
        rows.append(run)
        (args.out / "bench_fit.json").write_text(json.dumps(report, indent=1, default=float) + "\n")

    print(f"\n{'recording':26s} {'variant':12s} {'wall_s':>8s} {'objective':>10s}")
    for r in rows:
        name = Path(r["recording"]).name[:26]
        for key, label in (("surrogate_only", "surrogate"), ("solver_only", "solver"), ("two_stage", "two-stage")):
            print(f"{name:26s} {label:12s} {r[key]['wall_s']:8.1f} {r[key]['objective']:10.3f}")
        sp = r["speedup_at_equal_objective"]
        print(f"{'':26s} two-stage <= solver objective: {r['two_stage_better_or_equal']}; cold solver reaches the "
              f"two-stage objective after {r['cold_time_to_reach_two_stage_objective_s']} s -> "
              f"speed-up {'never reached' if sp is None else f'{sp:.1f}x'}")
    print("\nacceptance (two-stage fit): spike counts within max(1, 10 %) | rheobase +-20 pA | latency +-5 ms at "
          "the two lowest supra-threshold sweeps | rest +-2 mV")
    for r in rows:
        c = r["checks_two_stage"]
        lat = "; ".join(f"{x['amplitude_pA']:+.0f} pA {x['data_ms']:.1f}/{x['model_ms']}" for x in c["latency"])
        print(f"  {Path(r['recording']).name}: counts {c['spike_counts_ok']}, rheobase {c['rheobase']['data_pA']:.1f}/"
              f"{c['rheobase']['model_pA']} pA ({'ok' if c['rheobase']['ok'] else 'MISS'}), latency data/model {lat}, "
              f"rest {c['rest']['data_mV']:.1f}/{c['rest']['model_mV']:.1f} mV ({'ok' if c['rest']['ok'] else 'MISS'})")
    print(f"\nwritten: {args.out / 'bench_fit.json'}")


if __name__ == "__main__":
    main()
