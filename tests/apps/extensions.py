"""An app for tests/test_asgi_extensions.py: reports the `tls` extension and the extensions
listed, serves a file with `http.response.pathsend`, pushes with `http.response.push`."""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qs

from tests.apps.common import lifespan


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    extensions = scope["extensions"]
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        report = {"extensions": sorted(extensions), "tls": extensions.get("tls")}
        await send({"type": "websocket.send", "text": json.dumps(report)})
        await send({"type": "websocket.close", "code": 1000})
        return
    path = scope["path"]
    if path == "/file":
        name = parse_qs(scope["query_string"].decode())["path"][0]
        size = os.stat(name).st_size
        headers = [(b"content-length", b"%d" % size), (b"content-type", b"application/x-test")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.pathsend", "path": name})
        return
    if path == "/page":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if "http.response.push" in extensions:
            for asset in ("/style.css", "/script.js"):
                message = {
                    "type": "http.response.push",
                    "path": asset,
                    "headers": [(b"x-pushed", b"1")],
                }
                await send(message)
        await send({"type": "http.response.body", "body": b"page"})
        return
    if path in ("/style.css", "/script.js"):
        pushed = dict(scope["headers"]).get(b"x-pushed", b"0").decode()
        body = f"{scope['method']} {path} pushed={pushed}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
        return
    info = {
        "extensions": sorted(extensions),
        "tls": extensions.get("tls"),
        "version": scope["http_version"],
    }
    body = json.dumps(info).encode()
    headers = [(b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
