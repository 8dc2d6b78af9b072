"""ASGI and WSGI apps served by the end-to-end tests (`tests.apps.e2e:app`).

One ASGI3 app routes by path; every route is small and deterministic so the
tests can check exactly what came back. The apps run inside the server process,
so anything a test must observe after the fact (an `http.disconnect`) is written
to a file the test names in the query string.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import anyio

from tests.apps.common import Receive, Scope, Send, query

MIB = 1024 * 1024
HELLO = b"Hello, world!"
EARLY_HINT_LINK = b"</style.css>; rel=preload; as=style"
TRAILER_NAME = b"x-body-sha256"

# Module-level record of disconnects seen in this process (the tests read the file).
DISCONNECTS: list[str] = []


def pattern(size: int, offset: int = 0) -> bytes:
    """Deterministic bytes: byte i is (offset + i) % 251 (a prime, so chunks don't align)."""
    base = bytes(range(251))
    start = offset % 251
    reps = (start + size) // 251 + 1
    return (base * reps)[start : start + size]


def big_chunk() -> bytes:
    """One MiB of the `/big` body (every MiB is the same)."""
    return pattern(MIB)


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes = b"text/plain",
    extra: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    headers.extend(extra)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    await _respond(send, 200, HELLO)


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Stream the request body back as it arrives (no content-length)."""
    message = await receive()
    if message["type"] == "http.disconnect":
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream")],
        }
    )
    while True:
        body = message.get("body", b"")
        more = message.get("more_body", False)
        if body or not more:
            await send({"type": "http.response.body", "body": body, "more_body": more})
        if not more:
            return
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def body_info(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the whole body first, then answer with its length and sha256."""
    body = await _read_body(receive)
    info = {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    await _respond(send, 200, json.dumps(info).encode(), b"application/json")


async def scope_info(scope: Scope, receive: Receive, send: Send) -> None:
    info = {
        "type": scope["type"],
        "http_version": scope["http_version"],
        "scheme": scope["scheme"],
        "method": scope["method"],
        "path": scope["path"],
        "raw_path": scope["raw_path"].decode("latin-1") if scope.get("raw_path") else None,
        "query_string": scope["query_string"].decode("latin-1"),
        "root_path": scope.get("root_path"),
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "client": list(scope["client"]) if scope.get("client") else None,
        "server": list(scope["server"]) if scope.get("server") else None,
        "has_state": "state" in scope,
        "has_extensions": "extensions" in scope,
        "extensions": sorted((scope.get("extensions") or {}).keys()),
        "asgi": scope.get("asgi"),
    }
    await _respond(send, 200, json.dumps(info).encode(), b"application/json")


async def _watch_disconnect(receive: Receive, gone: anyio.Event) -> None:
    """Set `gone` on `http.disconnect`, so a streaming loop knows when to stop.

    (Servers may make `send` a no-op after a disconnect; without this a long loop
    would keep "sending" forever.)
    """
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            gone.set()
            return


async def stream(scope: Scope, receive: Receive, send: Send) -> None:
    params = query(scope)
    n, size = int(params.get("n", "10")), int(params.get("size", "1024"))
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream")],
        }
    )
    for i in range(n):
        await send(
            {"type": "http.response.body", "body": pattern(size, i * size), "more_body": True}
        )
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def big(scope: Scope, receive: Receive, send: Send) -> None:
    """`mb` MiB of `big_chunk()`, with a content-length; `mb=0` streams forever."""
    mb = int(query(scope).get("mb", "1"))
    headers = [(b"content-type", b"application/octet-stream")]
    if mb > 0:
        headers.append((b"content-length", str(mb * MIB).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    chunk = big_chunk()
    sent = 0
    gone = anyio.Event()
    async with anyio.create_task_group() as tasks:  # anyio: the same app on asyncio and trio
        tasks.start_soon(_watch_disconnect, receive, gone)
        while (mb == 0 or sent < mb) and not gone.is_set():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            sent += 1
            await anyio.sleep(0)  # let the watcher run even if `send` never yields
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        tasks.cancel_scope.cancel()


async def slow(scope: Scope, receive: Receive, send: Send) -> None:
    params = query(scope)
    _append(params.get("file"), "started")
    await anyio.sleep(float(params.get("s", "2")))
    await _respond(send, 200, b"slow done")


async def trailers(scope: Scope, receive: Receive, send: Send) -> None:
    body = pattern(4096)
    if "http.response.trailers" not in (scope.get("extensions") or {}):
        await _respond(send, 200, body)
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream"), (b"trailer", TRAILER_NAME)],
            "trailers": True,
        }
    )
    await send({"type": "http.response.body", "body": body[:1000], "more_body": True})
    await send({"type": "http.response.body", "body": body[1000:], "more_body": False})
    digest = hashlib.sha256(body).hexdigest().encode()
    await send(
        {
            "type": "http.response.trailers",
            "headers": [(TRAILER_NAME, digest)],
            "more_trailers": False,
        }
    )


