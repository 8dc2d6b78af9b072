"""The `demo:app` of the issue's example file: an ASGI app with its own lifespan.

Every HTTP response is a JSON report of what the app saw, including whether *its* startup
ran (the `state` it set) and how many startups this process ran for it.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]
STARTUPS: list[int] = []


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                STARTUPS.append(1)
                if "state" in scope:
                    scope["state"]["demo_started"] = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = json.dumps(
        {
            "app": "demo",
            "path": scope["path"],
            "root_path": scope.get("root_path", ""),
            "query": scope["query_string"].decode("latin-1"),
            "http_version": scope["http_version"],
            "scheme": scope["scheme"],
            "state": bool(scope.get("state", {}).get("demo_started")),
            "startups": len(STARTUPS),
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
