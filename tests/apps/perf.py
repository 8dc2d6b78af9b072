"""Apps for tests/test_perf_h1.py: what the HTTP/1 fast path (one header check, flushes
read straight from the adapter, eager start where asyncio has it) must still get right."""

from __future__ import annotations

import contextvars
from typing import Any

import sniffio

REQUEST_PATH: contextvars.ContextVar[str] = contextvars.ContextVar("request_path")


async def _respond(send: Any, body: bytes, status: int = 200) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/inject-header":
        headers = [(b"x-a", b"ok\r\nx-evil: 1"), (b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"no"})
    elif path == "/inject-trailer":
        await send({"type": "http.response.start", "status": 200, "trailers": True})
        await send({"type": "http.response.body", "body": b"part", "more_body": False})
        await send({"type": "http.response.trailers", "headers": [(b"x-t", b"1\r\nx-evil: 1")]})
    elif path == "/raise-at-once":
        raise RuntimeError("before any await")  # in the eager part, where there is one
    elif path == "/raise-later":
        await receive()
        raise RuntimeError("after an await")
    elif path.startswith("/context/"):
        # Each request runs in its own copy of the context: nothing set by an earlier
        # request on the same connection is visible, and a value survives a suspension.
        before = REQUEST_PATH.get("unset")
        REQUEST_PATH.set(path)
        await receive()  # suspends when the body has not all been read yet
        await _respond(send, f"{before}|{REQUEST_PATH.get()}".encode())
    elif path == "/library":
        # Before any await: the async library must be detectable (sniffio, as anyio and
        # so Starlette/FastAPI use it), which on asyncio needs a current Task.
        await _respond(send, sniffio.current_async_library().encode())
    else:
        await _respond(send, b"hello " + path.encode())
