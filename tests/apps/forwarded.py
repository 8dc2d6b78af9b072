"""Echoes what the scope says about the client (http: a JSON body; websocket: one text
message), for the trusted-proxy and PROXY protocol tests."""

from __future__ import annotations

import json
from typing import Any

from tests.apps.common import lifespan


def _facts(scope: dict[str, Any]) -> bytes:
    host = [v.decode("latin-1") for n, v in scope["headers"] if n == b"host"]
    peer = scope["extensions"].get("edgecorn.peer")
    facts = {
        "client": list(scope["client"]) if scope.get("client") else None,
        "scheme": scope["scheme"],
        "host": host,
        "peer": list(peer["client"]) if peer else None,
        "http_version": scope.get("http_version"),
    }
    return json.dumps(facts).encode()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    body = _facts(scope)
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": body.decode()})
        await send({"type": "websocket.close", "code": 1000})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
