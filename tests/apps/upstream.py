"""The HTTP upstream behind the edge in the proxy tests, served by Uvicorn (not edgecorn).

Routes (by path suffix, so a route prefix in front of it does not matter):
- default: a JSON echo of method, path, raw path, query, headers, body length and sha256;
- `.../bytes?n=N[&chunked=1]`: N bytes of the `tests.apps.e2e.big_chunk` pattern, generated
  as they are sent (never stored), with Content-Length unless `chunked=1`;
- `.../slow?delay=S`: answers after S seconds;
- `.../die?n=N[&chunked=1]`: announces 1 MiB (or chunked), sends N bytes, then SIGKILLs
  its own process — the edge sees its upstream die mid-response;
- `.../hop`: a response carrying hop-by-hop headers the edge must remove.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
from typing import Any

from tests.apps.common import Receive, Send, query
from tests.apps.e2e import MIB, big_chunk

CHUNK = big_chunk()


async def _start(send: Send, status: int, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _json(send: Send, value: Any, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    body = json.dumps(value).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await _start(send, 200, headers)
    await send({"type": "http.response.body", "body": body})


async def _stream(send: Send, size: int, chunked: bool) -> None:
    headers = [(b"content-type", b"application/octet-stream")]
    if not chunked:
        headers.append((b"content-length", str(size).encode()))
    await _start(send, 200, headers)
    left = size
    while left > 0:
        piece = CHUNK if left >= MIB else CHUNK[:left]
        left -= len(piece)
        await send({"type": "http.response.body", "body": piece, "more_body": left > 0})
    if size == 0:
        await send({"type": "http.response.body", "body": b""})


async def _die(send: Send, sent: int, chunked: bool) -> None:
    headers = [(b"content-type", b"application/octet-stream")]
    if not chunked:
        headers.append((b"content-length", str(MIB).encode()))
    await _start(send, 200, headers)
    await send({"type": "http.response.body", "body": CHUNK[:sent], "more_body": True})
    await asyncio.sleep(0.3)  # let the bytes leave before the process vanishes
    os.kill(os.getpid(), signal.SIGKILL)


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    params = query(scope)
    digest, length = hashlib.sha256(), 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body = message.get("body", b"")
        digest.update(body)
        length += len(body)
        if not message.get("more_body", False):
            break
    if path.endswith("/bytes"):
        await _stream(send, int(params.get("n", "0")), params.get("chunked") == "1")
    elif path.endswith("/slow"):
        await asyncio.sleep(float(params.get("delay", "5")))
        await _json(send, {"slow": True})
    elif path.endswith("/die"):
        await _die(send, int(params.get("n", "65536")), params.get("chunked") == "1")
    else:
        extra = []
        if path.endswith("/hop"):
            extra = [
                (b"connection", b"x-up-hop"),
                (b"x-up-hop", b"1"),
                (b"keep-alive", b"timeout=5"),
                (b"x-kept", b"yes"),
            ]
        await _json(
            send,
            {
                "method": scope["method"],
                "path": path,
                "raw_path": scope["raw_path"].decode("latin-1"),
                "query": scope["query_string"].decode("latin-1"),
                "headers": [
                    [k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]
                ],
                "body_length": length,
                "body_sha256": digest.hexdigest(),
            },
            extra,
        )
