"""A fake StreamHost: drives HTTPStream/WebSocketStream without a connection or socket,
and records every command a stream gives (see edgecorn/asgi/host.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from edgecorn.asgi.host import ConnectionContext
from edgecorn.protocol.events import Headers


class AccessLog:
    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.lines: list[tuple[Any, ...]] = []

    def log(
        self, scope: Any, status: int, headers: Any, sent: int, duration: float, complete: bool
    ) -> None:
        self.lines.append((scope["path"], status, sent, complete))


class Timer:
    def __init__(self, delay: float, callback: Callable[[], None]) -> None:
        self.delay = delay
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeHost:
    """`calls` lists the commands in order, as (name, stream_id, ...) tuples; `sent` is
    the body bytes of every respond/send_body/write_body; timers never fire by themselves."""

    def __init__(self, context: ConnectionContext | None = None) -> None:
        self.context = context or ConnectionContext(
            "http", ("127.0.0.1", 50000), ("127.0.0.1", 8000), access_log=AccessLog(False)
        )
        self.calls: list[tuple[Any, ...]] = []
        self.sent = bytearray()
        self.timers: list[Timer] = []
        self.done: list[Any] = []

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]

    def create_future(self) -> Any:
        return asyncio.get_running_loop().create_future()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(delay, callback)
        self.timers.append(timer)
        return timer

    def response_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> Headers:
        return list(headers) + [(b"server", b"fake")]

    async def respond(
        self, stream_id: int, status: int, headers: Headers, body: bytes, end: bool
    ) -> None:
        self.calls.append(("respond", stream_id, status, headers, body, end))
        self.sent += body

    async def send_body(self, stream_id: int, data: bytes, end: bool) -> None:
        self.calls.append(("send_body", stream_id, data, end))
        self.sent += data

    def write_body(self, stream_id: int, data: bytes) -> None:
        self.calls.append(("write_body", stream_id, data))
        self.sent += data

    def end_body(self, stream_id: int) -> None:
        self.calls.append(("end_body", stream_id))

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        self.calls.append(("send_trailers", stream_id, headers))

    def send_informational(self, stream_id: int, status: int, headers: Headers) -> None:
        self.calls.append(("send_informational", stream_id, status, headers))

    def push(self, stream_id: int, fields: Headers) -> None:
        self.calls.append(("push", stream_id, fields))

    def want_body(self, stream_id: int) -> None:
        self.calls.append(("want_body", stream_id))

    def ack(self, stream_id: int, size: int) -> None:
        self.calls.append(("ack", stream_id, size))

    def abort(self, stream_id: int) -> None:
        self.calls.append(("abort", stream_id))

    def stream_done(self, stream: Any) -> None:
        self.calls.append(("stream_done", stream.stream_id))
        self.done.append(stream)
