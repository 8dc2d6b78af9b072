"""Routes that answer by themselves: a fixed response, a redirect, a 404, an error page."""

from __future__ import annotations

from http import HTTPStatus
from urllib.parse import quote

from ..asgi.types import Receive, Scope, Send
from .spec import Route


async def plain(
    send: Send,
    status: int,
    text: str = "",
    headers: list[tuple[bytes, bytes]] | None = None,
    *,
    head: bool = False,
) -> None:
    """A short text/plain response (the body defaults to the status line)."""
    body = (text or f"{status} {HTTPStatus(status).phrase}\n").encode()
    fields = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", b"%d" % len(body)),
    ]
    await send(
        {"type": "http.response.start", "status": status, "headers": fields + (headers or [])}
    )
    await send({"type": "http.response.body", "body": b"" if head else body})


async def refuse_websocket(scope: Scope, send: Send, status: int, text: str = "") -> None:
    """A WebSocket handshake answered with an HTTP status (RFC 6455 4.2.2 denial), or closed
    when the server offers no denial responses."""
    if "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008 if status < 500 else 1011})
        return
    body = (text or f"{status} {HTTPStatus(status).phrase}\n").encode()
    await send(
        {
            "type": "websocket.http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "websocket.http.response.body", "body": body})


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] == "websocket":
        await refuse_websocket(scope, send, 404)
    elif scope["type"] == "http":
        await plain(send, 404, head=scope["method"] == "HEAD")


class Respond:
    """`respond: {status, body, headers}`."""

    def __init__(self, route: Route) -> None:
        self.status = route.status
        self.body = route.body
        self.headers = [(b"content-length", b"%d" % len(route.body))]
        if not any(name == b"content-type" for name, _ in route.headers):
            self.headers.append((b"content-type", b"text/plain; charset=utf-8"))
        self.headers.extend(route.headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await refuse_websocket(scope, send, 404)
            return
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else self.body}
        )


class Redirect:
    """`redirect: {to, status}`. A `to` ending in '/' on a prefix route keeps the rest of
    the path and the query: /old/a?b=1 -> https://host/new/a?b=1."""

    def __init__(self, route: Route) -> None:
        self.to = route.target
        self.status = route.status
        self.keep_rest = route.target.endswith("/") and route.path is not None and not route.exact
        self.prefix = route.prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await refuse_websocket(scope, send, 404)
            return
        location = self.to
        if self.keep_rest:
            raw = scope.get("raw_path") or quote(scope["path"]).encode()
            rest = raw.decode("latin-1")[len(self.prefix) :]
            location += rest.lstrip("/")
            if scope.get("query_string"):
                location += "?" + scope["query_string"].decode("latin-1")
        body = f"Redirecting to {location}\n"
        await plain(
            send,
            self.status,
            body,
            [(b"location", location.encode("latin-1"))],
            head=scope["method"] == "HEAD",
        )
