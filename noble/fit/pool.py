"""One CMA-ES generation's candidates evaluated side by side: the rows split into chunks, each chunk simulated
and measured in its own worker process (or Dask worker), the evaluations put back together in row order.

Brian2 (the cython runtime) and eFEL are single-threaded, so a single CMA-ES run would use one core. Split over
two processes, a generation of 12 candidates x 17 sweeps of 171116sh_0018 costs what one of 6 does (1.2 s
instead of 2.0 s in one process; the per-time-step overhead is paid once per chunk): one run gets ~1.7x the
generations in the same wall time, which a time-budgeted fit spends on a longer search rather than on a second
independent run. Every candidate is evaluated independently of the others, so the result is the same as in one
process, bit for bit (tests/fit/test_fit_dask.py).
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np

from .objective import Evaluation, FitProblem
from .standalone import BuildHorizon

_WORKER_PROBLEM: FitProblem | None = None  # the problem a pooled worker process evaluates (set once per process)


def _init_worker(problem: FitProblem) -> None:
    global _WORKER_PROBLEM
    _WORKER_PROBLEM = problem


def _evaluate_chunk(problem: FitProblem | None, params: np.ndarray, dt_ms: float, v_hint_mV: np.ndarray | None,
                    horizon: BuildHorizon | None = None) -> tuple[Evaluation, float, float, int]:
    """Evaluate rows in a worker: (evaluation, simulation s, feature s, neuron-runs) of this call."""
    pr = problem if problem is not None else _WORKER_PROBLEM
    assert pr is not None, "worker has no problem (pool initializer not run)"
    s0, f0, n0 = pr.sim_seconds, pr.feature_seconds, pr.n_simulated
    ev = pr.evaluate(params, dt_ms, v_hint_mV=v_hint_mV, horizon=horizon)
    return ev, pr.sim_seconds - s0, pr.feature_seconds - f0, pr.n_simulated - n0


def dask_threads(client: Any) -> int:
    """Worker threads of a connected Dask client's cluster (the evaluations that go side by side), at least 1."""
    return max(1, sum(client.nthreads().values()))


def concat_evaluations(parts: list[Evaluation]) -> Evaluation:
    """Evaluations of consecutive row chunks -> the evaluation of all rows (row order kept)."""
    if len(parts) == 1:
        return parts[0]
    cat = lambda key, d: np.concatenate([getattr(p, d)[key] for p in parts], axis=0)  # noqa: E731
    return Evaluation(objective=np.concatenate([p.objective for p in parts]),
                      chi2=np.concatenate([p.chi2 for p in parts]),
                      z=np.concatenate([p.z for p in parts], axis=0),
                      features={k: cat(k, "features") for k in parts[0].features},
                      cell={k: cat(k, "cell") for k in parts[0].cell},
                      v_mV=None, dt_ms=parts[0].dt_ms)


def chunk_bounds(n_rows: int, n_chunks: int) -> list[tuple[int, int]]:
    """Contiguous, near-equal [a, b) row ranges, none empty."""
    k = max(1, min(n_chunks, n_rows))
    edges = np.linspace(0, n_rows, k + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


class ParallelEvaluator:
    """A FitProblem whose `evaluate` spreads the rows over `workers` spawned processes, or over the worker
    threads of the Dask cluster at `scheduler`. Everything else (term labels, weights, ...) is the problem's;
    the problem's effort counters include the workers' effort. Use as a context manager (it owns the pool)."""

    def __init__(self, problem: FitProblem, workers: int | None = None, scheduler: str | None = None) -> None:
        self.problem = problem
        self.scheduler = scheduler
        self.workers = workers if workers is not None else (os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        self._client: Any = None
        self._remote_problem: Any = None

    def __enter__(self) -> "ParallelEvaluator":
        if self.scheduler is not None:
            from distributed import Client

            self._client = Client(self.scheduler, timeout=30, set_as_default=False)
            self.workers = dask_threads(self._client)
            # the problem is shipped to every worker once, not with every generation's chunks
            self._remote_problem = self._client.scatter(self.problem, broadcast=True, hash=False)
        elif self.workers > 1:
            ctx = multiprocessing.get_context("spawn")  # Brian2 / torch state is not fork-safe
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_init_worker,
                                             initargs=(self.problem,))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def __getattr__(self, name: str) -> Any:  # term_labels, term_weights, config, ...: the problem's
        if name == "problem":  # not set yet (unpickling, copying): no recursion
            raise AttributeError(name)
        return getattr(self.problem, name)

    def evaluate(self, params: np.ndarray, dt_ms: float, keep_traces: bool = False,
                 v_hint_mV: np.ndarray | None = None, horizon: BuildHorizon | None = None) -> Evaluation:
        """`FitProblem.evaluate`, the rows split over the workers (traces kept: in this process)."""
        if keep_traces or (self._pool is None and self._client is None) or len(params) < 2:
            return self.problem.evaluate(params, dt_ms, keep_traces=keep_traces, v_hint_mV=v_hint_mV,
                                         horizon=horizon)
        bounds = chunk_bounds(len(params), self.workers)
        hints = [v_hint_mV if v_hint_mV is None or np.ndim(v_hint_mV) == 0 else v_hint_mV[a:b] for a, b in bounds]
        if self._client is not None:
            futs = [self._client.submit(_evaluate_chunk, self._remote_problem, params[a:b], dt_ms, h, horizon,
                                        pure=False, key=f"noble-fit-eval-{os.getpid()}-{time.time_ns()}-{a}")
                    for (a, b), h in zip(bounds, hints)]
            out = self._client.gather(futs)
        else:
            assert self._pool is not None
            out = [f.result() for f in [self._pool.submit(_evaluate_chunk, None, params[a:b], dt_ms, h,
                                                          horizon) for (a, b), h in zip(bounds, hints)]]
        for _ev, sim_s, feat_s, n in out:
            self.problem.sim_seconds += sim_s
            self.problem.feature_seconds += feat_s
            self.problem.n_simulated += n
        return concat_evaluations([ev for ev, *_ in out])
