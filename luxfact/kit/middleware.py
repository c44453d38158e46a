"""Pure ASGI middleware (BaseHTTPMiddleware would break context variables).

`RequestContextMiddleware` is outermost: it installs the request's context, takes or makes
the `X-Request-ID`, turns anything that escaped the app into a problem response and writes the
one log line per request. `BodyLimitMiddleware` refuses bodies over the configured size with
413, whether the client announced the length or streams it.
"""

import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from luxfact.kit import context, problems
from luxfact.kit.errors import PayloadTooLarge
from luxfact.observability import metrics

log = logging.getLogger("luxfact.request")

_VALID_ID = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")[:128]
            if text and set(text) <= _VALID_ID:
                return text
    return uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        info = context.RequestInfo(request_id=_request_id(scope))
        token = context.install(info)
        started = time.perf_counter()
        status = 500
        response_started = False
        rid_header = (b"x-request-id", info.request_id.encode())

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            log.exception("unhandled error")
            if not response_started:
                response = problems.problem(
                    500, "internal-error", "Internal error",
                    "The server failed; the request id identifies it in the logs.",
                )
                await response(scope, receive, send_wrapper)
        finally:
            matched = scope.get("route")
            route = info.route or getattr(matched, "path", None) or "<unmatched>"
            elapsed = time.perf_counter() - started
            metrics.observe_request(scope["method"], route, status, elapsed)
            log.info(
                "%s %s %s", scope["method"], route, status,
                extra={"fields": {
                    "method": scope["method"],
                    "route": route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                }},
            )
            context.reset(token)


class _TooLarge(PayloadTooLarge):
    """Raised from `receive`: the app's error handler renders it as any other 413."""


class BodyLimitMiddleware:
    """`max_bytes` for every body, except the paths matching a pattern of `larger`, which
    take files (the insurer's return) and have their own, larger limit."""

    def __init__(self, app: ASGIApp, max_bytes: int,
                 larger: tuple[tuple[re.Pattern[str], int], ...] = ()) -> None:
        self.app = app
        self.default_max = max_bytes
        self.larger = larger

    def _limit(self, path: str) -> int:
        for pattern, limit in self.larger:
            if pattern.fullmatch(path):
                return limit
        return self.default_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self._limit(scope.get("path", ""))
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > max_bytes:
                    await self._refuse(scope, receive, send, max_bytes)
                    return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise _TooLarge(f"The request body exceeds {max_bytes} bytes.")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not response_started:
                await self._refuse(scope, receive, send, max_bytes)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
        error = PayloadTooLarge(f"The request body exceeds {max_bytes} bytes.")
        await problems.from_error(error, scope.get("path"))(scope, receive, send)
