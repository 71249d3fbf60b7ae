"""Crash and restart: SIGKILL the server (and its Dask workers) while a datagen job runs, start it again on
the same data dir: the job is found orphaned, resumed, finishes without recomputing the shards that were
complete before the crash (same bytes, same mtime), and earlier results stay downloadable."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import httpx

from conftest import LiveServer, tiny_lif_job, wait_job


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_sigkill_while_running_then_resume(server: LiveServer) -> None:
    with server.client() as c:
        finished_before = [j for j in c.get("/v1/jobs", params={"state": "succeeded", "limit": 500}).json()["items"]]
        r = c.post("/v1/jobs", json=tiny_lif_job("e2e-restart", n_models=3, seed=21))
        assert r.status_code == 202, r.text
        jid = r.json()["id"]
        job = wait_job(c, jid, ("succeeded", "failed", "cancelled"), timeout_s=240,
                       until=lambda j: j["state"] == "running" and j["progress"]["done"] >= 1)
        assert job["state"] == "running", f"job ended before the crash could be staged: {job}"
    dataset = server.data_dir / "jobs" / jid / "dataset"
    done_before = {p.name: (_sha(p), p.stat().st_mtime_ns) for p in dataset.glob("shard-*.h5")}
    assert 1 <= len(done_before) < 3

    server.kill()
    t0 = time.monotonic()
    server.start()
    restart_s = time.monotonic() - t0

    with server.client() as c:
        job = wait_job(c, jid, ("succeeded", "failed", "cancelled"), timeout_s=240)
        assert job["state"] == "succeeded", job
        assert job["attempts"] == 2  # claimed once before the crash, once after
        assert job["progress"]["done"] == job["progress"]["total"] == 3
        skipped = {f"shard-{i:05d}.h5" for i in job["result"]["skipped_shards"]}
        assert set(done_before) <= skipped  # nothing finished was recomputed
        for name, (sha, mtime) in done_before.items():
            p = dataset / name
            assert _sha(p) == sha and p.stat().st_mtime_ns == mtime
        assert not list(dataset.glob(".shard-*.tmp-*"))  # half-written shards were cleaned up
        # Jobs finished before the crash are still there and downloadable.
        for old in finished_before:
            assert c.get(f"/v1/jobs/{old['id']}").json()["state"] == "succeeded"
            assert c.get(f"/v1/jobs/{old['id']}/result").status_code == 200
        r = c.get(f"/v1/jobs/{jid}/result")
        assert r.status_code == 200 and len(r.content) > 1000
    assert restart_s < 240
    assert server.starts == 2
    assert httpx.get(server.url + "/health").status_code == 200
