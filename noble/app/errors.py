"""Error types and handlers: every failure is a JSON `{"detail": ...}` with the request id, never a bare 500.

Validation errors name the field (`loc`) and never echo large inputs back (a 2 MB waveform stays on our side).
"""

from __future__ import annotations

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

log = logging.getLogger("noble.app")


class ApiError(HTTPException):
    """An HTTP error with a human-readable detail (field-named for 422)."""

    def __init__(self, status_code: int, detail: Any, headers: dict[str, str] | None = None) -> None:
        super().__init__(status_code=status_code, detail=detail, headers=headers)


class BodyTooLarge(ApiError):
    def __init__(self, limit: int, setting: str = "NOBLE_MAX_BODY_BYTES") -> None:
        super().__init__(413, f"request body exceeds the limit of {limit} bytes ({setting})",
                         headers={"Connection": "close"})


def field_error(loc: list[str | int] | tuple[str | int, ...], msg: str, kind: str = "value_error") -> ApiError:
    """A 422 shaped like FastAPI's own validation errors, for checks done after schema validation."""
    return ApiError(422, [{"loc": list(loc), "msg": msg, "type": kind}])


def _small(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # strict JSON has no NaN/Infinity
    if isinstance(value, (int, float, bool)) or value is None:
        return value
    if isinstance(value, str) and len(value) <= 200:
        return value
    return None


def _clean_errors(errors: Any) -> list[dict[str, Any]]:
    out = []
    for err in errors:
        item: dict[str, Any] = {"loc": [p if isinstance(p, (int, str)) else str(p) for p in err.get("loc", ())],
                                "msg": str(err.get("msg", ""))[:2000], "type": str(err.get("type", "value_error"))}
        small = _small(err.get("input"))
        if small is not None:
            item["input"] = small
        out.append(item)
    return out


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _clean_errors(exc.errors())}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        rid = getattr(request.state, "request_id", None)
        log.exception("unhandled error", extra={"request_id": rid})
        return JSONResponse({"detail": "internal error; quote the request id when reporting it",
                             "request_id": rid}, status_code=500)
