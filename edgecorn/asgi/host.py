"""What a protocol-blind stream gets from the connection it runs on.

`ConnectionContext`: the per-connection facts (scheme, addresses, TLS, state,
limits), frozen, built once when the connection knows them (after TLS and ALPN).
`StreamHost`: the context plus the commands a stream sends (respond, send body,
reset, ...). `HTTPStream` and `WebSocketStream` are written against these, not
against `edgecorn.connection.Connection`, so the streams do not import their
caller and can be driven by a fake host in unit tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..config import Config
from ..protocol.events import Headers


@dataclass(frozen=True, slots=True)
class StreamLimits:
    """The config values streams read, taken once per worker (Config does not change)."""

    max_message_size: int = 16 * 1024 * 1024  # websocket_max_message_size
    max_app_queue_size: int = 10
    ping_interval: float | None = None  # websocket_ping_interval
    permessage_deflate: bool = True  # websocket_permessage_deflate

    @classmethod
    def from_config(cls, config: Config) -> StreamLimits:
        return cls(
            max_message_size=config.websocket_max_message_size,
            max_app_queue_size=max(1, config.max_app_queue_size),
            ping_interval=config.websocket_ping_interval,
            permessage_deflate=config.websocket_permessage_deflate,
        )


@dataclass(frozen=True, slots=True)
class ConnectionContext:
    """One connection's facts for its streams' scopes; `state` and `extensions` are
    shared, not copied (build_scope copies `state` per request, as ASGI asks)."""

    scheme: str  # "http" or "https"; a trusted proxy's header may override it per request
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    root_path: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    extensions: dict[str, dict[str, Any]] = field(default_factory=dict)
    access_log: Any = None  # has `.enabled` and `.log(...)`
    trusted_proxies: list[str] = field(default_factory=list)
    limits: StreamLimits = StreamLimits()


class StreamHost(Protocol):
    context: ConnectionContext

    # event-loop primitives
    def create_future(self) -> Any: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any: ...

    # commands: the response, the request body's flow control, the stream's end
    def response_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> Headers: ...

    async def respond(
        self, stream_id: int, status: int, headers: Headers, body: bytes, end: bool
    ) -> None: ...

    async def send_body(self, stream_id: int, data: bytes, end: bool) -> None: ...

    def write_body(self, stream_id: int, data: bytes) -> None: ...

    def end_body(self, stream_id: int) -> None: ...

    def send_trailers(self, stream_id: int, headers: Headers) -> None: ...

    def send_informational(self, stream_id: int, status: int, headers: Headers) -> None: ...

    def push(self, stream_id: int, fields: Headers) -> None: ...

    def want_body(self, stream_id: int) -> None: ...

    def ack(self, stream_id: int, size: int) -> None: ...

    def abort(self, stream_id: int) -> None: ...

    # `stream` is the HTTPStream or WebSocketStream that finished (Any: the streams
    # import this module, so naming them here would be a circle)
    def stream_done(self, stream: Any) -> None: ...
