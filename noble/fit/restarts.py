"""Independent CMA-ES restarts from the best distinct starts, side by side in worker processes.

The feature objective of a real recording is multimodal (spike counts make it piecewise constant, and a
pacemaker and a quiet model with the same F-I slope are far apart): one CMA-ES run ends where its seed and
start send it (two runs on 17o05028, the same starts and budget, other seeds: objective 2.33 and 1.43, the
second with all 11 spike counts within tolerance). Here every start is scored in
one batch, the `restarts` best that are distinct (unit-cube distance >= `min_distance`; the best again when
fewer are) each centre a CMA-ES run with its own seed, and the best run is reported, its uncertainty from its
own probes; every evaluation of every run joins the acceptable set. Each run is one process (Brian2 and eFEL
are single-threaded), so on a machine with as many cores as restarts the restarts cost no extra wall time.
Workers report every generation through a queue, so a caller's progress moves per generation, not per run.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import queue
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any, Callable

import numpy as np

from .hhmodel import ParamSpace
from .objective import FitProblem
from .pool import ParallelEvaluator, dask_threads
from .solver import SolverConfig, SolverResult, acceptable, run_cmaes


def distinct_best(unit: np.ndarray, objective: np.ndarray, k: int, min_distance: float) -> list[int]:
    """Indices of up to k rows, best objective first, each at least min_distance from those already taken."""
    order = [int(i) for i in np.argsort(np.where(np.isfinite(objective), objective, np.inf), kind="stable")]
    taken: list[int] = []
    for i in order:
        if len(taken) == k:
            break
        if all(np.linalg.norm(unit[i] - unit[j]) >= min_distance for j in taken):
            taken.append(i)
    return taken


def _one_run(problem: FitProblem, space: ParamSpace, x0: np.ndarray, cfg: SolverConfig, rest_mV: float | None,
             rest_sem_mV: float, log_level: int | None = None, tag: str = "", progress: Any = None,
             run: int = 0) -> tuple[SolverResult, float, float, int]:
    """One restart (also the worker-process entry): its result and the simulation effort it spent.
    log_level: in a worker process, show noble.fit progress at this level on stderr, lines prefixed by tag.
    progress: a queue that receives (run, generation, best objective) after every generation."""
    if log_level is not None:
        logger = logging.getLogger("noble.fit")
        if not logger.handlers:
            logger.addHandler(logging.StreamHandler())
        for handler in logger.handlers:  # a pooled worker runs several restarts: retag for this one
            handler.setFormatter(logging.Formatter(f"{tag}%(message)s"))
        logger.setLevel(log_level)
    s0, f0, n0 = problem.sim_seconds, problem.feature_seconds, problem.n_simulated
    cb = None if progress is None else (lambda g, best: progress.put((run, g, best)))
    res = run_cmaes(problem, space, x0, cfg, rest_mV=rest_mV, rest_sem_mV=rest_sem_mV, callback=cb)
    return res, problem.sim_seconds - s0, problem.feature_seconds - f0, problem.n_simulated - n0


def merge(starts: SolverResult, runs: list[SolverResult], best_run: int, n_terms: int, level: float
          ) -> SolverResult:
    """Run best_run's result (its best, search history, probes, posterior) with every run's evaluations and
    the scored starts pooled for the acceptable set."""
    parts = [starts] + runs
    unit = np.concatenate([p.unit for p in parts])
    params = np.concatenate([p.params for p in parts])
    obj = np.concatenate([p.objective for p in parts])
    chi = np.concatenate([p.chi2 for p in parts])
    gen = np.concatenate([p.generation for p in parts])
    mask, delta = acceptable(chi, n_terms, unit.shape[1], level)
    b = runs[best_run]
    best = len(starts.objective) + sum(len(r.objective) for r in runs[:best_run]) + b.best
    return SolverResult(unit=unit, params=params, objective=obj, chi2=chi, generation=gen,
                        best=best, accepted=mask, delta_chi2=delta, generations=b.generations,
                        wall_s=b.wall_s, history=b.history, stop=b.stop, cov_unit=b.cov_unit,
                        n_surface_points=b.n_surface_points, samples=b.samples, unit_samples=b.unit_samples)


class _Progress:
    """Per-generation reports (run, generation, best) of several runs -> callback(generations done per run on
    average, best objective so far). Has a queue's `put`, so a run in this process reports to it directly."""

    def __init__(self, n_runs: int, callback: Callable[[int, float], None]) -> None:
        self.done = [0] * n_runs
        self.best = float("inf")
        self.callback = callback

    def put(self, item: tuple[int, int, float]) -> None:
        run, g, best = item
        self.done[run] = max(self.done[run], g)
        self.best = min(self.best, best)
        self.callback(sum(self.done) // len(self.done), self.best)


def _in_workers(problem: FitProblem, space: ParamSpace, x0s: list[np.ndarray], cfgs: list[SolverConfig],
                n_proc: int, rest_mV: float | None, rest_sem_mV: float,
                callback: Callable[[int, float], None] | None, tag: str = "restart"
                ) -> list[tuple[SolverResult, float, float, int]]:
    """The runs in spawned worker processes, each generation relayed to callback (see _Progress); their log
    lines are prefixed '[tag k] '."""
    ctx = multiprocessing.get_context("spawn")  # Brian2 / torch state is not fork-safe
    level = logging.getLogger("noble.fit").getEffectiveLevel()
    relay = None if callback is None else _Progress(len(x0s), callback)
    with ctx.Manager() as manager, ProcessPoolExecutor(max_workers=n_proc, mp_context=ctx) as pool:
        q = manager.Queue() if callback is not None else None
        futs = [pool.submit(_one_run, problem, space, x0, c, rest_mV, rest_sem_mV, level, f"[{tag} {k}] ", q, k)
                for k, (x0, c) in enumerate(zip(x0s, cfgs))]
        pending = set(futs)
        while pending:
            _finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            while q is not None and relay is not None:
                try:
                    relay.put(q.get_nowait())
                except queue.Empty:
                    break
        return [f.result() for f in futs]


def _on_dask(problem: FitProblem, space: ParamSpace, x0s: list[np.ndarray], cfgs: list[SolverConfig],
             scheduler: str, rest_mV: float | None, rest_sem_mV: float,
             callback: Callable[[int, float], None] | None) -> list[tuple[SolverResult, float, float, int]]:
    """The runs as tasks on the Dask cluster at `scheduler` (one task per run; Brian2 and eFEL are
    single-threaded, so a worker thread per run); callback hears of each run when it finishes."""
    from distributed import Client

    relay = None if callback is None else _Progress(len(x0s), callback)
    with Client(scheduler, timeout=30, set_as_default=False) as client:
        futs = [client.submit(_one_run, problem, space, x0, c, rest_mV, rest_sem_mV, None, "", None, k, pure=False,
                              key=f"noble-fit-run-{k}-{os.getpid()}-{time.time_ns()}")
                for k, (x0, c) in enumerate(zip(x0s, cfgs))]
        pending = set(range(len(futs)))
        while pending:  # poll: as_completed/wait would need this client as the process default
            for k in [k for k in pending if futs[k].done()]:
                pending.discard(k)
                res = futs[k].result()[0]  # raises the run's error here
                if relay is not None:
                    relay.put((k, res.generations, res.best_objective))
            if pending:
                time.sleep(0.2)
        return [f.result() for f in futs]


SPAWN_S = 3.0  # starting the worker processes (or shipping the problem to Dask) before a run's clock starts


def _dask_slots(scheduler: str) -> int:
    """Worker threads of the Dask cluster at `scheduler` (the runs that go side by side)."""
    from distributed import Client

    with Client(scheduler, timeout=30, set_as_default=False) as client:
        return dask_threads(client)


def run_many(problem: FitProblem, space: ParamSpace, x0s: list[np.ndarray], cfgs: list[SolverConfig],
             workers: int | None, rest_mV: float | None, rest_sem_mV: float = 0.0,
             callback: Callable[[int, float], None] | None = None, tag: str = "restart",
             scheduler: str | None = None, time_limit_s: float | None = None
             ) -> list[tuple[SolverResult, float, float, int]]:
    """CMA-ES runs from x0s[k] with cfgs[k]: (result, simulation s, feature s, models simulated) per run.

    scheduler: a Dask scheduler address: the runs go to that cluster's workers. Otherwise workers: processes
    (default: one per run up to the CPU count); with one, the runs go one after another in this process.
    Either way the problem's effort counters end up including every run's effort, and the results are the
    same (each run is deterministic in its seed) unless time_limit_s, the wall time of all the runs together,
    stops them: it is shared among the waves of runs the available slots (processes, Dask worker threads)
    must run one after another."""
    if time_limit_s is not None:
        slots = _dask_slots(scheduler) if scheduler is not None else min(
            len(x0s), workers if workers is not None else (os.cpu_count() or 1))
        waves = math.ceil(len(x0s) / max(1, slots))
        per_run = max(1.0, (time_limit_s - SPAWN_S) / waves)
        cfgs = [c.model_copy(update={"time_limit_s": per_run if c.time_limit_s is None else min(c.time_limit_s,
                                                                                                 per_run)})
                for c in cfgs]
    if scheduler is not None:
        out = _on_dask(problem, space, x0s, cfgs, scheduler, rest_mV, rest_sem_mV, callback)
        for _res, sim_s, feat_s, n in out:
            problem.sim_seconds += sim_s
            problem.feature_seconds += feat_s
            problem.n_simulated += n
        return out
    n_proc = min(len(x0s), workers if workers is not None else (os.cpu_count() or 1))
    if n_proc <= 1:
        relay = None if callback is None else _Progress(len(x0s), callback)
        return [_one_run(problem, space, x0, c, rest_mV, rest_sem_mV, progress=relay, run=k)
                for k, (x0, c) in enumerate(zip(x0s, cfgs))]
    out = _in_workers(problem, space, x0s, cfgs, n_proc, rest_mV, rest_sem_mV, callback, tag=tag)
    for _res, sim_s, feat_s, n in out:  # the workers' copies of the problem counted this effort
        problem.sim_seconds += sim_s
        problem.feature_seconds += feat_s
        problem.n_simulated += n
    return out


def run_restarts(problem: FitProblem, space: ParamSpace, starts: np.ndarray, cfg: SolverConfig, restarts: int,
                 workers: int | None = None, rest_mV: float | None = None, rest_sem_mV: float = 0.0,
                 min_distance: float = 0.05, callback: Callable[[int, float], None] | None = None,
                 choose: Callable[[list[SolverResult], float], int] | None = None,
                 scheduler: str | None = None, deadline: float | None = None
                 ) -> tuple[SolverResult, list[dict[str, Any]]]:
    """(merged result, one summary per run) of `restarts` CMA-ES runs from the best distinct of `starts` (m, d).

    workers: processes (default: min(restarts, CPU count)); 1 runs them one after another in this process;
    scheduler: a Dask scheduler address to run them on instead (run_many). With restarts=1 the workers (or the
    cluster) share each generation's candidates instead (pool.ParallelEvaluator).
    choose(runs, delta_chi2) picks the reported run (default: the lowest objective); delta_chi2 is the width of
    the acceptable region of the pooled evaluations. With restarts=1 this is `run_cmaes` from all the starts
    (centred on the best). deadline: a time.perf_counter() instant the runs must end by (the fit's budget)."""
    starts = np.atleast_2d(starts)
    if restarts == 1:
        # one run: its generations' candidates split over the workers (pool.py), the same result as in one process
        with ParallelEvaluator(problem, workers, scheduler) as evaluator:
            if deadline is not None:  # after connecting to the cluster (the run's clock starts now)
                cfg = cfg.model_copy(update={"time_limit_s": max(1.0, deadline - time.perf_counter())})
            res = run_cmaes(evaluator, space, starts[0], cfg, rest_mV=rest_mV,  # type: ignore[arg-type]
                            callback=callback, extra_starts=starts[1:] if len(starts) > 1 else None,
                            rest_sem_mV=rest_sem_mV)
        return res, [{"seed": cfg.seed, "objective": res.best_objective, "generations": res.generations,
                      "stop": res.stop, "wall_s": res.wall_s}]
    t0 = time.perf_counter()
    # every start scored in one batch (a 0-generation run_cmaes does exactly that)
    scored = run_cmaes(problem, space, starts[0], cfg.model_copy(update={"max_generations": 0, "probe": False}),
                       rest_mV=rest_mV, extra_starts=starts[1:] if len(starts) > 1 else None)
    centres = distinct_best(scored.unit, scored.objective, restarts, min_distance)
    centres += [centres[k % len(centres)] for k in range(restarts - len(centres))]  # same start, other seed
    cfgs = [cfg.model_copy(update={"seed": cfg.seed + 1000 * k}) for k in range(len(centres))]
    limit = None if deadline is None else max(1.0, deadline - time.perf_counter())  # after scoring the starts
    out = run_many(problem, space, [scored.unit[i] for i in centres], cfgs, workers, rest_mV, rest_sem_mV, callback,
                   scheduler=scheduler, time_limit_s=limit)
    runs = [r for r, *_ in out]
    best_run = int(np.argmin([r.best_objective for r in runs]))
    if choose is not None:
        pooled = np.concatenate([scored.chi2] + [r.chi2 for r in runs])
        best_run = choose(runs, acceptable(pooled, len(problem.term_labels), space.dim, cfg.level)[1])
    merged = merge(scored, runs, best_run, len(problem.term_labels), cfg.level)
    merged.wall_s = time.perf_counter() - t0
    summaries = [{"seed": c.seed, "start": int(i), "start_objective": float(scored.objective[i]),
                  "objective": r.best_objective, "generations": r.generations, "stop": r.stop, "wall_s": r.wall_s,
                  "best": k == best_run} for k, (c, i, r) in enumerate(zip(cfgs, centres, runs))]
    return merged, summaries
