"""The stream events every protocol adapter emits.

Commands go the other way as methods on the adapter (see `base.Adapter`). Events are frozen:
an adapter builds each one with its final values (`dataclasses.replace` where a later fact
changes one, as the h2c upgrade's request becoming stream 1). Events carry what the peer
sent; what the server does about it (503 when full, 404 for a foreign Host) is decided by
the connection, except for the answers a protocol itself prescribes (`Refused`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


class _Building:
    """A Request's slots without the frozen guard: a Request is filled in as one of these,
    then becomes a Request (same slots, so Python allows the `__class__` change)."""

    __slots__ = Request.__slots__


_NEW = object.__new__


def _new_request(
    cls: type[Request],
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
) -> Request:
    # One Request per request, on the hot path: the frozen dataclass's own __init__ sets
    # each of the 10 fields through object.__setattr__ (~5,800 more instructions per
    # Request than a mutable one, by callgrind); plain slot stores on the twin and one
    # class change cost ~1,400. Same signature and defaults as the generated __init__,
    # so keywords and dataclasses.replace work (tests/test_h1_states.py checks).
    self: Any = _NEW(_Building)
    self.stream_id = stream_id
    self.method = method
    self.raw_path = raw_path
    self.headers = headers
    self.http_version = http_version
    self.scheme = scheme
    self.authority = authority
    self.protocol = protocol
    self.early_data = early_data
    self.push = push
    self.__class__ = cls
    request: Request = self
    return request


def _reduce_request(self: Request) -> tuple[type[Request], tuple[Any, ...]]:
    # copy and pickle rebuild a Request through __new__, with its fields
    return Request, tuple(getattr(self, name) for name in Request.__slots__)


Request.__new__ = _new_request  # type: ignore[method-assign,assignment]
Request.__init__ = object.__init__  # type: ignore[method-assign,assignment]  # all done above
Request.__reduce__ = _reduce_request  # type: ignore[method-assign,assignment]


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
