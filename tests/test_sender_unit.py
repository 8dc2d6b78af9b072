"""The write side (edgecorn/sender.py) and the manager's protocol choice, sans-IO: a
`StreamSender` on a recording transport, driven by real adapters (h1, h2) or a small
fake one whose flow-control window the test opens by hand."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from edgecorn.config import Config
from edgecorn.manager import H2_PREFACE, ConnectionManager
from edgecorn.protocol.h1 import H1Adapter
from edgecorn.protocol.h2 import H2Adapter
from edgecorn.sender import StreamSender

GET = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"


class Transport:
    """Records writes and closes; its loop defers to a list the test runs."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closes: list[str] = []
        self.deferred: list[Callable[[], None]] = []
        self.spawned: list[Any] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close_transport(self) -> None:
        self.closes.append("close")

    def end_transport(self) -> None:
        self.closes.append("end")

    def defer(self, callback: Callable[[], None]) -> None:
        self.deferred.append(callback)

    def create_future(self) -> Any:
        return asyncio.get_running_loop().create_future()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.spawned.append(asyncio.ensure_future(coro))

    def run_deferred(self) -> None:
        callbacks, self.deferred = self.deferred, []
        for callback in callbacks:
            callback()


class Windowed:
    """An adapter whose one stream may send `room` bytes; sent bytes are queued."""

    closing = False

    def __init__(self, room: int) -> None:
        self.room = room
        self.out: list[bytes] = []

    def sendable(self, stream_id: int) -> int:
        return self.room

    def send_response(
        self, stream_id: int, status: int, headers: Any, body: bytes, end: bool
    ) -> None:
        self.out.append(b"HEAD%d" % status + body)
        self.room -= len(body)

    def send_data(self, stream_id: int, data: bytes, end: bool) -> None:
        self.out.append(data + (b"|END" if end else b""))
        self.room -= len(data)

    def data_to_send(self) -> bytes:
        data, self.out = b"".join(self.out), []
        return data


def manager() -> ConnectionManager:
    return ConnectionManager(Config(), None, {}, None)  # type: ignore[arg-type]


def sender_with(proto: Any) -> tuple[StreamSender, Transport]:
    transport = Transport()
    sender = StreamSender(transport, transport)
    sender.use(proto)
    if isinstance(proto, Windowed):
        sender.batch = False  # one write per flush, so each can be seen
    return sender, transport


def test_h1_flush_writes_the_adapter_queue_at_once_and_ends_when_it_closes() -> None:
    h1 = manager().new_h1(allow_h2c=False)
    sender, transport = sender_with(h1)
    assert not sender.batch
    h1.receive_data(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    h1.send_response(1, 200, [(b"content-length", b"2")], b"ok", True)
    sender.flush()
    assert transport.writes and transport.writes[0].startswith(b"HTTP/1.1 200")
    assert transport.writes[0].endswith(b"ok")
    assert transport.closes == ["end"] and sender.closed and sender.ending
    sender.close()  # a forced close after the graceful one cuts the linger
    assert transport.closes == ["end", "close"] and not sender.ending


def test_multiplexed_flushes_coalesce_into_one_write_per_loop_turn() -> None:
    proto = Windowed(room=100)
    sender, transport = sender_with(proto)
    sender.batch = True  # as for h2 (what `use` picks for any adapter but h1)
    for part in (b"a", b"b", b"c"):
        proto.send_data(1, part, False)
        sender.flush()
    assert transport.writes == [] and len(transport.deferred) == 1
    transport.run_deferred()
    assert transport.writes == [b"abc"]


def test_switching_adapters_writes_what_the_old_one_still_holds_first() -> None:
    """h2c: the h1 adapter queues `101 Switching Protocols`; it leaves before HTTP/2."""
    mgr = manager()
    h1 = mgr.new_h1(allow_h2c=True)
    sender, transport = sender_with(h1)
    events = h1.receive_data(
        b"GET / HTTP/1.1\r\nhost: x\r\nconnection: Upgrade, HTTP2-Settings\r\n"
        b"upgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    )
    assert [type(e).__name__ for e in events] == ["H2CUpgrade"]
    h2 = mgr.new_h2(upgrade_settings=events[0].settings)  # type: ignore[attr-defined]
    sender.use(h2)
    assert transport.writes[0].startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"upgrade: h2c" in transport.writes[0]
    assert sender.batch and transport.closes == []  # the h1 adapter's close is not ours
    transport.run_deferred()
    sender.flush()
    transport.run_deferred()
    assert transport.writes[1:]  # the server's SETTINGS follow the 101


def test_send_body_waits_for_the_window_then_finishes() -> None:
    proto = Windowed(room=3)
    sender, transport = sender_with(proto)

    async def main() -> None:
        task = asyncio.ensure_future(sender.send_body(1, b"abcdefgh", True))
        await asyncio.sleep(0)
        assert transport.writes == [b"abc"] and not task.done()
        proto.room = 100
        sender.window_opened()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert b"".join(transport.writes) == b"abcdefgh|END"


def test_respond_waits_while_the_transport_is_full() -> None:
    proto = Windowed(room=100)
    sender, transport = sender_with(proto)

    async def main() -> None:
        sender.on_pause_writing()
        task = asyncio.ensure_future(sender.respond(1, 200, [], b"hi", True))
        await asyncio.sleep(0)
        assert transport.writes == [b"HEAD200hi"] and not task.done()
        sender.on_resume_writing()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())


def test_a_lost_connection_releases_every_waiting_sender() -> None:
    proto = Windowed(room=0)
    sender, transport = sender_with(proto)

    async def main() -> None:
        task = asyncio.ensure_future(sender.send_body(1, b"abc", True))
        await asyncio.sleep(0)
        assert not task.done()
        sender.lost()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert sender.closed and transport.writes == []


def test_write_body_keeps_order_behind_a_blocked_piece() -> None:
    proto = Windowed(room=2)
    sender, transport = sender_with(proto)

    async def main() -> None:
        sender.write_body(1, b"ab")  # fits: out at once
        sender.write_body(1, b"cd")  # no room: queued ...
        sender.write_body(1, b"e")  # ... and this one waits behind it
        assert b"".join(transport.writes) == b"ab"
        proto.room = 10
        sender.window_opened()
        await asyncio.wait_for(asyncio.gather(*transport.spawned), 5)

    asyncio.run(main())
    assert b"".join(transport.writes) == b"abcde"


# --- the manager picks the protocol ---------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 10, len(H2_PREFACE) - 1])
def test_a_prefix_of_the_preface_waits_for_more(size: int) -> None:
    assert manager().for_preface(H2_PREFACE[:size]) is None


def test_the_preface_means_h2c_anything_else_http1() -> None:
    mgr = manager()
    assert isinstance(mgr.for_preface(H2_PREFACE + b"\0\0\0\4"), H2Adapter)
    assert isinstance(mgr.for_preface(GET), H1Adapter)
    assert isinstance(mgr.for_preface(b"PRX"), H1Adapter)


def test_alpn_picks_the_adapter() -> None:
    mgr = manager()
    assert isinstance(mgr.for_alpn("h2"), H2Adapter)
    assert isinstance(mgr.for_alpn("http/1.1"), H1Adapter)


def test_a_connection_that_starts_during_a_drain_is_told_at_once() -> None:
    mgr = manager()
    mgr.draining = True
    h1 = mgr.for_preface(GET)
    assert isinstance(h1, H1Adapter)
    h1.receive_data(GET)
    h1.send_response(1, 200, [(b"content-length", b"0")], b"", True)
    assert b"connection: close" in h1.data_to_send().lower()
