"""A REAL server for the end-to-end tests: `python -m noble.cli serve` in a subprocess (its own process
group, so a SIGKILL takes its Dask workers and Brian2 process with it) on a free localhost port, with a
temporary data dir, API keys on and small limits; one per session, restarted in place by the restart test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

API_KEY = "e2e-key-1"
ORDER = ["test_e2e_api.py", "test_e2e_restart.py", "test_e2e_fuzz.py"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """API tests first, then the restart (it kills the server), then fuzzing (it floods the job queue)."""
    def key(item: pytest.Item) -> int:
        name = Path(str(item.fspath)).name
        return ORDER.index(name) if name in ORDER else len(ORDER)

    items.sort(key=key)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """Start, SIGKILL and restart `noble serve` on one port and data dir."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "NOBLE_DATA_DIR": str(data_dir), **env}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir.parent / "server.log"
        self.starts = 0

    def start(self, timeout_s: float = 240.0) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "noble.cli", "serve", "--host", "127.0.0.1",
                                      "--port", str(self.port)], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.starts += 1
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                r = httpx.get(self.url + "/ready", timeout=5)
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"server not ready after {timeout_s} s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the whole process group (server, Dask workers, Brian2 worker): a crash."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        self.proc = None

    def stop(self) -> None:
        """SIGTERM (graceful shutdown), then make sure nothing of the group is left."""
        if self.proc is None:
            return
        try:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc = None

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def client(self, **kw: Any) -> httpx.Client:
        headers = {"X-API-Key": API_KEY, **kw.pop("headers", {})}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kw.pop("timeout", 120), **kw)


@contextlib.contextmanager
def live_server(prefix: str, env: dict[str, str]) -> Iterator[LiveServer]:
    """A started LiveServer on a fresh data dir; stopped (and its files removed unless NOBLE_KEEP_E2E) after."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    srv = LiveServer(base / "store", env)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        if os.environ.get("NOBLE_KEEP_E2E"):
            print(f"e2e files kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def server() -> Iterator[LiveServer]:
    with live_server("noble-e2e-", {
        "NOBLE_API_KEYS": f"{API_KEY},e2e-key-2",
        "NOBLE_MAX_BODY_BYTES": "300000",
        "NOBLE_BRIAN_TARGET": "numpy",  # no C compilation in tests: cold machines stay quick
        "NOBLE_SIMULATE_MAX_NEURON_MS": "2000",
        "NOBLE_SIMULATE_MAX_NEURON_STEPS": "3000",  # e.g. 2 neurons x 150 ms at 0.1 ms: keeps fuzzing quick
        "NOBLE_SIMULATE_TIMEOUT_S": "120",
        "NOBLE_MAX_DURATION_MS": "1000",
        "NOBLE_JOB_MAX_NEURON_MS": "6000",
        "NOBLE_SAMPLE_MAX_N": "64",
        "NOBLE_DASK_WORKERS": "2",
        "NOBLE_JOBS_MAX_CONCURRENT": "2",
        "NOBLE_JOB_HEARTBEAT_S": "0.5",
        "NOBLE_JOB_STALE_S": "60",
        "NOBLE_LOG_LEVEL": "info",
    }) as srv:
        yield srv


def tiny_lif_job(name: str, n_models: int, seed: int = 3) -> dict[str, Any]:
    """A datagen job small enough for tests: 1 LIF model per shard, one 300 pA step, 150 ms traces."""
    return {"kind": "datagen", "config": {
        "name": name, "family": "lif", "n_models": n_models, "models_per_shard": 1, "seed": seed,
        "protocol": [{"kind": "step", "amplitude_pA": 300.0, "start_ms": 20.0, "duration_ms": 100.0}],
        "duration_ms": 150.0, "dt_ms": 0.1, "record_dt_ms": 0.1, "rheobase_duration_ms": 100.0,
        "rheobase_max_pA": 500.0, "brian_target": "numpy", "variability": {"cv": 0.1, "sd_potential_mV": 1.0},
        "acceptance": {"oversample": 1.0}}}


def wait_job(c: httpx.Client, job_id: str, states: tuple[str, ...], timeout_s: float = 240.0,
             until: Any = None) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = c.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in states or (until is not None and until(job)):
            return job
        time.sleep(0.25)
    raise AssertionError(f"job {job_id} still {job.get('state')} after {timeout_s} s: {job}")


def default_surrogate(c: httpx.Client) -> dict[str, Any]:
    """The default surrogate's description. The shipped checkpoint (noble/assets/hh_fs) must load: a server
    without it fails the test with the registry's errors instead of skipping."""
    models = c.get("/v1/models").json()
    default = [s for s in models["surrogates"] if s["default"]]
    assert default, f"the default surrogate did not load: {models['surrogate_errors']}"
    return default[0]
