"""ASGI middleware that guards every route: request body size and API keys."""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from winnow.api.errors import error_body


async def _send_error(send: Send, status: int, error_type: str, message: str, headers: Sequence = ()) -> None:
    body = json.dumps(error_body(status, message, error_type)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """413 for a body over ``max_bytes``: by ``Content-Length`` at once, or while a chunked body streams."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body is larger than {self.max_bytes} bytes (WINNOW_MAX_BODY_BYTES)"
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    await _send_error(send, 400, "bad_request", "Content-Length is not a number")
                    return
                if too_large:
                    await _send_error(send, 413, "too_large", message)
                    return
        received = 0
        started = False
        answered = False  # we sent the 413 ourselves; whatever the app sends after is dropped

        async def limited_receive() -> Message:
            nonlocal received, started, answered
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.max_bytes:
                    if not started:
                        started = answered = True
                        await _send_error(send, 413, "too_large", message)
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if answered:
                return
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            if not answered:
                raise


class ApiKeyAuth:
    """With keys configured, every path but the open ones needs ``Authorization: Bearer KEY``.

    Keys are compared in constant time (``hmac.compare_digest``) against every configured key, and neither the
    key nor the header is logged.
    """

    def __init__(self, app: ASGIApp, keys: Sequence[bytes], open_paths: Sequence[str] = ("/health",)) -> None:
        self.app = app
        self.keys = [bytes(k) for k in keys]
        self.open_paths = set(open_paths)

    def _authorised(self, scope: Scope) -> bool:
        header = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value
                break
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer":
            token = b""
        token = token.strip()
        ok = False
        for key in self.keys:  # no early exit: the time taken does not depend on which key matched
            ok |= hmac.compare_digest(token, key)
        return ok and bool(token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope.get("path") in self.open_paths:
            await self.app(scope, receive, send)
            return
        if scope.get("method") == "OPTIONS":  # CORS preflight carries no credentials
            await self.app(scope, receive, send)
            return
        if not self._authorised(scope):
            await _send_error(
                send,
                401,
                "unauthorized",
                "missing or wrong API key: send 'Authorization: Bearer <key>'",
                headers=[(b"www-authenticate", b'Bearer realm="winnow"')],
            )
            return
        await self.app(scope, receive, send)
