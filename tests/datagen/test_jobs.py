"""Dask batch jobs on a real LocalCluster: a few hundred neurons across 2 workers, worker and driver
crashes mid-job, resume without recomputation, byte-identical output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from noble.datagen.config import parse_config
from noble.datagen.dataset import open_dataset, read_manifest
from noble.datagen.jobs import dask_client, run_datagen

CFG = {
    "name": "pop", "family": "lif", "preset": "default", "n_models": 50, "models_per_shard": 10, "seed": 3,
    "variability": {"cv": 0.15, "sd_potential_mV": 1.0},
    "protocol": {"kind": "fi_sweep", "amplitudes_pA": [-50, 150, 220, 300, 400, 500], "start_ms": 50,
                 "duration_ms": 200},
    "duration_ms": 300, "rheobase_duration_ms": 200, "noise": {"sigma_pA": 5.0},
}


@pytest.fixture(scope="module")
def cfg():
    return parse_config(CFG)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, cfg) -> Path:
    """A clean run on 2 workers, during which one worker process is SIGKILLed after the first shard."""
    d = tmp_path_factory.mktemp("ref")
    with dask_client(workers=2) as client:
        pids = client.run(os.getpid)
        first_done = threading.Event()

        def on_progress(done: int, total: int) -> None:
            if done == 0:
                # what a task attempt killed mid-write leaves (whether the SIGKILL below lands mid-write depends
                # on timing): the end-of-job sweep must remove it
                (d / ".shard-00004.h5.tmp-999999").write_bytes(b"partial")
            if done >= 1:
                first_done.set()

        def killer() -> None:
            if first_done.wait(timeout=300):
                os.kill(next(iter(pids.values())), signal.SIGKILL)

        t = threading.Thread(target=killer, daemon=True)
        t.start()
        summary = run_datagen(cfg, d, client=client, progress=False, on_progress=on_progress, retries=2)
        t.join(timeout=5)
    assert first_done.is_set()
    assert summary.ok, summary.failed
    assert sorted(summary.computed) == list(range(cfg.n_shards))
    return d


def test_dataset_is_valid_after_worker_kill(reference: Path, cfg) -> None:
    manifest = read_manifest(reference)
    assert manifest["complete"] and manifest["n_shards"] == 5 and manifest["config_digest"] == cfg.digest()
    rows = 0
    ids = set()
    for path in open_dataset(reference):
        with h5py.File(path, "r") as h5:
            v = h5["v_mV"][:]
            assert v.shape[1] == 3000 and np.all(np.isfinite(v))
            rows += v.shape[0]
            ids.update(h5["model_id"][:].tolist())
    assert rows == 50 * 6 and len(ids) == 50  # a few hundred neurons, every model id unique
    assert not list(reference.glob(".shard-*"))  # no partial files left behind


def test_driver_killed_mid_job_resumes_without_recomputing(tmp_path: Path, reference: Path) -> None:
    config = tmp_path / "pop.yaml"
    config.write_text(yaml.safe_dump(CFG))
    out = tmp_path / "ds"
    cmd = [sys.executable, "-m", "noble.cli", "datagen", "run", str(config), "--out", str(out), "--workers", "2", "-q"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    done_before: list[dict] = []
    while time.time() < deadline:
        manifest = read_manifest(out) if (out / "manifest.json").exists() else None
        if manifest and len(manifest["shards"]) >= 2:
            done_before = manifest["shards"]
            break
        if proc.poll() is not None:
            pytest.fail(f"job ended before it could be killed: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its LocalCluster workers, mid-job
    proc.wait()
    assert done_before, "no shard finished in time"
    mtimes = {s["file"]: (out / s["file"]).stat().st_mtime_ns for s in done_before}

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "already done" in rerun.stderr
    manifest = read_manifest(out)
    assert manifest["complete"]
    for s in done_before:  # finished shards were not recomputed
        assert (out / s["file"]).stat().st_mtime_ns == mtimes[s["file"]]
    # Byte-identical to the reference run, despite the kills.
    ref = {s["file"]: s["sha256"] for s in read_manifest(reference)["shards"]}
    assert {s["file"]: s["sha256"] for s in manifest["shards"]} == ref
    assert (out / "manifest.json").read_text() == (reference / "manifest.json").read_text()


def test_refuses_directory_of_another_config(reference: Path) -> None:
    other = parse_config({**CFG, "seed": 4})
    with pytest.raises(ValueError, match="another config"):
        run_datagen(other, reference, progress=False)
