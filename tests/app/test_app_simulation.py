"""The /v1/simulate worker pool: a simulation past the time limit is killed (the pool restarts and serves
the next request), and the queue bound refuses work instead of piling it up."""

from __future__ import annotations

import asyncio
import os
import time

import numpy as np
import pytest

from noble.app.simulation import SimulationBusy, SimulationPool, SimulationTimeout
from noble.datagen.models.lif import LIF
from noble.datagen.stimuli import Step


def _payload(duration_ms: float, dt_ms: float) -> dict:
    vals = LIF.preset_values(None, None)
    return {"family": "lif", "params": np.array([[vals[n] for n in LIF.param_names()]]),
            "stimulus_model": Step(amplitude_pA=300.0, start_ms=20.0, duration_ms=100.0), "duration_ms": duration_ms,
            "stim_dt_ms": max(dt_ms, 0.1), "dt_ms": dt_ms, "record_dt_ms": max(dt_ms, 0.1), "noise_sigma_pA": 0.0,
            "noise_tau_ms": 5.0, "seed": 0, "features": False}


def _gone(pid: int, timeout_s: float) -> bool:
    """True once the process is dead (reaped or a zombie). Not `Process.is_alive()`: the executor's manager
    thread reaps the same child concurrently, and a `waitpid` that loses that race reports it alive."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_timeout_kills_and_the_pool_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOBLE_BRIAN_TARGET", "numpy")  # spawned workers inherit it: no compilation here

    async def main() -> tuple[float, dict, Exception | None]:
        pool = SimulationPool(processes=1, timeout_s=8.0, max_pending=1, kill_grace_s=120.0)
        pool.warm()
        try:
            # 5 s at dt 0.5 us is 10^7 steps: far past the 8 s limit with numpy code generation.
            t0 = time.perf_counter()
            with pytest.raises(SimulationTimeout):
                await pool.run(_payload(5000.0, 0.0005))
            waited = time.perf_counter() - t0
            proc = next(iter(pool._pool._processes.values()))
            out = await pool.run(_payload(150.0, 0.1))  # the same worker, stopped cleanly, answers
            assert proc.is_alive() and next(iter(pool._pool._processes.values())) is proc
            pool._kill(pool._pool)  # the hard path: processes killed, a fresh pool on the next call
            assert _gone(proc.pid, timeout_s=20.0)
            again = await pool.run(_payload(150.0, 0.1))
            np.testing.assert_array_equal(again["v_mV"], out["v_mV"])
            busy = None
            pool.pending = pool.max_pending  # as if one were queued already
            try:
                await pool.run(_payload(150.0, 0.1))
            except SimulationBusy as exc:
                busy = exc
            pool.pending = 0
            return waited, out, busy
        finally:
            pool.close()

    waited, out, busy = asyncio.run(main())
    assert 8.0 <= waited < 60.0
    lat = LIF.analytic_latency_ms(300.0, 20.0, 100.0, -70.0, -50.0)
    assert abs(out["first_spike_latency_ms"][0] - lat) <= 0.11
    assert out["v_mV"].shape == (1, 1500)
    assert isinstance(busy, SimulationBusy)
    assert os.environ.get("NOBLE_BRIAN_TARGET") == "numpy"
