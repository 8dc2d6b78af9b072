"""Field handling shared by the multiplexed protocols (HTTP/2 and HTTP/3)."""

from __future__ import annotations

from .events import Headers, Request

# Hop-by-hop fields have no meaning in HTTP/2 and HTTP/3 (RFC 9113 8.2.2, RFC 9114
# 4.2); apps written for HTTP/1.1 send them.
CONNECTION_HEADERS = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)


def request_from_fields(
    stream_id: int, fields: Headers, http_version: str, push: bool = False
) -> tuple[Request, int]:
    """The Request for a field section with pseudo-headers, and the section's size as
    RFC 9114 4.2.2 counts it (name + value + 32 per field). `push`: h2's peer allows
    server push on this connection."""
    method = path = b""
    scheme = authority = protocol = None
    headers: Headers = []
    size = 0
    for name, value in fields:
        size += len(name) + len(value) + 32
        if name[:1] == b":":
            if name == b":method":
                method = value
            elif name == b":path":
                path = value
            elif name == b":scheme":
                scheme = value.decode("ascii")
            elif name == b":authority":
                authority = value
            elif name == b":protocol":
                protocol = value.decode("ascii")
        else:
            headers.append((name, value))
    if authority is not None and not any(name == b"host" for name, _ in headers):
        headers.insert(0, (b"host", authority))  # apps written for HTTP/1.1 read Host
    request = Request(
        stream_id,
        method.decode("ascii"),
        path,
        headers,
        http_version,
        scheme,
        authority,
        protocol,
        push=push,
    )
    return request, size


def response_fields(status: int, headers: Headers) -> Headers:
    out: Headers = [(b":status", b"%d" % status)]
    for name, value in headers:
        name = name.lower()
        if name not in CONNECTION_HEADERS:
            out.append((name, value))
    return out
