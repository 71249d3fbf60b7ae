"""Every endpoint of a real `noble serve` over HTTP: health, auth, limits, models, Brian2 simulate (checked
against the LIF's analytic latency and rate), surrogate sampling (bands, reproducibility, formats,
micro-batching), and a datagen job through Dask to a dataset that opens with h5py and obeys LIF physics."""

from __future__ import annotations

import io
import math
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import httpx
import numpy as np
import pytest

from conftest import LiveServer, default_surrogate, tiny_lif_job, wait_job

STEP = {"kind": "step", "amplitude_pA": 300.0, "start_ms": 20.0, "duration_ms": 100.0}


@pytest.fixture(scope="module")
def c(server: LiveServer) -> httpx.Client:
    with server.client() as client:
        yield client


@pytest.fixture(scope="module")
def datagen_job(c: httpx.Client) -> dict[str, Any]:
    """Submitted as early as possible; the tests that need it finished come last."""
    r = c.post("/v1/jobs", json=tiny_lif_job("e2e-tiny", n_models=4))
    assert r.status_code == 202, r.text
    return r.json()


def test_health_ready_request_id(server: LiveServer, c: httpx.Client, datagen_job: dict[str, Any]) -> None:
    h = httpx.get(server.url + "/health")  # no key needed
    assert h.status_code == 200 and h.json()["status"] == "ok"
    r = httpx.get(server.url + "/ready", headers={"X-Request-ID": "e2e-req-42"})
    assert r.status_code == 200 and r.json()["ready"] is True
    assert r.json()["checks"]["dask"] == "ok" and r.json()["checks"]["store"].startswith("ok")
    assert r.headers["x-request-id"] == "e2e-req-42"
    assert re.fullmatch(r"[0-9a-f]{32}", httpx.get(server.url + "/health").headers["x-request-id"])
    # The request id reaches the structured log line of that request (written after the response).
    import time

    for _ in range(40):
        if '"request_id": "e2e-req-42"' in server.log_tail(400):
            break
        time.sleep(0.1)
    assert '"request_id": "e2e-req-42"' in server.log_tail(400)


def test_auth_and_body_limit(server: LiveServer) -> None:
    no_key = httpx.get(server.url + "/v1/models")
    assert no_key.status_code == 401 and "API key" in no_key.json()["detail"]
    assert httpx.get(server.url + "/v1/models", headers={"X-API-Key": "wrong"}).status_code == 401
    assert httpx.get(server.url + "/v1/models", headers={"Authorization": "Bearer e2e-key-2"}).status_code == 200
    assert httpx.post(server.url + "/v1/jobs", json=tiny_lif_job("x", 1)).status_code == 401
    big = b'{"n_samples": 1, "stimulus": {"kind": "waveform", "values_pA": [' + b"0.0," * 100_000 + b"0.0]}}"
    r = httpx.post(server.url + "/v1/sample", content=big,
                   headers={"X-API-Key": "e2e-key-1", "Content-Type": "application/json"})
    assert r.status_code == 413 and "300000" in r.json()["detail"]


def test_models_lists_families_with_units(c: httpx.Client) -> None:
    m = c.get("/v1/models").json()
    fams = {f["name"]: f for f in m["families"]}
    assert {"hh", "lif"} <= set(fams)
    hh = {p["name"]: p for p in fams["hh"]["parameters"]}
    assert hh["g_Na"]["unit"] == "mS/cm2" and hh["g_Na"]["low"] < hh["g_Na"]["default"] < hh["g_Na"]["high"]
    assert "fast_spiking" in fams["hh"]["presets"]
    lif = {p["name"]: p for p in fams["lif"]["parameters"]}
    assert lif["tau_m"]["unit"] == "ms" and lif["R"]["unit"] == "Mohm"
    for s in m["surrogates"]:
        assert s["n_time"] > 1 and s["dt_ms"] > 0 and math.isclose(s["duration_ms"], s["n_time"] * s["dt_ms"])
        for name in s["feature_names"]:
            lo, hi = s["feature_ranges"][name]
            assert lo < hi


LIF_BODY = {"family": "lif", "n_neurons": 2, "stimulus": STEP, "duration_ms": 150.0, "dt_ms": 0.1,
            "record_dt_ms": 0.1, "params": [{"tau_m": 20.0}, {"tau_m": 10.0}]}


