"""A small ASGI app for the compose example: the `app` service behind the edge.

It answers /healthz, and anything else with a JSON description of the request as the
app sees it (path, the forwarded headers the edge added), so a curl through the edge shows
which protocol the client used and what reached the app. No framework, no dependencies.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Message = dict[str, Any]
FORWARDED = {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded", b"via"}


async def app(
    scope: dict[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/healthz":
        body = b"ok\n"
        content_type = b"text/plain"
    else:
        seen = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in FORWARDED
        }
        body = (
            json.dumps(
                {
                    "app": "example",
                    "method": scope["method"],
                    "path": scope["path"],
                    "forwarded": seen,
                },
                sort_keys=True,
            ).encode()
            + b"\n"
        )
        content_type = b"application/json"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
