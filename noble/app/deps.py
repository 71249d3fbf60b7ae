"""Accessors for the objects the lifespan puts on `app.state`, and the error responses routes document."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import Request

from .errors import ApiError

if TYPE_CHECKING:
    from ..config import Settings
    from .jobs import JobRunner
    from .metrics import Metrics
    from .simulation import SimulationPool
    from .store import JobStore
    from .surrogates import SurrogateRegistry


def _get(request: Request, name: str) -> Any:
    obj = getattr(request.app.state, name, None)
    if obj is None:
        raise ApiError(503, f"service not ready: {name} unavailable")
    return obj


def settings_of(request: Request) -> "Settings":
    return request.app.state.settings


def metrics_of(request: Request) -> "Metrics":
    return request.app.state.metrics


def store_of(request: Request) -> "JobStore":
    return _get(request, "store")


def runner_of(request: Request) -> "JobRunner":
    return _get(request, "runner")


def registry_of(request: Request) -> "SurrogateRegistry":
    return _get(request, "registry")


def sim_pool_of(request: Request) -> "SimulationPool":
    return _get(request, "sim_pool")


def _err(desc: str) -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": {
        "type": "object", "properties": {"detail": {}}, "required": ["detail"]}}}}


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {400: _err("malformed request (e.g. a body that is not UTF-8 JSON)"),
                                                401: _err("missing or invalid API key"),
                                                413: _err("request body or requested work over the limit"),
                                                422: _err("invalid field (named in detail[].loc)")}