@pytest.fixture(scope="module")
def lif_sim(c: httpx.Client) -> dict[str, Any]:
    r = c.post("/v1/simulate", json=LIF_BODY)
    assert r.status_code == 200, r.text
    return r.json()


def test_simulate_lif_matches_analytic_latency_and_rate(c: httpx.Client, lif_sim: dict[str, Any]) -> None:
    from noble.datagen.models.lif import LIF

    d = lif_sim
    assert d["n_time"] == 1500 and np.asarray(d["v_mV"]).shape == (2, 1500)
    p = dict(zip(d["param_names"], np.asarray(d["params"]).T))
    assert list(p["tau_m"]) == [20.0, 10.0]
    for k in range(2):
        lat = LIF.analytic_latency_ms(300.0, p["tau_m"][k], p["R"][k], p["V_rest"][k], p["V_th"][k])
        rate = LIF.analytic_rate_Hz(300.0, p["tau_m"][k], p["R"][k], p["V_rest"][k], p["V_th"][k], p["V_reset"][k],
                                    p["t_ref"][k])
        spikes = np.asarray(d["spike_times_ms"][k])
        assert abs(d["first_spike_latency_ms"][k] - lat) <= 0.11  # one integration step
        assert abs(spikes[0] - 20.0 - lat) <= 0.11
        isi = 1000.0 / rate
        assert abs(np.diff(spikes).mean() - isi) <= 0.11  # steady rate, to one step
        lo_n = int(np.floor((100.0 - lat - 0.11) / (isi + 0.11))) + 1
        hi_n = int(np.floor((100.0 - lat + 0.11) / (isi - 0.11))) + 1
        assert lo_n <= d["spike_counts"][k] == len(spikes[spikes < 120.0]) <= hi_n
        v = np.asarray(d["v_mV"][k])
        assert abs(v[:190].mean() - p["V_rest"][k]) < 1e-3  # at rest before the step
    # The same request as .npz: the same traces (a simulation is deterministic for its seed).
    npz = c.post("/v1/simulate", json=LIF_BODY, headers={"Accept": "application/x-npz"})
    assert npz.status_code == 200 and npz.headers["content-type"] == "application/x-npz"
    arrays = np.load(io.BytesIO(npz.content))
    np.testing.assert_array_equal(arrays["v_mV"], np.asarray(d["v_mV"], dtype=np.float32))
    assert list(arrays["param_names"]) == d["param_names"]


def test_simulate_nwb_reads_back(c: httpx.Client, lif_sim: dict[str, Any], tmp_path: Path) -> None:
    from noble.io.nwb import read_nwb

    nwb = c.post("/v1/simulate", json=LIF_BODY, headers={"Accept": "application/x-nwb"})
    assert nwb.status_code == 200 and nwb.headers["content-type"] == "application/x-nwb", nwb.text
    assert nwb.content[:8] == b"\x89HDF\r\n\x1a\n"
    path = tmp_path / "sim.nwb"
    path.write_bytes(nwb.content)
    rec = read_nwb(path, stimulus="all")
    assert len(rec.sweeps) == 2
    for k, sw in enumerate(rec.sweeps):
        np.testing.assert_allclose(sw.v_mV, np.asarray(lif_sim["v_mV"][k]), atol=1e-4)
        assert sw.stim_amplitude_pA == 300.0 and sw.stim_start_ms == 20.0 and sw.stim_end_ms == 120.0


