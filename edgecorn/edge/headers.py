"""Header rules shared by the HTTP and WebSocket sides of the proxy."""

from __future__ import annotations

from typing import Any

Headers = list[tuple[bytes, bytes]]

# RFC 9110 7.6.1 hop-by-hop fields, plus the non-standard ones proxies have always dropped.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"http2-settings",
    }
)


def response_headers(upstream: Any, http_version: str) -> Headers:
    dropped = set(HOP_BY_HOP)
    for name, value in upstream:
        if name == b"connection":
            dropped.update(token.strip().lower() for token in value.split(b","))
    out: Headers = []
    via = b""
    for name, value in upstream:
        if name == b"via":
            via = value
        elif name not in dropped:
            out.append((bytes(name), bytes(value)))
    ours = f"{http_version} edgecorn".encode()
    out.append((b"via", via + b", " + ours if via else ours))
    return out
