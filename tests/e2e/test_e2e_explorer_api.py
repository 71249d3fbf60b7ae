"""The API the explorer stands on, against the real server (no browser): a surrogate's population with the
solver parameters of each member, spike times in /v1/sample, and a job's result file by file."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Iterator

import httpx
import numpy as np
import pytest

from conftest import LiveServer, default_surrogate, tiny_lif_job, wait_job


@pytest.fixture(scope="module")
def c(server: LiveServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def test_population_members_are_real_neurons_of_the_surrogate(c: httpx.Client) -> None:
    s = default_surrogate(c)
    r = c.get(f"/v1/models/{s['name']}/population", params={"n": 4, "seed": 3})
    assert r.status_code == 200, r.text
    pop = r.json()
    assert pop["family"] == "hh" and len(pop["members"]) == 4 and pop["n_inside_ranges"] <= pop["n_members"]
    again = c.get(f"/v1/models/{s['name']}/population", params={"n": 4, "seed": 3}).json()
    assert [m["member"] for m in again["members"]] == [m["member"] for m in pop["members"]]  # seeded
    other = c.get(f"/v1/models/{s['name']}/population", params={"n": 4, "seed": 4}).json()
    assert [m["member"] for m in other["members"]] != [m["member"] for m in pop["members"]]
    families = {f["name"]: f for f in c.get("/v1/models").json()["families"]}
    hh_names = {p["name"] for p in families["hh"]["parameters"]}
    for m in pop["members"]:
        assert set(m["params"]) == hh_names
        for name, (lo, hi) in s["feature_ranges"].items():
            assert lo <= m["features"][name] <= hi, (name, m["features"][name])
    if pop["heldout_known"]:  # held-out members come first
        flags = [m["heldout"] for m in pop["members"]]
        assert flags == sorted(flags, reverse=True)
    # The surrogate takes the members' features as they are...
    feats = [m["features"] for m in pop["members"]]
    r = c.post("/v1/sample", json={"n_samples": 4, "features": feats, "seed": 0,
                                   "stimulus": {"kind": "step", "amplitude_pA": 0.0}})
    assert r.status_code == 200, r.text
    names = r.json()["feature_names"]
    np.testing.assert_allclose(r.json()["features"], [[f[n] for n in names] for f in feats], rtol=1e-6)
    # ...and Brian2 with a member's parameters rests where the member's v_rest feature says (the pre-step
    # voltage base eFEL measured on its training trace, 90-100 ms into a run that then started at E_leak; runs
    # start at the steady state now, so this also bounds what that settling moved).
    m = pop["members"][0]
    sim = c.post("/v1/simulate", json={
        "family": "hh", "preset": pop["preset"], "params": [m["params"]], "duration_ms": 100.0, "dt_ms": 0.05,
        "record_dt_ms": 0.1, "stimulus": {"kind": "step", "amplitude_pA": 0.0, "start_ms": 50.0, "duration_ms": 10.0}})
    assert sim.status_code == 200, sim.text
    v = np.asarray(sim.json()["v_mV"][0], dtype=np.float64)
    assert abs(float(np.mean(v[900:1000])) - m["features"]["v_rest_mV"]) < 1.0


def test_population_of_an_unknown_surrogate_is_404(c: httpx.Client) -> None:
    r = c.get("/v1/models/no_such_surrogate/population")
    assert r.status_code == 404 and "no_such_surrogate" in r.json()["detail"]
    assert c.get("/v1/models/hh_fs/population", params={"n": 0}).status_code == 422


def test_sample_spike_times_agree_with_the_counts(c: httpx.Client) -> None:
    s = default_surrogate(c)
    body = {"n_samples": 8, "seed": 5, "stimulus": {"kind": "step", "amplitude_pA": 240.0}}
    r = c.post("/v1/sample", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    start = s["stimulus_start_ms"]
    end = start + s["stimulus_duration_ms"]
    v = np.asarray(out["v_mV"])
    assert len(out["spike_times_ms"]) == 8
    assert sum(out["spike_counts"]) > 0
    for k, times in enumerate(out["spike_times_ms"]):
        t = np.asarray(times)
        assert np.all(np.diff(t) > 0) and np.all((t >= 0) & (t <= s["duration_ms"]))
        assert int(np.sum((t >= start) & (t <= end))) == out["spike_counts"][k]
        # Each time is a peak of that trace above the -20 mV threshold.
        idx = np.round(t / out["dt_ms"]).astype(int)
        assert np.all(v[k, np.clip(idx, 0, v.shape[1] - 1)] > -20.0)
    # The .npz carries the same spikes as CSR (as the datasets store them).
    z = c.post("/v1/sample", json=body, headers={"Accept": "application/x-npz"})
    with np.load(io.BytesIO(z.content)) as npz:
        index, flat = npz["spike_index"], npz["spike_times_ms"]
        for k, times in enumerate(out["spike_times_ms"]):
            np.testing.assert_allclose(flat[index[k]:index[k + 1]], times, atol=1e-3)


def test_job_result_file_by_file(c: httpx.Client) -> None:
    job = c.post("/v1/jobs", json=tiny_lif_job("e2e-files", n_models=2, seed=11)).json()
    early = c.get(f"/v1/jobs/{job['id']}/files")
    done = wait_job(c, job["id"], ("succeeded", "failed", "cancelled"))
    assert done["state"] == "succeeded", done
    if early.status_code != 200:  # asked before it finished: no result yet
        assert early.status_code == 409 and "succeeded" in early.json()["detail"]
    listing = c.get(f"/v1/jobs/{job['id']}/files").json()
    names = [f["name"] for f in listing["files"]]
    assert "manifest.json" in names and any(n.endswith(".h5") for n in names)
    manifest = c.get(f"/v1/jobs/{job['id']}/files/manifest.json")
    assert manifest.status_code == 200 and manifest.headers["content-type"].startswith("application/json")
    archive = c.get(f"/v1/jobs/{job['id']}/result")
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
        inside = next(n for n in zf.namelist() if n.endswith("manifest.json"))
        assert json.loads(zf.read(inside)) == manifest.json()  # the same file as in the archive
    for f in listing["files"]:
        assert f["url"] == f"/v1/jobs/{job['id']}/files/{f['name']}"
        assert f["bytes"] == len(c.get(f["url"]).content)
    missing = c.get(f"/v1/jobs/{job['id']}/files/nope.json")
    assert missing.status_code == 404 and "manifest.json" in missing.json()["detail"]
    assert c.get(f"/v1/jobs/{job['id']}/files/..%2Fspec.json").status_code in (404, 422)
    assert c.get(f"/v1/jobs/{'0' * 32}/files").status_code == 404
