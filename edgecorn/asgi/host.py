"""StreamHost: what a protocol-blind stream needs from the connection it runs on.

`HTTPStream` and `WebSocketStream` are written against this Protocol, not
against `edgecorn.connection.Connection`, so the streams do not import their
caller and can be driven by a fake host in unit tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

from ..config import Config
from ..protocol.events import Headers


class StreamHost(Protocol):
    # per-connection facts that go into the scope
    config: Config
    scheme: str
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    state: dict[str, Any]
    extensions: dict[str, dict[str, Any]]
    access_log: Any

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
