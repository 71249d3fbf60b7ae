"""Wall time to fit one recording: surrogate stage alone, solver stage alone from a cold start, and both
together, with the objective each reaches, side by side.

    .venv/bin/python benchmarks/fit.py [RECORDING ...] [--cold-generations 120] [--warm-generations 30]
                                       [--popsize 12] [--out runs/bench_fit] [--seeds 0 1 2] [--jobs 1]
                                       [--restarts 1]

Default recording: the regular-spiking cell of ../shared/data. For each recording:
  surrogate   stage 1 (gradient descent through the FNO + Laplace) and the hall-of-fame map to hh parameters;
              its objective is the Brian2 objective of the best mapped warm start (one extra generation,
              not counted in its time)
  solver      CMA-ES from the cold preset, `--cold-generations`
  two-stage   stage 1 + CMA-ES from the warm start, `--warm-generations`
All objectives are the same feature objective at the search dt (mean squared z, Huber beyond 3 sds); the
feasibility polish is off in every variant (it follows either search alike).
The target is: two-stage reaches an objective <= the cold solver's at >= 10x less wall time. CMA-ES runs
differ by seed, so each variant runs once per seed (`--seeds`; solver and two-stage of one seed side by
side when `--jobs 2`, each fit in its own single-threaded process) and the script reports, per seed and as
medians over seeds:
  at the solver's result  the cold solver's wall time / the time the two-stage run first reaches the cold
                          solver's final objective (from its history; "never" if it does not)
  at the two-stage result the time the cold solver first reaches the two-stage final objective / the
                          two-stage wall time
It also prints the acceptance figures of each two-stage fit (spike counts, rheobase, latency, rest) and
writes everything as JSON.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import logging
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
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


def time_to_reach(history: list[dict[str, float]], target: float, offset_s: float = 0.0) -> float | None:
    """Wall time (plus offset_s, the time spent before the history starts) at which a run's best objective
    first reaches target; None if it never does."""
    for h in history:
        if h["best"] <= target + 1e-12:
            return float(h["wall_s"]) + offset_s
    return None


def _configs(args: argparse.Namespace, seed: int) -> tuple[FitConfig, FitConfig, FitConfig]:
    # no feasibility polish: the benchmark compares the searches (objective against wall time); the polish runs
    # after either one alike and only when its result misses an acceptance check
    # no time budget (the variants run their generation budgets, whatever the machine) and one process per fit
    # (each fit's own single-threaded process, as the docstring says)
    base = FitConfig(solver=SolverConfig(popsize=args.popsize, seed=seed, probe=False), restarts=args.restarts,
                     polish={"generations": 0}, time_budget_s=None, workers=1)
    cold = base.model_copy(update={"stage1": "off", "solver": base.solver.model_copy(
        update={"max_generations": args.cold_generations, "sigma0": 0.25, "tolfun": 0.0})})
    warm = base.model_copy(update={"stage1": "on", "solver": base.solver.model_copy(
        update={"max_generations": args.warm_generations})})
    return base, cold, warm


def _warm_up(path: Path) -> None:
    """Brian2's compiled-code cache and torch, so no variant pays first-use costs."""
    base = FitConfig(solver=SolverConfig(popsize=4, max_generations=1, probe=False), restarts=1,
                     polish={"generations": 0})
    fit_recording(path, base.model_copy(update={"stage1": "off", "final_dt_ms": base.solver.dt_ms}))


