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
    key nor the header is logged. A read-only key gets 403 on writes: any method but GET, HEAD and OPTIONS on
    ``write_paths`` (and the paths under them). OPTIONS needs a key like any other method; a CORS preflight is
    answered before this middleware by Starlette's CORSMiddleware when CORS is configured.
    """

    def __init__(
        self,
        app: ASGIApp,
        keys: Sequence[bytes],
        read_only_keys: Sequence[bytes] = (),
        open_paths: Sequence[str] = ("/health",),
        write_paths: Sequence[str] = ("/documents",),
    ) -> None:
        self.app = app
        self.keys = [bytes(k) for k in keys]
        self.read_only_keys = [bytes(k) for k in read_only_keys]
        self.open_paths = set(open_paths)
        self.write_paths = tuple(write_paths)

    def _token(self, scope: Scope) -> bytes:
        header = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                header = value
                break
        scheme, _, token = header.partition(b" ")
        return token.strip() if scheme.lower() == b"bearer" else b""

    @staticmethod
    def _matches(token: bytes, keys: Sequence[bytes]) -> bool:
        ok = False
        for key in keys:  # no early exit: the time taken does not depend on which key matched
            ok |= hmac.compare_digest(token, key)
        return ok and bool(token)

    def _is_write(self, scope: Scope) -> bool:
        if scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            return False
        path = scope.get("path", "")
        return any(path == p or path.startswith(p.rstrip("/") + "/") for p in self.write_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (self.keys or self.read_only_keys):
            await self.app(scope, receive, send)
            return
        if scope.get("path") in self.open_paths:
            await self.app(scope, receive, send)
            return
        token = self._token(scope)
        full = self._matches(token, self.keys)
        read_only = self._matches(token, self.read_only_keys)
        if not (full or read_only):
            await _send_error(
                send,
                401,
                "unauthorized",
                "missing or wrong API key: send 'Authorization: Bearer <key>'",
                headers=[(b"www-authenticate", b'Bearer realm="winnow"')],
            )
            return
        if not full and self._is_write(scope):
            await _send_error(
                send,
                403,
                "forbidden",
                f"this API key is read-only: it can search and rerank, but not {scope.get('method')} "
                "documents; use a key from WINNOW_API_KEYS to write",
            )
            return
        await self.app(scope, receive, send)
