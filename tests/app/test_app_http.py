"""In-process HTTP checks that need no Dask or surrogate: API keys, body limit (declared and streamed),
request ids, content negotiation, schema bounds, and the /v1/simulate request validation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import numpy as np
import pytest

from noble.app.encode import choose_format
from noble.app.errors import ApiError
from noble.app.main import create_app
from noble.config import Settings


def _client(tmp_path: Path, **kw: object) -> httpx.AsyncClient:
    app = create_app(Settings(data_dir=tmp_path, **kw))  # lifespan not run: no store, no Dask
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def test_api_keys(tmp_path: Path) -> None:
    async def main() -> dict[str, httpx.Response]:
        async with _client(tmp_path, api_keys="k-one, k-two") as c:
            return {
                "none": await c.get("/v1/models"),
                "wrong": await c.get("/v1/models", headers={"X-API-Key": "k-three"}),
                "prefix": await c.get("/v1/models", headers={"X-API-Key": "k-on"}),
                "header": await c.get("/v1/models", headers={"X-API-Key": "k-two"}),
                "bearer": await c.get("/v1/models", headers={"Authorization": "Bearer k-one"}),
                "bad_bearer": await c.get("/v1/models", headers={"Authorization": "Bearer nope"}),
                "health": await c.get("/health"),
                "jobs": await c.post("/v1/jobs", json={}),
            }

    r = asyncio.run(main())
    for k in ("none", "wrong", "prefix", "bad_bearer", "jobs"):
        assert r[k].status_code == 401, k
        assert "API key" in r[k].json()["detail"]
    assert r["none"].headers["www-authenticate"].startswith("Bearer")
    # Past auth the handler runs (503 here only because this app was not started).
    assert r["header"].status_code == 503 and r["bearer"].status_code == 503
    assert r["health"].status_code == 200


def test_no_keys_configured_means_open(tmp_path: Path) -> None:
    """Without NOBLE_API_KEYS a /v1 call without a key succeeds (2xx with its real body); the same app with
    keys configured refuses that call, so it is the keys setting that decides."""
    from noble.app.store import JobStore

    async def call(api_keys: str | None) -> httpx.Response:
        app = create_app(Settings(data_dir=tmp_path, api_keys=api_keys))
        app.state.store = store  # the one thing GET /v1/jobs needs of the lifespan
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
            return await c.get("/v1/jobs")

    store = JobStore(None, tmp_path)
    try:
        job = store.create("datagen", {"kind": "datagen"}, 3)
        open_ = asyncio.run(call(None))
        keyed = asyncio.run(call("k-one"))
    finally:
        store.close()
    assert open_.status_code == 200, open_.text
    body = open_.json()
    assert body["total"] == 1 and [j["id"] for j in body["items"]] == [job.id]
    assert body["items"][0]["kind"] == "datagen" and body["items"][0]["state"] == "queued"
    assert keyed.status_code == 401


def test_body_limit_declared_and_streamed(tmp_path: Path) -> None:
    big = json.dumps({"n_samples": 1, "stimulus": {"kind": "waveform", "values_pA": [0.0] * 3000}}).encode()
    assert len(big) > 4096

    async def chunks():  # no Content-Length: counted while it streams
        for k in range(0, len(big), 1000):
            yield big[k:k + 1000]

    async def main() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with _client(tmp_path, max_body_bytes=4096, api_keys="k") as c:
            h = {"X-API-Key": "k", "Content-Type": "application/json"}
            declared = await c.post("/v1/sample", content=big, headers=h)
            streamed = await c.post("/v1/sample", content=chunks(), headers=h)
            small = await c.post("/v1/sample", json={"n_samples": 1, "stimulus": {"kind": "step", "amplitude_pA": 1}},
                                 headers={"X-API-Key": "k"})
            return declared, streamed, small

    declared, streamed, small = asyncio.run(main())
    assert declared.status_code == 413 and "4096" in declared.json()["detail"]
    assert "NOBLE_MAX_BODY_BYTES" in declared.json()["detail"]
    assert streamed.status_code == 413
    assert small.status_code == 503  # under the limit: passed on


def test_fit_upload_has_its_own_limit_and_names_its_setting(tmp_path: Path) -> None:
    body = b"x" * 6000

    async def main() -> tuple[httpx.Response, httpx.Response]:
        async with _client(tmp_path, max_body_bytes=100_000, fit_max_upload_bytes=4096) as c:
            fit = await c.post("/v1/fit", content=body, headers={"Content-Type": "application/octet-stream"})
            sample = await c.post("/v1/sample", content=body, headers={"Content-Type": "application/json"})
            return fit, sample

    fit, sample = asyncio.run(main())
    assert fit.status_code == 413 and "NOBLE_FIT_MAX_UPLOAD_BYTES" in fit.json()["detail"]
    assert sample.status_code != 413  # the general limit (100 kB) applies elsewhere


def test_request_id_echoed_or_generated(tmp_path: Path) -> None:
    async def main() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        async with _client(tmp_path) as c:
            return (await c.get("/health", headers={"X-Request-ID": "abc-123.x"}),
                    await c.get("/health", headers={"X-Request-ID": "bad id with spaces\xe9".encode("latin-1")}),
                    await c.get("/health"))

    given, bad, none = asyncio.run(main())
    assert given.headers["x-request-id"] == "abc-123.x"
    assert bad.headers["x-request-id"] != "bad id with spaces" and len(bad.headers["x-request-id"]) == 32
    assert len(none.headers["x-request-id"]) == 32


def test_validation_names_the_field_and_refuses_nan(tmp_path: Path) -> None:
    async def main() -> list[httpx.Response]:
        async with _client(tmp_path) as c:
            h = {"Content-Type": "application/json"}
            return [
                await c.post("/v1/sample", json={"n_samples": 0, "stimulus": {"kind": "step", "amplitude_pA": 1}}),
                await c.post("/v1/sample", content=b'{"stimulus": {"kind": "step", "amplitude_pA": NaN}}', headers=h),
                await c.post("/v1/sample", json={"stimulus": {"kind": "step", "amplitude_pA": 1}, "extra": 1}),
                await c.post("/v1/simulate", json={"family": "lif", "stimulus": {"kind": "step", "amplitude_pA": 1},
                                                   "dt_ms": 0}),
                await c.get("/v1/jobs/not-a-job-id"),
                await c.get("/v1/jobs/..%2F..%2Fetc%2Fpasswd/result"),
                await c.post("/v1/sample", content=b"\xff\xfe{", headers=h),
            ]

    r = asyncio.run(main())
    assert r[0].status_code == 422 and r[0].json()["detail"][0]["loc"] == ["body", "n_samples"]
    assert r[1].status_code == 422 and r[1].json()["detail"][0]["loc"][-1] == "amplitude_pA"
    assert r[1].json()["detail"][0]["input"] == "nan"  # echoed as a string: strict JSON out
    assert r[2].status_code == 422 and r[2].json()["detail"][0]["loc"] == ["body", "extra"]
    assert r[3].status_code == 422 and r[3].json()["detail"][0]["loc"] == ["body", "dt_ms"]
    assert r[4].status_code == 422 and r[4].json()["detail"][0]["loc"] == ["path", "job_id"]
    assert r[5].status_code in (404, 422) and "root:" not in r[5].text
    assert r[6].status_code in (400, 422)


@pytest.mark.parametrize("accept,fmt", [
    (None, "json"), ("", "json"), ("*/*", "json"), ("application/json", "json"),
    ("application/x-npz", "npz"), ("application/x-nwb", "nwb"),
    ("application/json;q=0.5, application/x-npz", "npz"),
    ("application/x-nwb;q=0.2, application/json;q=0.9", "json"),
    ("text/html, application/x-nwb;q=0.1", "nwb"),
])
def test_content_negotiation(accept: str | None, fmt: str) -> None:
    assert choose_format(accept) == fmt


def test_content_negotiation_refuses_unknown() -> None:
    with pytest.raises(ApiError) as err:
        choose_format("text/html, image/png;q=0.9")
    assert err.value.status_code == 406
    with pytest.raises(ApiError):
        choose_format("application/x-npz;q=0")


def test_simulate_payload_limits_and_fields() -> None:
    from noble.app.routers.simulate import build_payload
    from noble.app.schemas import SimulateIn

    s = Settings(simulate_max_neuron_ms=1000.0, simulate_max_neurons=8, max_duration_ms=500.0)
    step = {"kind": "step", "amplitude_pA": 200.0, "start_ms": 10.0, "duration_ms": 50.0}

    def code(**kw: object) -> tuple[int, object]:
        try:
            build_payload(SimulateIn.model_validate({"family": "lif", "stimulus": step, "duration_ms": 100.0, **kw}), s)
        except ApiError as exc:
            return exc.status_code, exc.detail
        return 200, None

    assert code() == (200, None)
    assert code(n_neurons=20)[0] == 413  # over NOBLE_SIMULATE_MAX_NEURONS
    assert code(n_neurons=8, duration_ms=200.0)[0] == 413  # 1600 neuron-ms over the budget
    assert code(duration_ms=600.0)[0] == 413  # over NOBLE_MAX_DURATION_MS
    st, detail = code(family="nope")
    assert st == 422 and detail[0]["loc"] == ["body", "family"]
    st, detail = code(preset="bursting")
    assert st == 422 and detail[0]["loc"] == ["body", "preset"]
    st, detail = code(overrides={"tau_m": 1e6})
    assert st == 422 and "tau_m" in detail[0]["msg"]
    st, detail = code(params=[{"R": 100.0}, {"R": -5.0}])
    assert st == 422 and detail[0]["loc"] == ["body", "params", 1, "R"]
    st, detail = code(duration_ms=40.0)
    assert st == 422 and detail[0]["loc"] == ["body", "stimulus"]
    st, detail = code(dt_ms=0.03, record_dt_ms=0.1)
    assert st == 422 and detail[0]["loc"] == ["body", "record_dt_ms"]
    # Explicit per-neuron parameters land in their rows.
    p = build_payload(SimulateIn.model_validate({"family": "lif", "stimulus": step, "duration_ms": 100.0,
                                                 "params": [{"R": 150.0}, {"R": 250.0}]}), s)
    col = p["param_names"].index("R")
    assert p["params"].shape == (2, len(p["param_names"])) and list(p["params"][:, col]) == [150.0, 250.0]
    assert np.all(p["params"][:, p["param_names"].index("tau_m")] == 20.0)