def _timed_fit(path: Path, cfg: FitConfig, out_dir: Path | None) -> dict[str, Any]:
    """One fit in this (worker) process: wall time, objective, history, checks; outputs written if out_dir."""
    logging.getLogger("brian2").setLevel(logging.WARNING)
    t0 = time.perf_counter()
    res = fit_recording(path, cfg)
    wall = time.perf_counter() - t0
    if out_dir is not None:
        write_outputs(res, out_dir)
    t = res.timing_s
    # history wall_s counts from the start of the CMA-ES run: what came before it (reading, stage 1, scoring
    # the starts) is added when comparing times to reach an objective
    return {"wall_s": wall, "stage1_s": t["stage1"], "stage2_s": t["stage2"], "objective": res.objective_search,
            "generations": res.solver["generations"], "history": res.solver["history"],
            "before_history_s": wall - t["final"] - t.get("polish", 0.0) - res.solver["history"][-1]["wall_s"]
            if res.solver["history"]
            else 0.0, "checks": res.checks}


def _median(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.median(vals) if len(vals) == len(xs) and vals else None


def best_at(run: dict[str, Any], t_s: float) -> float | None:
    """A fit's best objective t_s seconds after it started (None before its first generation)."""
    vals = [h["best"] for h in run["history"] if h["wall_s"] + run["before_history_s"] <= t_s]
    return min(vals) if vals else None


def print_report(report: dict[str, Any], path: Path) -> None:
    """The side-by-side tables of a benchmark report (also `--from-json` on a saved one)."""

    def fmt(x: float | None, unit: str = "x") -> str:
        return "never" if x is None else f"{x:.1f}{unit}"

    print(f"\n{'recording':24s} {'seed':>4s} {'variant':10s} {'wall_s':>8s} {'objective':>10s}   speed-up at the "
          f"solver's / the two-stage objective")
    for r in report["runs"]:
        name = Path(r["recording"]).name[:24]
        print(f"{name:24s} {'':>4s} {'surrogate':10s} {r['surrogate_only']['wall_s']:8.1f} "
              f"{r['surrogate_only']['objective']:10.3f}")
        for p in r["seeds"]:
            print(f"{name:24s} {p['seed']:4d} {'solver':10s} {p['solver_only']['wall_s']:8.1f} "
                  f"{p['solver_only']['objective']:10.3f}")
            print(f"{name:24s} {p['seed']:4d} {'two-stage':10s} {p['two_stage']['wall_s']:8.1f} "
                  f"{p['two_stage']['objective']:10.3f}   {fmt(p['speedup_at_solver_objective'])} / "
                  f"{fmt(p['speedup_at_two_stage_objective'])} (reached the solver's objective after "
                  f"{fmt(p['two_stage_time_to_solver_objective_s'], ' s')})")
        m = r["median"]
        print(f"{name:24s} {'med':>4s} solver {m['solver_wall_s']:.1f} s -> {m['solver_objective']:.3f}; two-stage "
              f"{m['two_stage_wall_s']:.1f} s -> {m['two_stage_objective']:.3f}; speed-up "
              f"{fmt(m['speedup_at_solver_objective'])} / {fmt(m['speedup_at_two_stage_objective'])} "
              f"(median over seeds; 'never' if any seed never reached it)")
    print("\nbest objective so far at a given wall time since the fit started (median over seeds; '-' before the "
          "first generation)")
    times = (15, 30, 60, 120, 240)
    print(f"{'recording':24s} {'variant':10s} " + " ".join(f"{t:>7d}s" for t in times))
    for r in report["runs"]:
        name = Path(r["recording"]).name[:24]
        for key, label in (("solver_only", "solver"), ("two_stage", "two-stage")):
            cells = []
            for t in times:
                vals = [best_at(p[key], t) for p in r["seeds"]]
                cells.append("-" if any(v is None for v in vals) else f"{statistics.median(vals):.2f}")
            print(f"{name:24s} {label:10s} " + " ".join(f"{c:>8s}" for c in cells))
    print("\nacceptance (two-stage fits): spike counts within max(1, 10 %) | rheobase +-20 pA | latency +-5 ms at "
          "the two lowest supra-threshold sweeps | rest +-2 mV")
    for r in report["runs"]:
        for p in r["seeds"]:
            c = p["two_stage"]["checks"]
            lat = "; ".join(f"{x['amplitude_pA']:+.0f} pA {x['data_ms']:.1f}/{x['model_ms']:.1f}"
                            if x["model_ms"] is not None else f"{x['amplitude_pA']:+.0f} pA silent" for x in c["latency"])
            print(f"  {Path(r['recording']).name} seed {p['seed']}: counts {c['spike_counts_ok']}, rheobase "
                  f"{c['rheobase']['data_pA']:.1f}/{c['rheobase']['model_pA']} pA, latency data/model {lat}, rest "
                  f"{c['rest']['data_mV']:.1f}/{c['rest']['model_mV']:.1f} mV, all ok: {c['all_ok']}")
    print(f"\nwritten: {path}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recordings", nargs="*", type=Path, default=[DEFAULT])
    ap.add_argument("--cold-generations", type=int, default=120)
    ap.add_argument("--warm-generations", type=int, default=30)
    ap.add_argument("--popsize", type=int, default=12)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=1, help="fits running at once, each in its own process (2: the "
                                                        "solver and two-stage runs of a seed side by side)")
    ap.add_argument("--restarts", type=int, default=1,
                    help="CMA-ES restarts of each variant (1: the time-to-reach below is one run's own history)")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_fit")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--from-json", type=Path, default=None, help="print the tables of a saved bench_fit.json")
    args = ap.parse_args()
    if args.from_json is not None:
        print_report(json.loads(args.from_json.read_text()), args.from_json)
        return
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    logging.getLogger("brian2").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"machine": platform.platform(), "python": platform.python_version(),
                              "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                                       if k != "recordings"}, "runs": []}
    for path in args.recordings:
        _warm_up(path)
        s1 = surrogate_only(path, _configs(args, args.seeds[0])[0])
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=ctx) as pool:
            if args.jobs > 1:  # each worker warms its own compiled-code and torch state first
                list(pool.map(_warm_up, [path] * args.jobs))
            futs = {}
            for seed in args.seeds:
                _, cold_cfg, warm_cfg = _configs(args, seed)
                futs[seed] = (pool.submit(_timed_fit, path, cold_cfg, None),
                              pool.submit(_timed_fit, path, warm_cfg, args.out / f"{path.stem}_seed{seed}"))
            per_seed = []
            for seed, (fc, fw) in futs.items():
                cold, warm = fc.result(), fw.result()
                at_cold = time_to_reach(warm["history"], cold["objective"], warm["before_history_s"])
                at_warm = time_to_reach(cold["history"], warm["objective"], cold["before_history_s"])
                per_seed.append({
                    "seed": seed, "solver_only": cold, "two_stage": warm,
                    "two_stage_time_to_solver_objective_s": at_cold,
                    "speedup_at_solver_objective": None if at_cold is None else cold["wall_s"] / at_cold,
                    "solver_time_to_two_stage_objective_s": at_warm,
                    "speedup_at_two_stage_objective": None if at_warm is None else at_warm / warm["wall_s"],
                    "two_stage_better_or_equal": warm["objective"] <= cold["objective"] + 1e-12})
        run = {"recording": str(path), "surrogate_only": s1, "seeds": per_seed, "median": {
            "solver_wall_s": _median([r["solver_only"]["wall_s"] for r in per_seed]),
            "solver_objective": _median([r["solver_only"]["objective"] for r in per_seed]),
            "two_stage_wall_s": _median([r["two_stage"]["wall_s"] for r in per_seed]),
            "two_stage_objective": _median([r["two_stage"]["objective"] for r in per_seed]),
            "speedup_at_solver_objective": _median([r["speedup_at_solver_objective"] for r in per_seed]),
            "speedup_at_two_stage_objective": _median([r["speedup_at_two_stage_objective"] for r in per_seed])}}
        report["runs"].append(run)
        (args.out / "bench_fit.json").write_text(json.dumps(report, indent=1, default=float) + "\n")

    print_report(report, args.out / "bench_fit.json")


if __name__ == "__main__":
    main()