async def early_hints(scope: Scope, receive: Receive, send: Send) -> None:
    if "http.response.early_hint" in (scope.get("extensions") or {}):
        await send({"type": "http.response.early_hint", "links": [EARLY_HINT_LINK]})
        await _respond(send, 200, b"after early hints")
    else:
        await _respond(send, 200, b"no early hints extension")


def _append(path: str | None, line: str) -> None:
    if path:
        with open(path, "a") as fh:
            fh.write(line + "\n")


async def disconnect(scope: Scope, receive: Receive, send: Send) -> None:
    """Record `started`, then wait (bounded) for `http.disconnect` and record it."""
    path = query(scope).get("file")
    _append(path, "started")
    try:
        with anyio.fail_after(30):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    DISCONNECTS.append(scope["path"])
                    _append(path, "disconnect")
                    return
    except TimeoutError:
        _append(path, "timeout")
    except anyio.get_cancelled_exc_class():
        # A server may cancel the app instead of delivering the message: record it
        # (the test requires "disconnect", so this still fails the test).
        _append(path, "cancelled")
        raise


class AppError(Exception):
    pass


async def error(scope: Scope, receive: Receive, send: Send) -> None:
    """Raise before the response starts, or (`?after=1`) in the middle of a streamed body."""
    if query(scope).get("after") != "1":
        raise AppError("e2e: failure before the response")
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/octet-stream")],
        }
    )
    await send({"type": "http.response.body", "body": b"partial", "more_body": True})
    raise AppError("e2e: failure in the middle of the body")


async def lifespan_state(scope: Scope, receive: Receive, send: Send) -> None:
    state = scope.get("state")
    value = state.get("started") if isinstance(state, dict) else None
    body = json.dumps({"started": value, "has_state": state is not None}).encode()
    await _respond(send, 200, body, b"application/json")


async def lifespan(scope: Scope, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            if "state" in scope:
                scope["state"]["started"] = "yes"
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


ROUTES: dict[str, Callable[[Scope, Receive, Send], Awaitable[None]]] = {
    "/": hello,
    "/echo": echo,
    "/body": body_info,
    "/stream": stream,
    "/big": big,
    "/slow": slow,
    "/trailers": trailers,
    "/early-hints": early_hints,
    "/disconnect": disconnect,
    "/error": error,
    "/lifespan-state": lifespan_state,
}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/scope" or path.startswith("/scope/"):
        await scope_info(scope, receive, send)
        return
    handler = ROUTES.get(path)
    if handler is None:
        await _respond(send, 404, b"not found")
        return
    await handler(scope, receive, send)


STARTUP_FAILURE = "e2e-startup-failed: database unreachable"


async def failing_lifespan_app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.failed", "message": STARTUP_FAILURE})
        return
    await hello(scope, receive, send)


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read()
    info = {
        "method": environ["REQUEST_METHOD"],
        "path": environ.get("PATH_INFO"),
        "query": environ.get("QUERY_STRING"),
        "protocol": environ.get("SERVER_PROTOCOL"),
        "url_scheme": environ.get("wsgi.url_scheme"),
        "body_length": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
        "x_test": environ.get("HTTP_X_TEST"),
    }
    data = json.dumps(info).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]
