"""GET /health (liveness), GET /ready (store, Dask, surrogates), GET /metrics (Prometheus)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ... import __version__
from ..schemas import HealthOut, ReadyOut

router = APIRouter(tags=["health"])


@router.get("/health", response_model=HealthOut, summary="Liveness: the process answers")
async def health() -> HealthOut:
    return HealthOut(status="ok", version=__version__)


@router.get("/ready", response_model=ReadyOut, summary="Readiness: job store reachable, Dask connected, surrogates loaded",
            responses={503: {"model": ReadyOut, "description": "not ready yet (or a dependency is down)"}})
async def ready(request: Request) -> JSONResponse:
    state = request.app.state
    checks: dict[str, object] = {}
    ok = True
    store = getattr(state, "store", None)
    if store is None:
        checks["store"] = "starting"
        ok = False
    else:
        try:
            await asyncio.wait_for(asyncio.to_thread(store.ping), timeout=5)
            checks["store"] = f"ok ({store.dialect})"
        except Exception as exc:  # noqa: BLE001
            checks["store"] = f"error: {type(exc).__name__}"
            ok = False
    runner = getattr(state, "runner", None)
    if runner is None or not runner.dask_ready:
        checks["dask"] = runner.dask_error if runner is not None and runner.dask_error else "connecting"
        ok = False
    else:
        checks["dask"] = "ok"
    registry = getattr(state, "registry", None)
    checks["surrogates"] = sorted(registry.items) if registry is not None else []
    if registry is not None and registry.errors:
        checks["surrogate_errors"] = registry.errors
    body = ReadyOut(ready=ok, checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}})
async def metrics(request: Request) -> Response:
    registry = request.app.state.metrics.registry
    data = await asyncio.to_thread(generate_latest, registry)
    return Response(content=data, media_type=CONTENT_TYPE_LATEST)