def test_fit_upload_is_checked_stored_and_queued_then_cancelled(server: LiveServer, c: httpx.Client,
                                                                 lif_sim: dict[str, Any]) -> None:
    """What POST /v1/fit does before any fitting: a file that is not a recording and bad options are refused
    (422 naming the field) without creating a job; a good upload is stored under the job's own directory with
    a name of ours (the client's path never reaches the file system) and queued with the options turned into
    the fit config; the queued job can be cancelled. No fit runs here: this job is cancelled before it
    would. A fit job running to its result through the service is the browser test's (tests/e2e/
    test_e2e_browser*.py); the fit itself is tested in tests/fit."""
    junk = c.post("/v1/fit", files={"recording": ("cell.abf", b"not a recording at all", "application/octet-stream")})
    assert junk.status_code == 422 and junk.json()["detail"][0]["loc"] == ["body", "recording"]
    nwb = c.post("/v1/simulate", json=LIF_BODY, headers={"Accept": "application/x-nwb"}).content
    bad_opts = c.post("/v1/fit", files={"recording": ("cell.nwb", nwb)}, data={"options": '{"popsize": 2}'})
    assert bad_opts.status_code == 422 and bad_opts.json()["detail"][0]["loc"] == ["body", "options", "popsize"]
    bad_restarts = c.post("/v1/fit", files={"recording": ("cell.nwb", nwb)}, data={"options": '{"restarts": 0}'})
    assert bad_restarts.status_code == 422
    assert bad_restarts.json()["detail"][0]["loc"] == ["body", "options", "restarts"]
    bad_tol = c.post("/v1/fit", files={"recording": ("cell.nwb", nwb)},
                     data={"options": '{"tolerances": {"latency_ms": -1}}'})
    assert bad_tol.status_code == 422
    assert bad_tol.json()["detail"][0]["loc"] == ["body", "options", "tolerances", "latency_ms"]
    bad_polish = c.post("/v1/fit", files={"recording": ("cell.nwb", nwb)},
                        data={"options": '{"polish_generations": -1}'})
    assert bad_polish.status_code == 422
    assert bad_polish.json()["detail"][0]["loc"] == ["body", "options", "polish_generations"]
    bad_kir = c.post("/v1/fit", files={"recording": ("cell.nwb", nwb)}, data={"options": '{"kir_current": "maybe"}'})
    assert bad_kir.status_code == 422
    assert bad_kir.json()["detail"][0]["loc"] == ["body", "options", "kir_current"]
    r = c.post("/v1/fit", files={"recording": ("../../etc/evil name.nwb", nwb)},
               data={"options": '{"stage1": "off", "generations": 1, "popsize": 4, "restarts": 2, '
                                '"polish_generations": 5, "tolerances": {"latency_ms": 3}, '
                                '"kir_current": "off", "bridge_balance": "off"}'})
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["spec"]["config"]["objective"]["tolerances"]["latency_ms"] == 3
    assert job["spec"]["config"]["kir_current"] == "off" and job["spec"]["config"]["bridge_balance"] == "off"
    assert job["spec"]["config"]["polish"] == {"generations": 5}
    assert job["kind"] == "fit" and job["spec"]["sweeps_found"] == 2 and job["spec"]["recording"] == "input/recording.nwb"
    stored = server.data_dir / "jobs" / job["id"] / "input" / "recording.nwb"
    assert stored.read_bytes() == nwb  # the upload, byte for byte, under the job's directory
    assert not any((server.data_dir / "uploads").glob("*"))  # staging emptied, refused uploads included
    assert not list(server.data_dir.parent.rglob("evil name*"))
    d = c.delete(f"/v1/jobs/{job['id']}")
    assert d.status_code == 202 and d.json()["state"] == "cancelled"
    assert c.get(f"/v1/jobs/{job['id']}").json()["state"] == "cancelled"
    assert c.get(f"/v1/jobs/{job['id']}/result").status_code == 409  # a cancelled fit has no result


def test_simulate_limits(c: httpx.Client) -> None:
    too_big = c.post("/v1/simulate", json={"family": "lif", "n_neurons": 30, "stimulus": STEP, "duration_ms": 150.0})
    assert too_big.status_code == 413 and "NOBLE_SIMULATE_MAX_NEURON_MS" in too_big.json()["detail"]
    fine_dt = c.post("/v1/simulate", json={"family": "lif", "n_neurons": 2, "stimulus": STEP, "duration_ms": 150.0,
                                           "dt_ms": 0.005})
    assert fine_dt.status_code == 413 and "NOBLE_SIMULATE_MAX_NEURON_STEPS" in fine_dt.json()["detail"]
    bad = c.post("/v1/simulate", json={"family": "nope", "stimulus": STEP, "duration_ms": 150.0})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["body", "family"]
    late = c.post("/v1/simulate", json={"family": "lif", "stimulus": STEP, "duration_ms": 100.0})
    assert late.status_code == 422 and late.json()["detail"][0]["loc"] == ["body", "stimulus"]
    html = c.post("/v1/simulate", json={"family": "lif", "stimulus": STEP, "duration_ms": 150.0, "dt_ms": 0.1},
                  headers={"Accept": "text/html"})
    assert html.status_code == 406


