"""The benchmark app: the smallest ASGI hello-world, the same for every server.

`/1m` (and any path under it, `/1m/7`) answers 1 MiB of deterministic bytes
(`BIG_BODY`) for the download measurement; every other path says hello.
Run as `bench.app:app` from the repository root.
"""

from __future__ import annotations

from typing import Any

BODY = b"Hello, world!"
HEADERS = [
    (b"content-type", b"text/plain"),
    (b"content-length", str(len(BODY)).encode("ascii")),
]
START = {"type": "http.response.start", "status": 200, "headers": HEADERS}
RESPONSE = {"type": "http.response.body", "body": BODY}

BIG_BODY = bytes(i % 251 for i in range(1 << 20))  # 1 MiB; bench/run.py checks it byte for byte
BIG_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(len(BIG_BODY)).encode("ascii")),
    ],
}
BIG_RESPONSE = {"type": "http.response.body", "body": BIG_BODY}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/1m" or path.startswith("/1m/"):
        await send(dict(BIG_START))
        await send(dict(BIG_RESPONSE))
        return
    await send(dict(START))
    await send(dict(RESPONSE))
