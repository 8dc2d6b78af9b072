"""ASGI WebSocket apps served by the WebSocket end-to-end tests (`tests.apps.ws:app`).

One app routes by path. The apps run inside the server process, so what a test must
observe afterwards (the `websocket.disconnect` code) is appended to a file the test
names in the query string (`?file=...`), one line per event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

from tests.apps.common import Message, Receive, Scope, Send, lifespan, query

SUPPORTED_SUBPROTOCOLS = ["chat.v2", "chat.v1"]  # server preference order
DENY_STATUS = 418
DENY_BODY = [b"no websockets ", b"for teapots"]
CLOSE_CODE = 4001
CLOSE_REASON = "bye from the app"


def _record(scope: Scope, line: str) -> None:
    path = query(scope).get("file")
    if path:
        with open(path, "a") as fh:
            fh.write(line + "\n")


def _scope_info(scope: Scope) -> dict[str, Any]:
    return {
        "type": scope["type"],
        "http_version": scope["http_version"],
        "scheme": scope["scheme"],
        "path": scope["path"],
        "query_string": scope["query_string"].decode("latin-1"),
        "subprotocols": scope.get("subprotocols"),
        "extensions": sorted((scope.get("extensions") or {}).keys()),
        "has_method": "method" in scope,
    }


async def _echo_loop(scope: Scope, receive: Receive, send: Send) -> None:
    """Echo every message until the peer goes; record the disconnect code."""
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            reason = message.get("reason") or ""
            _record(scope, f"disconnect {message.get('code')} {reason}".rstrip())
            return
        if message["type"] != "websocket.receive":
            continue
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept (choosing a subprotocol if one the server supports is offered), then echo."""
    message = await receive()
    assert message["type"] == "websocket.connect", message
    chosen = next((p for p in SUPPORTED_SUBPROTOCOLS if p in scope["subprotocols"]), None)
    accept: Message = {"type": "websocket.accept"}
    if chosen:
        accept["subprotocol"] = chosen
    await send(accept)
    _record(scope, "accepted")
    await _echo_loop(scope, receive, send)


async def scope_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept, send the scope as JSON text, then echo."""
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps(_scope_info(scope))})
    await _echo_loop(scope, receive, send)


async def close(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept, send one message, then close with an app code and reason."""
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "closing"})
    await send({"type": "websocket.close", "code": CLOSE_CODE, "reason": CLOSE_REASON})
    # The server answers with websocket.disconnect once the peer's close arrives (or at once).
    message = await asyncio.wait_for(receive(), 10)
    _record(scope, f"after-close {message['type']} {message.get('code')}")


async def deny(scope: Scope, receive: Receive, send: Send) -> None:
    """The WebSocket Denial Response extension: a custom HTTP response instead of 101."""
    await receive()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": DENY_STATUS,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", str(sum(map(len, DENY_BODY))).encode()),
                (b"x-denied", b"yes"),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": DENY_BODY[0], "more_body": True})
    await send({"type": "websocket.http.response.body", "body": DENY_BODY[1]})


async def reject(scope: Scope, receive: Receive, send: Send) -> None:
    """websocket.close before websocket.accept: the server answers 403."""
    await receive()
    await send({"type": "websocket.close"})


async def ignore(scope: Scope, receive: Receive, send: Send) -> None:
    """Return without accepting: the server answers 403."""
    await receive()


ROUTES: dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]] = {
    "/ws": echo,
    "/echo": echo,
    "/scope": scope_app,
    "/close": close,
    "/deny": deny,
    "/reject": reject,
    "/ignore": ignore,
}


async def _http(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["path"] == "/scope":
        body = json.dumps(_scope_info(scope)).encode()
    else:
        body = b"plain http " + scope["path"].encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "lifespan":
        await lifespan(receive, send)
    elif kind == "http":
        await _http(scope, receive, send)
    elif kind == "websocket":
        handler = ROUTES.get(scope["path"])
        if handler is None:
            await receive()
            await send({"type": "websocket.close", "code": 1008})
            return
        await handler(scope, receive, send)
