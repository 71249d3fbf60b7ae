"""API keys (X-API-Key or `Authorization: Bearer`) and the request-body size limit.

Keys are compared in constant time. The body limit is a pure ASGI middleware: a declared Content-Length
over the limit is refused before reading, and a chunked body is counted as it streams, so no handler ever
sees more than NOBLE_MAX_BODY_BYTES.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Awaitable, Callable

from fastapi import Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from .errors import ApiError, BodyTooLarge

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="one of NOBLE_API_KEYS")
_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <key>`, a key of NOBLE_API_KEYS")


def _matches(candidate: str | None, keys: list[str]) -> bool:
    if not candidate:
        return False
    ok = False
    for key in keys:  # no early exit: the time taken does not depend on which key matched
        ok |= hmac.compare_digest(candidate.encode(), key.encode())
    return ok


def require_api_key(
    request: Request,
    api_key: str | None = None,
    bearer: HTTPAuthorizationCredentials | None = None,
) -> None:
    """FastAPI dependency (wired with the security schemes in `auth_dependency`)."""
    keys: list[str] = request.app.state.settings.api_key_list()
    if not keys:
        return
    if _matches(api_key, keys) or _matches(bearer.credentials if bearer else None, keys):
        return
    raise ApiError(401, "missing or invalid API key: send X-API-Key or Authorization: Bearer",
                   headers={"WWW-Authenticate": 'Bearer realm="noble"'})


def auth_dependency() -> Callable[..., Any]:
    """A dependency that documents both schemes in OpenAPI and checks them at request time."""
    from fastapi import Depends

    async def _dep(request: Request, api_key: str | None = Depends(_api_key_header),
                   bearer: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> None:
        require_api_key(request, api_key, bearer)

    return _dep


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class BodyLimitMiddleware:
    """413 for bodies over `max_bytes`, declared or streamed."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int,
                 per_path: dict[str, tuple[int, str]] | None = None) -> None:
        """per_path: {path: (limit, the setting that sets it)} for routes with their own limit."""
        self.app = app
        self.default = (max_bytes, "NOBLE_MAX_BODY_BYTES")
        self.per_path = per_path or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes, setting = self.per_path.get(scope.get("path", ""), self.default)
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _reply(send, 400, "invalid Content-Length header")
                    return
                if declared > max_bytes:
                    await _reply(send, 413, f"request body of {declared} bytes exceeds the limit of "
                                            f"{max_bytes} bytes ({setting})")
                    return
        seen = 0
        started = False

        async def counted_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    raise BodyTooLarge(max_bytes, setting)
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, tracking_send)
        except BodyTooLarge:  # raised while reading outside FastAPI's handlers
            if not started:
                await _reply(send, 413, f"request body exceeds the limit of {max_bytes} bytes ({setting})")


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
