"""Hypercorn's documented middleware examples, with `hypercorn` replaced by `edgecorn`,
for tests/test_middleware.py."""

from __future__ import annotations

import json
from typing import Any

from edgecorn.middleware import (
    AsyncioWSGIMiddleware,
    DispatcherMiddleware,
    HTTPToHTTPSRedirectMiddleware,
    ProxyFixMiddleware,
    TrioWSGIMiddleware,
)

STARTED: list[str] = []  # which mounted apps saw lifespan.startup


def echo(name: str, lifespan: bool = True) -> Any:
    """An app that answers with what it saw; with `lifespan`, it records its startup."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            if not lifespan:
                raise RuntimeError("no lifespan here")  # as many frameworks do
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    STARTED.append(name)
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": name})
            await send({"type": "websocket.close"})
            return
        info = {
            "app": name,
            "path": scope["path"],
            "root_path": scope["root_path"],
            "scheme": scope["scheme"],
            "client": list(scope["client"]) if scope.get("client") else None,
            "host": next((v.decode() for k, v in scope["headers"] if k == b"host"), None),
            "started": sorted(STARTED),
        }
        body = json.dumps(info).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def wsgi_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"wsgi ", environ["PATH_INFO"].encode("latin-1"), b" ", str(len(body)).encode()]


api_app, other_app = echo("api"), echo("other")
dispatcher_app = DispatcherMiddleware(
    {"/api": api_app, "/": other_app, "/plain": echo("plain", lifespan=False)}
)
redirected_app = HTTPToHTTPSRedirectMiddleware(echo("secure"), host="example.com")
redirected_same_host = HTTPToHTTPSRedirectMiddleware(echo("secure"), host=None)
fixed_app = ProxyFixMiddleware(echo("fixed"), mode="legacy", trusted_hops=1)
fixed_modern = ProxyFixMiddleware(echo("fixed"), mode="modern", trusted_hops=2)
fixed_cidr = ProxyFixMiddleware(echo("fixed"), trusted_proxies=["10.0.0.0/8"])
asyncio_app = AsyncioWSGIMiddleware(wsgi_app)
trio_app = TrioWSGIMiddleware(wsgi_app)


async def _failing_startup(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "db down"})


dispatcher_api_only = DispatcherMiddleware({"/api": echo("api")})
dispatcher_failing = DispatcherMiddleware({"/api": echo("api"), "/": _failing_startup})
