"""Cleartext to HTTPS: the `redirect_https` listeners' app, and the answer a TLS port gives
to a plain HTTP request.

A `redirect_https` listener is an ordinary cleartext listener whose connections run
`redirect_app` instead of the user's app: every request gets 308 to the same host and
path+query on https, on the first TLS listener's port (omitted when 443).

A TLS listener peeks at the first bytes of each connection before its handshake: a TLS
record starts with 0x16 (handshake), an HTTP/1 request with a method's capital letter. The
latter gets `PLAIN_HTTP_ANSWER` and a close instead of a failed handshake (which most
clients show as an empty reply).
"""

from __future__ import annotations

import logging
import re
import socket
from typing import Any

from .sockets import Sockets, describe

log = logging.getLogger("edgecorn.error")

PEEK_SIZE = 8
_MESSAGE = b"This port speaks HTTPS: send this request with https://, not http://.\n"
PLAIN_HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_MESSAGE), _MESSAGE)
)
PLAIN_HTTP_LINGER = 1.0  # seconds to read what the client still sends before closing

# A host as it may appear in a Location header: a name, an IPv4 or a bracketed IPv6 address.
_HOST = re.compile(r"[A-Za-z0-9._-]+|\[[0-9A-Fa-f:.]+\]")


def is_plain_http(first: bytes) -> bool:
    """The first bytes on a TLS port are a cleartext HTTP/1 request (no TLS record starts
    with a capital letter: record types are 20..24, an SSLv2 hello starts with 0x80)."""
    return bool(first) and 0x41 <= first[0] <= 0x5A


def https_port(sockets: Sockets) -> int | None:
    """The port redirects point at: the first TLS listener's (None: the default, 443)."""
    for sock in sockets.secure:
        name = sock.getsockname()
        if isinstance(name, tuple):
            return int(name[1])
    return None


def announce(sockets: Sockets) -> None:
    for sock in sockets.redirect:
        log.info("Running on %s (redirects to https)", describe(sock, False))
    if sockets.redirect and not sockets.secure:
        log.warning("redirect_https is on but this server has no TLS listener")


def location(scope: dict[str, Any], port: int | None) -> str | None:
    """https://host[:port]/path?query for a request, or None when its host is unusable."""
    host = None
    for name, value in scope["headers"]:
        if name == b"host":
            host = value.decode("latin-1")
            break
    if host is None:
        server = scope.get("server")
        if not server or server[1] is None:
            return None
        host = str(server[0])
        host = f"[{host}]" if ":" in host else host
    elif host.startswith("["):
        host = host[: host.find("]") + 1]
    else:
        host = host.rpartition(":")[0] if ":" in host else host
    if not _HOST.fullmatch(host):
        return None
    suffix = "" if port in (None, 443) else f":{port}"
    path = scope.get("raw_path") or scope["path"].encode("utf-8")
    if not path.startswith(b"/"):
        path = b"/" + path  # "*" (OPTIONS) and absolute forms: the root
    query = scope.get("query_string") or b""
    target = path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
    return f"https://{host.lower()}{suffix}{target}"


def redirect_app(port: int | None) -> Any:
    """The ASGI app of a redirect_https listener."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            return
        target = location(scope, port)
        if target is None:
            status, headers = 400, []
            body = b"A Host header naming this server is needed to redirect to https.\n"
        else:
            status, headers = 308, [(b"location", target.encode("latin-1"))]
            body = f"Moved to {target}\n".encode("latin-1")
        headers += [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


def answer_plain_http(sock: socket.socket) -> bool:
    """Send the 400 on a non-blocking socket (it fits any send buffer) and half-close."""
    try:
        sock.send(PLAIN_HTTP_ANSWER)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return False
    return True
