"""The stream events every protocol adapter emits.

Commands go the other way as methods on the adapter (see `base.Adapter`). Events are frozen:
an adapter builds each one with its final values (`dataclasses.replace` where a later fact
changes one, as the h2c upgrade's request becoming stream 1). Events carry what the peer
sent; what the server does about it (503 when full, 404 for a foreign Host) is decided by
the connection, except for the answers a protocol itself prescribes (`Refused`).
"""

from __future__ import annotations

from dataclasses import dataclass

Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Request:
    stream_id: int
    method: str
    raw_path: bytes
    headers: Headers
    http_version: str
    scheme: str | None = None  # h2/h3 carry :scheme; h1 gets it from the transport
    authority: bytes | None = None
    protocol: str | None = None  # extended CONNECT's :protocol
    early_data: bool = False  # h3: it came in 0-RTT
    push: bool = False  # h2: the client allows server push (http.response.push)


# One Request per request: the generated frozen __init__ sets each of the 10 fields with
# object.__setattr__, whose frozen-class check costs ~1 us per request; the slots' own
# setters do the same work at about a third of that. Same signature, same defaults, so
# keywords and dataclasses.replace work as before (tests/test_h1_states.py checks).
(_sid, _method, _path, _headers, _version, _scheme, _authority, _protocol, _early, _push) = (
    Request.__dict__[name].__set__
    for name in (
        "stream_id",
        "method",
        "raw_path",
        "headers",
        "http_version",
        "scheme",
        "authority",
        "protocol",
        "early_data",
        "push",
    )
)


def _request_init(
    self: Request,
    stream_id: int,
    method: str,
    raw_path: bytes,
    headers: Headers,
    http_version: str,
    scheme: str | None = None,
    authority: bytes | None = None,
    protocol: str | None = None,
    early_data: bool = False,
    push: bool = False,
) -> None:
    _sid(self, stream_id)
    _method(self, method)
    _path(self, raw_path)
    _headers(self, headers)
    _version(self, http_version)
    _scheme(self, scheme)
    _authority(self, authority)
    _protocol(self, protocol)
    _early(self, early_data)
    _push(self, push)


Request.__init__ = _request_init  # type: ignore[method-assign]


@dataclass(frozen=True, slots=True)
class Body:
    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class EndBody:
    stream_id: int
    trailers: Headers | None = None


@dataclass(frozen=True, slots=True)
class StreamReset:
    """The peer reset the stream or the connection went away under it."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """The peer broke the protocol; the adapter has queued its answer (400, GOAWAY...)."""

    message: str


@dataclass(frozen=True, slots=True)
class H2CUpgrade:
    """An HTTP/1.1 request asked for `Upgrade: h2c`; its body has been read whole."""

    request: Request
    body: bytes
    settings: bytes
    trailing: bytes


@dataclass(frozen=True, slots=True)
class Refused:
    """A request the protocol itself says the server must answer, never the app: HTTP/3's
    425 Too Early (RFC 8470 5.2, a non-idempotent request in 0-RTT) and 431 (a header
    section past the limit we advertised). It runs through the usual stream, so it is
    logged and counted like any answer."""

    request: Request
    status: int


Event = Request | Body | EndBody | StreamReset | ProtocolError | H2CUpgrade | Refused
