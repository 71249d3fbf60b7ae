"""Structured JSON logs with a request id, and the ASGI middleware that times and counts every request.

The request id comes from the client's X-Request-ID (if it is a short token) or is generated, is echoed in
the response header, and is attached to every log line written while the request is served (contextvar).
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Awaitable, Callable

if TYPE_CHECKING:
    from .metrics import Metrics

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("noble_request_id", default=None)
_RID_OK = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_STD_ATTRS = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime", "taskName",
                                                                              "color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, request_id and any `extra=` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = getattr(record, "request_id", None) or request_id_var.get()
        if rid:
            out["request_id"] = rid
        for key, value in record.__dict__.items():
            if key not in _STD_ATTRS and key not in out and not key.startswith("_"):
                out[key] = value if isinstance(value, (str, int, float, bool, type(None))) else str(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def log_config(level: str = "info", json_logs: bool = True) -> dict[str, Any]:
    """A logging dictConfig for the app and uvicorn (also passed to uvicorn.run as log_config)."""
    fmt = {"()": "noble.app.observability.JsonFormatter"} if json_logs else {
        "format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    handler = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
    lvl = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": fmt},
        # Dask's LocalCluster(silence_logs=...) lowers the level of the handlers on its own logger: give it its
        # own handler so our request logs are not silenced with it.
        "handlers": {"default": handler, "dask": dict(handler)},
        "loggers": {
            "noble": {"handlers": ["default"], "level": lvl, "propagate": False},
            "uvicorn": {"handlers": ["default"], "level": lvl, "propagate": False},
            "uvicorn.error": {"handlers": ["default"], "level": lvl, "propagate": False},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},  # we log requests ourselves
            "distributed": {"handlers": ["dask"], "level": "WARNING", "propagate": False},
        },
    }


def configure_logging(level: str = "info", json_logs: bool = True) -> None:
    import logging.config

    logging.config.dictConfig(log_config(level, json_logs))
    logging.captureWarnings(True)
    if sys.stderr is None:  # pragma: no cover - detached
        logging.disable(logging.CRITICAL)


access_log = logging.getLogger("noble.access")

Scope = dict[str, Any]
ASGIApp = Callable[[Scope, Callable[..., Awaitable[Any]], Callable[..., Awaitable[Any]]], Awaitable[None]]


class RequestContextMiddleware:
    """Request id in and out, latency and count per route template, one access-log line per request."""

    def __init__(self, app: ASGIApp, metrics: "Metrics") -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for name, value in scope.get("headers", []):
            if name == b"x-request-id":
                try:
                    incoming = value.decode("ascii")
                except UnicodeDecodeError:
                    incoming = None
                break
        rid = incoming if incoming and _RID_OK.match(incoming) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        status = 500
        t0 = time.perf_counter()

        async def send_with_id(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            elapsed = time.perf_counter() - t0
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope.get("method", "")
            self.metrics.requests.labels(method, template, str(status)).inc()
            self.metrics.latency.labels(method, template).observe(elapsed)
            access_log.info("%s %s %d %.1f ms", method, scope.get("path", ""), status, elapsed * 1e3,
                            extra={"method": method, "path": scope.get("path", ""), "route": template,
                                   "status": status, "duration_ms": round(elapsed * 1e3, 3)})
            request_id_var.reset(token)
