"""Field handling shared by the multiplexed protocols (HTTP/2 and HTTP/3)."""

from __future__ import annotations

import re

from ..headers import BAD_NAME, BAD_VALUE
from .events import Headers, Request

# Hop-by-hop fields have no meaning in HTTP/2 and HTTP/3 (RFC 9113 8.2.2, RFC 9114
# 4.2); apps written for HTTP/1.1 send them.
CONNECTION_HEADERS = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade")
)

# RFC 9113 8.2.1: a field name is a token in lower case; a value holds no NUL, CR or LF
# (the one value check of edgecorn/headers.py) and does not start or end with whitespace.
_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+").fullmatch
_SCHEME = re.compile(rb"[A-Za-z][A-Za-z0-9+\-.]*").fullmatch
_BAD_VALUE = BAD_VALUE.search
_NOT_TOKEN = BAD_NAME.search  # a token in any case (methods, :protocol): headers.py's name rule
_WHITESPACE = (32, 9)  # SP, HTAB


def parse_request(
    stream_id: int, fields: Headers, http_version: str, push: bool = False
) -> tuple[Request, int] | str:
    """The Request for a field section with pseudo-headers and the section's size as
    RFC 9114 4.2.2 counts it (name + value + 32 per field); or, for a malformed section
    (RFC 9113 8.1.1, 8.2, 8.3), why. `push`: h2's peer allows server push.

    One pass over the fields checks and builds at once, in place of the engines' own
    chains of checks: a malformed request is then a stream error, not the connection
    error the h2 engine would make of it. (A check pass then a build pass cost a third
    more per request on HTTP/3: bench/calls.py.)"""
    method = path = scheme = authority = protocol = host = None
    headers: Headers = []
    size = 0
    regular = False
    for name, value in fields:
        size += len(name) + len(value) + 32
        if name[:1] == b":":
            if regular:
                return f"pseudo-header {name!r} after a regular field"
            if name == b":method":
                if method is not None:
                    return "duplicate pseudo-header b':method'"
                method = value
            elif name == b":path":
                if path is not None:
                    return "duplicate pseudo-header b':path'"
                path = value
            elif name == b":scheme":
                if scheme is not None:
                    return "duplicate pseudo-header b':scheme'"
                scheme = value
            elif name == b":authority":
                if authority is not None:
                    return "duplicate pseudo-header b':authority'"
                authority = value
            elif name == b":protocol":
                if protocol is not None:
                    return "duplicate pseudo-header b':protocol'"
                protocol = value
            else:
                return f"unknown pseudo-header {name!r}"
        else:
            regular = True
            if not _NAME(name):
                return f"invalid field name {name!r}"
            if name in CONNECTION_HEADERS:
                return f"connection-specific field {name!r}"
            if name == b"te" and value.lower() != b"trailers":
                return "te other than trailers"
            if name == b"host":
                host = value
            headers.append((name, value))
        if _BAD_VALUE(value) or (value and (value[0] in _WHITESPACE or value[-1] in _WHITESPACE)):
            return f"invalid value for {name!r}"
    if not method or _NOT_TOKEN(method):
        return "no :method, or not a token"  # RFC 9110 9.1
    if scheme is not None and not _SCHEME(scheme):
        return "a :scheme that is not one"  # RFC 3986 3.1
    if protocol is not None and (not protocol or _NOT_TOKEN(protocol)):
        return "a :protocol that is not a token"
    if method == b"CONNECT" and protocol is None:
        # RFC 9113 8.5: an ordinary CONNECT names only the authority to tunnel to
        if scheme is not None or path is not None:
            return "an ordinary CONNECT with :scheme or :path"
        if not authority:
            return "CONNECT without :authority"
    else:
        if protocol is not None and method != b"CONNECT":
            return ":protocol on a method other than CONNECT"  # RFC 8441 4
        if not scheme or not path:
            return "no :scheme or :path"
    if authority is not None:
        if host is None:
            headers.insert(0, (b"host", authority))  # apps written for HTTP/1.1 read Host
        elif host != authority:
            return "host differs from :authority"  # RFC 9113 8.3.1
    request = Request(
        stream_id,
        method.decode("ascii"),
        path or b"",
        headers,
        http_version,
        None if scheme is None else scheme.decode("ascii"),
        authority,
        None if protocol is None else protocol.decode("ascii"),
        push=push,
    )
    return request, size


def malformed_trailers(fields: Headers) -> str:
    """Why a trailer section is malformed (no pseudo-headers, RFC 9113 8.1), or ""."""
    for name, value in fields:
        if not _NAME(name):
            return f"invalid trailer name {name!r}"
        if name in CONNECTION_HEADERS or _BAD_VALUE(value):
            return f"invalid trailer {name!r}"
    return ""


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