def test_jobs_validation(c: httpx.Client, datagen_job: dict[str, Any]) -> None:
    bad = tiny_lif_job("bad", 1)
    bad["config"]["family"] = "nope"
    r = c.post("/v1/jobs", json=bad)
    assert r.status_code == 422 and "family" in str(r.json()["detail"])
    bad = tiny_lif_job("bad", 1)
    bad["config"]["preset"] = "bursting"
    r = c.post("/v1/jobs", json=bad)
    assert r.status_code == 422 and "preset" in str(r.json()["detail"])
    r = c.post("/v1/jobs", json=tiny_lif_job("big", 100))
    assert r.status_code == 413 and "NOBLE_JOB_MAX_NEURON_MS" in r.json()["detail"]
    r = c.post("/v1/jobs", json={"kind": "train", "dataset_job_id": "0" * 32})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "dataset_job_id"]
    r = c.post("/v1/jobs", json={"kind": "fit"})
    assert r.status_code == 422
    assert c.get("/v1/jobs/" + "0" * 32).status_code == 404
    assert c.get("/v1/jobs/xyz").status_code == 422
    assert c.delete("/v1/jobs/" + "f" * 32).status_code == 404
    assert c.get("/v1/jobs", params={"limit": 0}).status_code == 422
    assert c.get("/v1/jobs", params={"state": "exploded"}).status_code == 422
    # Path tricks never reach the file system.
    for evil in ("..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "....//....//etc/passwd"):
        r = c.get(f"/v1/jobs/{evil}/result")
        assert r.status_code in (404, 422) and "root:" not in r.text


def test_cancel_a_job(c: httpx.Client) -> None:
    r = c.post("/v1/jobs", json=tiny_lif_job("e2e-cancel", n_models=3, seed=11))
    assert r.status_code == 202
    jid = r.json()["id"]
    d = c.delete(f"/v1/jobs/{jid}")
    assert d.status_code == 202 and d.json()["state"] == "cancelled"
    assert c.delete(f"/v1/jobs/{jid}").status_code == 409
    assert c.get(f"/v1/jobs/{jid}/result").status_code == 409
    import time

    time.sleep(2)  # a runner that had started must not overwrite the cancel
    assert c.get(f"/v1/jobs/{jid}").json()["state"] == "cancelled"


def test_datagen_job_dataset_opens_with_h5py(c: httpx.Client, datagen_job: dict[str, Any], train_job: dict[str, Any],
                                             tmp_path: Path) -> None:
    from noble.datagen.models.lif import LIF

    jid = datagen_job["id"]
    job = wait_job(c, jid, ("succeeded", "failed", "cancelled"))
    assert job["state"] == "succeeded", job
    assert job["progress"] == {"done": 4, "total": 4, "fraction": 1.0}
    assert job["result_url"] == f"/v1/jobs/{jid}/result" and "path" not in job["result"]
    assert jid in {j["id"] for j in c.get("/v1/jobs", params={"kind": "datagen", "limit": 500}).json()["items"]}
    r = c.get(job["result_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    zipfile.ZipFile(io.BytesIO(r.content)).extractall(tmp_path)
    root = tmp_path / "e2e-tiny"
    import json

    manifest = json.loads((root / "manifest.json").read_text())
    assert manifest["complete"] and manifest["n_shards"] == 4
    lat_col = None
    for rec in manifest["shards"]:
        with h5py.File(root / rec["file"], "r") as h5:
            v = h5["v_mV"][:]
            assert v.shape == (1, 1500) and v.dtype == np.float32 and h5.attrs["model"] == "lif"
            names = [n.decode() for n in h5["params"].attrs["names"]]
            p = dict(zip(names, h5["params"][0]))
            fnames = [n.decode() for n in h5["features"].attrs["names"]]
            feats = dict(zip(fnames, h5["features"][0]))
        # LIF physics in the downloaded data: first-spike latency and the rheobase bisection.
        lat = LIF.analytic_latency_ms(300.0, p["tau_m"], p["R"], p["V_rest"], p["V_th"])
        assert abs(feats["first_spike_latency_ms"] - lat) <= 0.25
        i_rh = (p["V_th"] - p["V_rest"]) / p["R"] * 1e3  # mV / Mohm = nA -> pA
        assert i_rh - 1.5 <= feats["I_thr_pA"] <= i_rh / (1 - math.exp(-100.0 / p["tau_m"])) + 1.5
        lat_col = lat
    assert lat_col is not None
    tar = c.get(job["result_url"], params={"format": "tar"})
    assert tar.status_code == 200 and tar.headers["content-type"] == "application/x-tar"


def test_metrics_after_traffic(c: httpx.Client, datagen_job: dict[str, Any]) -> None:
    text = c.get("/metrics").text
    assert re.search(r'noble_http_requests_total\{method="POST",route="/v1/simulate",status="200"\} [1-9]', text)
    assert re.search(r'noble_http_request_duration_seconds_count\{method="GET",route="/v1/models"\} [1-9]', text)
    assert re.search(r'noble_http_requests_total\{method="GET",route="/v1/models",status="401"\} [1-9]', text)
    assert re.search(r'noble_jobs\{kind="datagen",state="succeeded"\} [1-9]', text)
    assert re.search(r'noble_jobs\{kind="datagen",state="cancelled"\} [1-9]', text)
    assert "noble_simulate_seconds_count" in text


TRAIN_OPTIONS = {"name": "e2e-tiny-fno", "holdout_models": 1, "epochs": 1, "batch_size": 2, "max_steps_per_epoch": 2,
                 "threads": 1, "dt_ms": 0.5, "n_modes": 16, "hidden_channels": 8, "n_layers": 2, "n_frequencies": 2}


@pytest.fixture(scope="module")
def train_job(c: httpx.Client, datagen_job: dict[str, Any]) -> dict[str, Any]:
    """A tiny FNO trained on the e2e dataset by a train job (submitted once the dataset exists)."""
    job = wait_job(c, datagen_job["id"], ("succeeded", "failed", "cancelled"))
    assert job["state"] == "succeeded", job
    r = c.post("/v1/jobs", json={"kind": "train", "dataset_job_id": job["id"], "options": TRAIN_OPTIONS})
    assert r.status_code == 202, r.text
    return r.json()


def test_train_job_checkpoint_downloads_and_loads(c: httpx.Client, train_job: dict[str, Any], tmp_path: Path) -> None:
    from noble.operator import load_surrogate

    bad = c.post("/v1/jobs", json={"kind": "train", "dataset_job_id": train_job["id"]})
    assert bad.status_code == 422  # a train job is not a dataset
    job = wait_job(c, train_job["id"], ("succeeded", "failed", "cancelled"))
    assert job["state"] == "succeeded", job
    assert job["result"]["surrogate"] == f"job-{job['id']}" and job["result"]["n_time"] == 300
    r = c.get(job["result_url"])
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    zipfile.ZipFile(io.BytesIO(r.content)).extractall(tmp_path)
    sur = load_surrogate(tmp_path / "e2e-tiny-fno")
    assert sur.config.n_time == 300 and sur.config.dt_ms == 0.5 and sur.config.family == "lif"
    lo = np.array([sur.config.feature_ranges[n][0] for n in sur.config.feature_names])
    v = sur.predict(lo[None, :], sur.step_stimulus(300.0)[None, :])
    assert v.shape == (1, 300) and np.all(np.isfinite(v))


@pytest.fixture(scope="module")
def sample_target(c: httpx.Client, train_job: dict[str, Any]) -> dict[str, Any]:
    """The default surrogate if one is loaded, else the one the train job just made (`job-<id>`)."""
    models = c.get("/v1/models").json()
    default = [s for s in models["surrogates"] if s["default"]]
    if default:
        return default[0]
    job = wait_job(c, train_job["id"], ("succeeded", "failed", "cancelled"))
    if job["state"] != "succeeded":
        pytest.skip(f"no default surrogate and the train job {job['state']}")
    name = job["result"]["surrogate"]
    r = c.post("/v1/sample", json={"surrogate": name, "n_samples": 1, "stimulus": {"kind": "step", "amplitude_pA": 0}})
    assert r.status_code == 200, r.text  # loaded on first use
    listed = {s["name"]: s for s in c.get("/v1/models").json()["surrogates"]}
    assert name in listed and listed[name]["n_time"] == 300
    return listed[name]


def test_sample_simplest_call(c: httpx.Client) -> None:
    """The call of the README, with the shipped default surrogate and no surrogate named."""
    s = default_surrogate(c)
    r = c.post("/v1/sample", json={"n_samples": 16, "stimulus": {"kind": "step", "amplitude_pA": 200}, "seed": 1})
    assert r.status_code == 200, r.text
    v = np.asarray(r.json()["v_mV"], dtype=np.float64)
    assert v.shape == (16, s["n_time"]) and np.all(np.isfinite(v))
    pre = v[:, : int(s["stimulus_start_ms"] / s["dt_ms"])]
    assert -100.0 < np.median(pre) < -40.0  # a resting potential, in millivolts


def test_sample_bands_reproducibility_and_waveform(c: httpx.Client, sample_target: dict[str, Any]) -> None:
    s = sample_target
    name = None if s["default"] else s["name"]
    r = c.post("/v1/sample", json={"surrogate": name, "n_samples": 16,
                                   "stimulus": {"kind": "step", "amplitude_pA": 200}, "seed": 1})
    assert r.status_code == 200, r.text
    d = r.json()
    v = np.asarray(d["v_mV"], dtype=np.float64)
    assert v.shape == (16, s["n_time"]) and d["dt_ms"] == s["dt_ms"] and d["surrogate"] == s["name"]
    assert np.all(np.isfinite(v))
    b = {k: np.asarray(x, dtype=np.float64) for k, x in d["bands"].items()}
    assert np.all(b["q05"] <= b["q50"] + 1e-4) and np.all(b["q50"] <= b["q95"] + 1e-4)
    np.testing.assert_allclose(b["mean"], v.mean(axis=0), atol=1e-3)
    np.testing.assert_allclose(b["q50"], np.quantile(v, 0.5, axis=0), atol=1e-3)
    f = np.asarray(d["features"])
    for j, feat in enumerate(d["feature_names"]):
        lo, hi = s["feature_ranges"][feat]
        assert np.all((f[:, j] >= lo - 1e-6) & (f[:, j] <= hi + 1e-6))
    stim = np.asarray(d["stim_pA"])
    t = np.arange(s["n_time"]) * s["dt_ms"]
    on = (t >= s["stimulus_start_ms"] - 1e-9) & (t < s["stimulus_start_ms"] + s["stimulus_duration_ms"] - 1e-9)
    np.testing.assert_allclose(stim, 200.0 * on)
    assert len(d["spike_counts"]) == 16 and min(d["spike_counts"]) >= 0
    # Reproducible for a seed, different for another.
    again = c.post("/v1/sample", json={"surrogate": name, "n_samples": 16,
                                       "stimulus": {"kind": "step", "amplitude_pA": 200}, "seed": 1})
    np.testing.assert_allclose(np.asarray(again.json()["v_mV"]), v, atol=1e-3)
    other = c.post("/v1/sample", json={"surrogate": name, "n_samples": 16,
                                       "stimulus": {"kind": "step", "amplitude_pA": 200}, "seed": 2})
    assert not np.allclose(np.asarray(other.json()["features"]), f)
    # A waveform equal to the step on the surrogate's grid gives the same neurons and traces.
    wave = c.post("/v1/sample", json={"surrogate": name, "n_samples": 16, "seed": 1, "stimulus": {
        "kind": "waveform", "values_pA": (200.0 * on).tolist(), "dt_ms": s["dt_ms"]}})
    assert wave.status_code == 200, wave.text
    np.testing.assert_allclose(np.asarray(wave.json()["v_mV"]), v, atol=1e-3)


def test_sample_features_formats_and_errors(c: httpx.Client, sample_target: dict[str, Any], tmp_path: Path) -> None:
    s = sample_target
    sname = None if s["default"] else s["name"]
    names = s["feature_names"]
    mid = {n: float(np.mean(s["feature_ranges"][n])) for n in names}
    lo = {n: float(s["feature_ranges"][n][0]) for n in names}
    body = {"surrogate": sname, "n_samples": 2, "stimulus": {"kind": "step", "amplitude_pA": 150}, "seed": 3,
            "features": [mid, lo]}
    d = c.post("/v1/sample", json=body).json()
    np.testing.assert_allclose(np.asarray(d["features"]), [[mid[n] for n in names], [lo[n] for n in names]], rtol=1e-6)
    fixed = c.post("/v1/sample", json={"surrogate": sname, "n_samples": 4, "stimulus": {"kind": "step", "amplitude_pA": 150}, "seed": 3,
                                       "fixed_features": {names[0]: mid[names[0]]}})
    assert fixed.status_code == 200, fixed.text
    assert np.allclose(np.asarray(fixed.json()["features"])[:, 0], mid[names[0]])
    npz = c.post("/v1/sample", json=body, headers={"Accept": "application/x-npz"})
    assert npz.headers["content-type"] == "application/x-npz"
    arrays = np.load(io.BytesIO(npz.content))
    np.testing.assert_allclose(arrays["v_mV"], np.asarray(d["v_mV"]), atol=1e-3)
    assert list(arrays["feature_names"]) == names
    nwb = c.post("/v1/sample", json=body, headers={"Accept": "application/x-nwb"})
    if s["dt_ms"] <= 0.2:  # the NWB exporter wants >= 5 kHz sampling
        assert nwb.status_code == 200 and nwb.headers["content-type"] == "application/x-nwb"
        from noble.io.nwb import read_nwb

        (tmp_path / "s.nwb").write_bytes(nwb.content)
        rec = read_nwb(tmp_path / "s.nwb", stimulus="all")
        assert len(rec.sweeps) == 2
        np.testing.assert_allclose(rec.sweeps[0].v_mV, np.asarray(d["v_mV"][0]), atol=1e-3)
    else:
        assert nwb.status_code == 406 and "5000 Hz" in nwb.json()["detail"]
    # Errors name the field.
    out_of_range = dict(mid, **{names[0]: s["feature_ranges"][names[0]][1] * 10 + 1})
    r = c.post("/v1/sample", json={**body, "features": [out_of_range, mid]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "features", 0, names[0]]
    r = c.post("/v1/sample", json={**body, "features": [mid]})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "features"]
    r = c.post("/v1/sample", json={"surrogate": sname, "n_samples": 2,
                                   "stimulus": {"kind": "waveform", "values_pA": [0.0] * 7}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "stimulus", "values_pA"]
    assert c.post("/v1/sample", json={"surrogate": sname, "n_samples": 65,
                                      "stimulus": {"kind": "step", "amplitude_pA": 1}}).status_code == 413
    assert c.post("/v1/sample", json={"surrogate": "nope", "stimulus": {"kind": "step", "amplitude_pA": 1}}).status_code == 404


def test_sample_concurrent_requests_are_batched(server: LiveServer, c: httpx.Client,
                                                sample_target: dict[str, Any]) -> None:
    name = None if sample_target["default"] else sample_target["name"]

    def one(seed: int) -> np.ndarray:
        with server.client() as cc:
            r = cc.post("/v1/sample", json={"surrogate": name, "n_samples": 4, "stimulus": {"kind": "step", "amplitude_pA": 250},
                                            "seed": seed})
            assert r.status_code == 200, r.text
            return np.asarray(r.json()["v_mV"])

    sequential = [one(k) for k in range(3)]
    with ThreadPoolExecutor(12) as ex:
        concurrent = list(ex.map(one, range(12)))
    for k in range(3):  # sharing a forward pass changes nothing in a neuron's trace
        np.testing.assert_allclose(concurrent[k], sequential[k], atol=1e-3)
    text = c.get("/metrics").text
    s = float(re.search(r'noble_batch_size_requests_sum\{surrogate="[^"]+"\} ([0-9.e+]+)', text).group(1))
    n = float(re.search(r'noble_batch_size_requests_count\{surrogate="[^"]+"\} ([0-9.e+]+)', text).group(1))
    assert s > n  # at least one forward pass served several requests
