"""The stream events every protocol adapter emits.

Commands go the other way as methods on the adapter (see `base.Adapter`). Events are frozen:
an adapter builds each one with its final values. `Request` is not frozen yet: h1.py sets
`protocol` on it after parsing and h2.py rewrites `stream_id`/`http_version` of the h2c
upgrade's request (issue 8 lists them).
"""

from __future__ import annotations

from dataclasses import dataclass

Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class Request:
    stream_id: int
    method: str
    raw_path: bytes
    headers: Headers
    http_version: str
    scheme: str | None = None  # h2/h3 carry :scheme; h1 gets it from the transport
    authority: bytes | None = None
    protocol: str | None = None  # extended CONNECT's :protocol
    early_data: bool = False
    refuse: int = 0  # a status the server answers with itself (425 Too Early, 431)
    push: bool = False  # h2: the client allows server push (http.response.push)


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


Event = Request | Body | EndBody | StreamReset | ProtocolError | H2CUpgrade
