"""The benchmark app: the smallest ASGI hello-world, the same for every server.

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
    await send(dict(START))
    await send(dict(RESPONSE))
