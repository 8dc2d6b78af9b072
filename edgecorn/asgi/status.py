"""Answers the server gives itself (503 when full, 404 for a foreign Host, 501 for a
plain CONNECT, 425/431 from HTTP/3), as ASGI apps: they go through the usual stream, so
they get the usual headers and an access-log line."""

from __future__ import annotations

from http import HTTPStatus

from .types import ASGIApp, Receive, Scope, Send


def status_app(status: int) -> ASGIApp:
    body = f"{status} {HTTPStatus(status).phrase}\n".encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        kind = "websocket.http" if scope["type"] == "websocket" else "http"  # a denial response
        await send({"type": f"{kind}.response.start", "status": status, "headers": headers})
        await send({"type": f"{kind}.response.body", "body": body})

    return app
