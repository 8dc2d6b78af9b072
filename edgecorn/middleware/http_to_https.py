"""HTTPToHTTPSRedirectMiddleware(app, host): cleartext requests get a 307 to https.

As in Hypercorn: `host` None means the request's own Host; a WebSocket handshake over
cleartext gets the 307 as a denial response (wss:// over HTTP/1.1, https:// over h2/h3),
and https/wss requests reach the app untouched.
"""

from __future__ import annotations

from urllib.parse import quote, urlunsplit

from ..asgi.types import ASGIApp, Receive, Scope, Send


class HTTPToHTTPSRedirectMiddleware:
    def __init__(self, app: ASGIApp, host: str | None) -> None:
        self.app = app
        self.host = host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind, scheme = scope["type"], scope.get("scheme")
        if kind == "http" and scheme == "http":
            await _redirect(send, "http", self._url("https", scope))
        elif kind == "websocket" and scheme == "ws":
            if "websocket.http.response" in scope.get("extensions", {}):
                target = "wss" if scope.get("http_version", "1.1") in ("1.0", "1.1") else "https"
                await _redirect(send, "websocket.http", self._url(target, scope))
            else:
                await send({"type": "websocket.close"})
        else:
            await self.app(scope, receive, send)

    def _url(self, scheme: str, scope: Scope) -> str:
        host = self.host
        if host is None:
            host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), None)
        if host is None:
            raise ValueError("Host to redirect to cannot be determined")
        raw = scope.get("raw_path") or quote(scope["path"]).encode("latin-1")
        path = scope.get("root_path", "") + raw.decode("latin-1")
        query = bytes(scope["query_string"]).decode("latin-1")
        return str(urlunsplit((scheme, host, path, query, "")))


async def _redirect(send: Send, prefix: str, url: str) -> None:
    await send(
        {
            "type": f"{prefix}.response.start",
            "status": 307,
            "headers": [(b"location", url.encode("latin-1")), (b"content-length", b"0")],
        }
    )
    await send({"type": f"{prefix}.response.body", "body": b""})
