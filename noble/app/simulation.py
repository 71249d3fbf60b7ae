"""Brian2 ground truth for /v1/simulate, in worker processes so the event loop stays free.

The time limit NOBLE_SIMULATE_TIMEOUT_S is enforced twice: inside the worker by a SIGALRM timer (Brian2's
runtime loop returns to Python every step, so the run stops cleanly and the warm worker stays), and by the
server, which kills the pool's processes if a worker has not answered `kill_grace_s` after that (a stuck
C loop) and starts a fresh pool. Spawned (not forked) so workers never inherit the server's threads or torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


class SimulationTimeout(Exception):
    pass


class SimulationBusy(Exception):
    pass


class SimulationCrashed(Exception):
    pass


class SimulationFailed(Exception):
    """The simulator raised for these inputs (reported to the client, not a server fault)."""


class _WorkerTimeout(Exception):
    """Raised inside the worker by the SIGALRM timer."""


def _warm() -> bool:
    import brian2  # noqa: F401 - import once per worker so the first request does not pay it

    return True


def simulate_task(req: dict[str, Any]) -> dict[str, Any]:
    """Run one /v1/simulate request (a validated, plain-dict payload) and return arrays; stops itself
    after req['timeout_s'] seconds of running."""
    timeout_s = req.get("timeout_s")
    if not timeout_s:
        return _simulate(req)
    import signal

    fired: list[bool] = []

    def _alarm(signum: int, frame: Any) -> None:
        fired.append(True)
        raise _WorkerTimeout("alarm")

    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, float(timeout_s))
    try:
        out = _simulate(req)
        signal.setitimer(signal.ITIMER_REAL, 0)
        return out
    except BaseException:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if fired:  # Brian2 may wrap the alarm in its own exception: what counts is that it fired
            return {"__timeout__": True}
        raise


def _simulate(req: dict[str, Any]) -> dict[str, Any]:
    from noble.datagen.features import trace_features
    from noble.datagen.models import get as get_family
    from noble.datagen.simulate import simulate
    from noble.datagen.stimuli import render, stim_window_ms

    family = get_family(req["family"])
    params = np.asarray(req["params"], dtype=np.float64)
    stim_model = req["stimulus_model"]
    stim = render(stim_model, req["duration_ms"], req["stim_dt_ms"])
    n = params.shape[0]
    t0 = time.perf_counter()
    res = simulate(family, params, np.broadcast_to(stim, (n, stim.shape[0])), stim_dt_ms=req["stim_dt_ms"],
                   duration_ms=req["duration_ms"], dt_ms=req["dt_ms"], record_dt_ms=req["record_dt_ms"],
                   noise_sigma_pA=req["noise_sigma_pA"], noise_tau_ms=req["noise_tau_ms"], seed=req["seed"])
    wall = time.perf_counter() - t0
    start, end = stim_window_ms(stim_model)
    amp = float(getattr(stim_model, "amplitude_pA", getattr(stim_model, "mean_pA", 0.0)))
    latency = np.full(n, np.nan)
    for k, st in enumerate(res.spike_times_ms):
        after = st[st >= start]
        if after.size:
            latency[k] = after[0] - start
    features: dict[str, np.ndarray] = {}
    if req.get("features"):
        try:
            features = trace_features(res.v_mV, res.record_dt_ms, start, min(end, req["duration_ms"]), amp)
        except Exception as exc:  # noqa: BLE001 - features are a bonus, the traces are the answer
            log.warning("feature extraction failed: %s", exc)
    stim_rec = render(stim_model, req["duration_ms"], req["record_dt_ms"])[: res.v_mV.shape[1]]
    return {"v_mV": res.v_mV, "t_ms": res.t_ms, "spike_times_ms": res.spike_times_ms,
            "spike_counts": res.spike_counts, "first_spike_latency_ms": latency, "stim_pA": stim_rec,
            "record_dt_ms": res.record_dt_ms, "wall_s": wall, "features": features,
            "stim_window_ms": (start, end), "amplitude_pA": amp}


class SimulationPool:
    """A small spawned process pool with a per-call time limit and a bound on queued calls."""

    def __init__(self, processes: int, timeout_s: float, max_pending: int, kill_grace_s: float = 60.0) -> None:
        self.processes = processes
        self.timeout_s = timeout_s
        self.kill_grace_s = kill_grace_s
        self.max_pending = max_pending
        self.pending = 0
        self._pool: ProcessPoolExecutor | None = None

    def _make(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))

    def warm(self) -> None:
        """Start the worker processes in the background (brian2 imported once)."""
        if self._pool is None:
            self._pool = self._make()
        for _ in range(self.processes):
            self._pool.submit(_warm)

    async def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        if self.pending >= self.max_pending:
            raise SimulationBusy(f"{self.pending} simulations already queued (NOBLE_SIMULATE_MAX_PENDING)")
        if self._pool is None:
            self._pool = self._make()
        pool = self._pool
        self.pending += 1
        try:
            fut = pool.submit(simulate_task, {**payload, "timeout_s": self.timeout_s})
            # The worker stops itself at timeout_s of running; the grace covers a cold worker start and
            # the wait behind queued requests. Past it, the worker is stuck: kill it.
            hard = self.timeout_s * (1 + self.pending) + self.kill_grace_s
            try:
                out = await asyncio.wait_for(asyncio.wrap_future(fut), timeout=hard)
            except asyncio.TimeoutError:
                self._kill(pool)
                raise SimulationTimeout(f"simulation exceeded the time limit of {self.timeout_s:g} s "
                                        "(NOBLE_SIMULATE_TIMEOUT_S); its worker was stopped") from None
            except BrokenProcessPool:
                self._kill(pool)
                raise SimulationCrashed("the simulation worker stopped (killed or out of memory); retry") from None
            except Exception as exc:  # noqa: BLE001 - Brian2 refusing or failing on these inputs
                log.warning("simulation failed: %s: %s", type(exc).__name__, exc)
                raise SimulationFailed(f"{type(exc).__name__}: {str(exc)[:1000]}") from None
            if out.get("__timeout__"):
                raise SimulationTimeout(f"simulation exceeded the time limit of {self.timeout_s:g} s "
                                        "(NOBLE_SIMULATE_TIMEOUT_S)")
            return out
        finally:
            self.pending -= 1

    def _kill(self, pool: ProcessPoolExecutor) -> None:
        """Stop a pool whose worker is stuck: kill its processes, start afresh on the next call."""
        procs = list(getattr(pool, "_processes", {}).values())
        for p in procs:
            with contextlib.suppress(Exception):
                p.kill()
        with contextlib.suppress(Exception):
            pool.shutdown(wait=False, cancel_futures=True)
        if self._pool is pool:
            self._pool = None
        log.warning("simulation pool restarted (killed %d process(es))", len(procs))

    def close(self) -> None:
        """Stop the workers now (a simulation still running is abandoned)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        for p in list(getattr(pool, "_processes", {}).values()):
            with contextlib.suppress(Exception):
                p.kill()
        with contextlib.suppress(Exception):
            pool.shutdown(wait=False, cancel_futures=True)
