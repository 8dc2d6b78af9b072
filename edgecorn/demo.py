"""The built-in demo app, served when no application is named.

`/` says "edgecorn works" and shows the protocol the request came over,
`/echo` echoes a POSTed body, `/json` returns the scope as JSON, and a
WebSocket to any path echoes its messages, so every protocol can be tried
with nothing but the server installed.
"""

from __future__ import annotations

import html
import json
from typing import Any

from edgecorn.asgi.types import Receive, Scope, Send
from edgecorn.headers import first

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>edgecorn works</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 2em auto">
<h1>edgecorn works</h1>
<p>This request came over <b>{protocol}</b> ({scheme}) from <b>{client}</b>.</p>
<ul>
<li><a href="/">/</a> &mdash; this page</li>
<li><a href="/json">/json</a> &mdash; the ASGI scope of the request as JSON</li>
<li><code>curl -d hello {scheme}://{host}/echo</code> &mdash; echoes the request body</li>
</ul>
<p>Run your own app with <code>edgecorn module:app</code>.</p>
</body>
</html>
"""


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    kind = scope["type"]
    if kind == "http":
        await _http(scope, receive, send)
    elif kind == "websocket":
        await _websocket(receive, send)
    elif kind == "lifespan":
        await _lifespan(receive, send)


async def _http(scope: Scope, receive: Receive, send: Send) -> None:
    path, method = scope["path"], scope["method"]
    if path == "/" and method in ("GET", "HEAD"):
        await _respond(send, 200, "text/html; charset=utf-8", _page(scope).encode())
    elif path == "/json" and method in ("GET", "HEAD"):
        body = json.dumps(_jsonable(dict(scope)), indent=2, sort_keys=True).encode()
        await _respond(send, 200, "application/json", body + b"\n")
    elif path == "/echo" and method in ("POST", "PUT"):
        body = await _read_body(receive)
        content_type = first(scope.get("headers", ()), b"content-type")
        await _respond(
            send, 200, _latin1(content_type) if content_type else "application/octet-stream", body
        )
    elif path == "/echo":
        await _respond(
            send, 405, "text/plain", b"POST a body to /echo\n", [(b"allow", b"POST, PUT")]
        )
    else:
        await _respond(send, 404, "text/plain", b"Not Found\n")


def _page(scope: Scope) -> str:
    client = scope.get("client")
    headers = scope.get("headers", ())
    host = first(headers, b"host") or first(headers, b":authority") or b"localhost"
    return PAGE.format(
        protocol=html.escape(f"HTTP/{scope.get('http_version', '1.1')}"),
        scheme=html.escape(scope.get("scheme", "http")),
        client=html.escape(f"{client[0]}:{client[1]}" if client else "unknown"),
        host=html.escape(_latin1(host)),
    )


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # disconnected
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    content_type: str,
    body: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type.encode("latin-1")),
        (b"content-length", b"%d" % len(body)),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _latin1(value: bytes) -> str:
    return value.decode("latin-1")


_SKIP = object()


def _jsonable(value: Any) -> Any:
    """`value` made JSON-safe: bytes as latin-1 text; objects JSON can't hold become _SKIP."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    if isinstance(value, (list, tuple)):
        items = (_jsonable(item) for item in value)
        return [item for item in items if item is not _SKIP]
    if isinstance(value, dict):
        pairs = ((str(key), _jsonable(item)) for key, item in value.items())
        return {key: item for key, item in pairs if item is not _SKIP}
    return _SKIP


async def _websocket(receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return  # websocket.disconnect
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
