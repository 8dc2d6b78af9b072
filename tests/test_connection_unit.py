"""The connection's event router on a fake TCP backend, sans-IO: bytes in through
`on_data`, real adapters and streams, an in-process app, and the bytes the sender wrote
recorded in order."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import h2.config
import h2.connection
import h2.events

from edgecorn.config import Config
from edgecorn.connection import READ_BACKLOG, StreamConnection
from edgecorn.manager import ConnectionManager
from edgecorn.sender import GONE
from tests.support.hosts import AccessLog


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"%s %d" % (scope["path"].encode(), size)
    headers = [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LoopRuntime:
    """The runtime primitives on the running asyncio loop; tasks kept for the tests."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.tasks: set[Any] = set()

    def defer(self, callback: Callable[[], None]) -> None:
        self.loop.call_soon(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any:
        return self.loop.call_later(delay, callback)

    def call_at(self, when: float, callback: Callable[[], None]) -> Any:
        return self.loop.call_at(when, callback)

    def now(self) -> float:
        return self.loop.time()

    def create_future(self) -> Any:
        return self.loop.create_future()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class FakeTCP(StreamConnection):
    def __init__(self, manager: ConnectionManager) -> None:
        runtime = LoopRuntime()
        super().__init__(manager, False, runtime)
        self.client = ("127.0.0.1", 50000)
        self.server = ("127.0.0.1", 8000)
        self.wire = bytearray()
        self.events: list[str] = []
        self.tasks = runtime.tasks

    def write(self, data: bytes) -> None:
        self.wire += data

    def close_transport(self) -> None:
        self.events.append("close")

    def end_transport(self) -> None:
        self.events.append("end")

    def pause_reading(self) -> None:
        self.events.append("pause")

    def resume_reading(self) -> None:
        self.events.append("resume")


def connection() -> FakeTCP:
    manager = ConnectionManager(Config(include_date_header=False), app, {}, AccessLog(False))
    conn = FakeTCP(manager)
    conn.use_protocol(None)  # cleartext: the first bytes pick the protocol
    return conn


async def settle(conn: FakeTCP, finish: bool = True) -> None:
    """Let the loop run; with `finish`, until every app task has returned."""
    for _ in range(20):
        await asyncio.sleep(0)
    if finish and conn.tasks:
        await asyncio.wait_for(asyncio.gather(*list(conn.tasks)), 5)
        await asyncio.sleep(0)


def test_http1_keep_alive_requests_are_answered_in_order() -> None:
    async def main() -> FakeTCP:
        conn = connection()
        conn.on_data(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n")
        await settle(conn)
        conn.on_data(b"POST /b HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc")
        await settle(conn)
        return conn

    conn = asyncio.run(main())
    wire = bytes(conn.wire)
    assert wire.count(b"HTTP/1.1 200") == 2
    assert wire.index(b"/a 0") < wire.index(b"/b 3")
    assert conn.context.client == ("127.0.0.1", 50000) and conn.context.scheme == "http"
    assert conn.events == [] and not conn.streams  # still open, nothing running


def test_connection_close_ends_gracefully() -> None:
    async def main() -> FakeTCP:
        conn = connection()
        conn.on_data(b"GET /a HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        await settle(conn)
        return conn

    conn = asyncio.run(main())
    assert bytes(conn.wire).endswith(b"/a 0")
    assert conn.events == ["end"] and conn.closed


def test_h2c_upgrade_writes_101_before_the_http2_frames() -> None:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = client.initiate_upgrade_connection()

    async def main() -> FakeTCP:
        conn = connection()
        conn.on_data(
            b"GET /up HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings\r\n"
            b"upgrade: h2c\r\nhttp2-settings: " + settings + b"\r\n\r\n"
        )
        await settle(conn)
        return conn

    conn = asyncio.run(main())
    head, _, frames = bytes(conn.wire).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    events = client.receive_data(frames)  # the rest is HTTP/2 only
    answers = [e for e in events if isinstance(e, h2.events.DataReceived)]
    assert [e.stream_id for e in answers] == [1] and answers[0].data == b"/up 0"


def test_a_body_backlog_pauses_reading_until_the_app_reads() -> None:
    size = READ_BACKLOG + 1

    async def main() -> FakeTCP:
        conn = connection()
        head = b"POST /big HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n" % size
        conn.on_data(head + b"x" * size)
        assert conn.events == ["pause"]  # before the app has read any of it
        await settle(conn)
        return conn

    conn = asyncio.run(main())
    assert conn.events == ["pause", "resume"]
    assert bytes(conn.wire).endswith(b"/big %d" % size)


def test_lost_connection_resets_streams_and_releases_the_sender() -> None:
    seen: list[Any] = []

    async def waiting(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(await receive())
        seen.append(await receive())

    async def main() -> FakeTCP:
        conn = connection()
        conn.app = waiting
        conn.on_data(b"POST /w HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nab")
        await settle(conn, finish=False)  # the app waits for the rest of the body
        conn.on_lost()
        await settle(conn)
        return conn

    conn = asyncio.run(main())
    assert seen[-1] == {"type": "http.disconnect"}
    assert conn.closed and conn.sender.transport is GONE  # no reference back: no cycle
    assert conn not in conn.manager.connections
