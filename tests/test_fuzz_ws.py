"""Property-based fuzzing (hypothesis) of WebSocket framing (issue 14), sans-IO: bytes go
into a real `WebSocketStream` (wsproto with edgecorn's bounded permessage-deflate) on a
fake host, split at random points.

- Random and mutated frame streams never raise out of the stream, never give the app a
  message over `websocket_max_message_size`, and never give it more messages than were
  framed.
- Well-framed messages (text or bytes, fragmented at random, compressed or not) arrive
  whole and in order when within the limit; a message over it is answered with close
  1009 and never delivered.

Bounded examples in the normal suite (the profile of tests/test_fuzz.py: 40 derandomized
examples); `EDGECORN_FUZZ=1` runs 3000 random ones per property.
"""

from __future__ import annotations

import asyncio
import os
import zlib
from collections.abc import Callable, Iterable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import BytesMessage, TextMessage
from wsproto.extensions import PerMessageDeflate

from edgecorn.asgi.host import ConnectionContext, StreamLimits
from edgecorn.asgi.websocket import WebSocketStream
from edgecorn.protocol.events import Headers, Request
from tests.support.fuzz import chunks, mutate

LONG = os.environ.get("EDGECORN_FUZZ") == "1"
FUZZ = settings(
    max_examples=3000 if LONG else 40,
    deadline=None,
    derandomize=not LONG,
    suppress_health_check=[HealthCheck.too_slow],
)
LIMIT = 1024  # websocket_max_message_size for every example: small, so it is hit often
MESSAGE_TOO_BIG = 1009


class Handle:
    def cancel(self) -> None:
        pass


class FakeHost:
    """What a WebSocketStream asks of its connection; records what it was told."""

    def __init__(self) -> None:
        self.context = ConnectionContext(
            "http",
            ("127.0.0.1", 50000),
            ("127.0.0.1", 8000),
            limits=StreamLimits(max_message_size=LIMIT),
        )
        self.sent = bytearray()  # the server's frames after the handshake
        self.status: int | None = None
        self.acked = 0
        self.ended = False

    def create_future(self) -> Any:
        return asyncio.get_running_loop().create_future()

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any:
        return Handle()  # timers (the close timer, pings) never fire here

    def response_headers(self, headers: Iterable[tuple[bytes, bytes]]) -> Headers:
        return list(headers)

    async def respond(
        self, stream_id: int, status: int, headers: Headers, body: bytes, end: bool
    ) -> None:
        self.status = status
        self.headers = headers

    async def send_body(self, stream_id: int, data: bytes, end: bool) -> None:
        self.sent += data

    def write_body(self, stream_id: int, data: bytes) -> None:
        self.sent += data

    def end_body(self, stream_id: int) -> None:
        self.ended = True

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        pass

    def send_informational(self, stream_id: int, status: int, headers: Headers) -> None:
        pass

    def want_body(self, stream_id: int) -> None:
        pass

    def ack(self, stream_id: int, size: int) -> None:
        self.acked += size

    def abort(self, stream_id: int) -> None:
        self.ended = True

    def stream_done(self, stream: Any) -> None:
        pass


def accepted_stream(deflate: bool) -> tuple[WebSocketStream, FakeHost]:
    host = FakeHost()
    headers = [
        (b"host", b"a"),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ=="),
        (b"sec-websocket-version", b"13"),
    ]
    if deflate:
        headers.append((b"sec-websocket-extensions", b"permessage-deflate"))
    stream = WebSocketStream(host, Request(1, "GET", b"/ws", headers, "1.1"))
    stream.inbox.clear()  # websocket.connect: the app has had it
    asyncio.run(stream._accept({"type": "websocket.accept"}))
    assert host.status == 101
    answer = dict(host.headers).get(b"sec-websocket-extensions", b"")
    assert answer.startswith(b"permessage-deflate") == deflate
    return stream, host


def client(deflate: bool) -> WSConnection:
    """A wsproto client in the state the handshake above leaves it in."""
    extensions = []
    if deflate:
        ext = PerMessageDeflate()
        ext.finalize("permessage-deflate")
        extensions.append(ext)
    return WSConnection(ConnectionType.CLIENT, extensions)


def close_codes(sent: bytes) -> list[int]:
    """Close codes in the server's (unmasked) frames."""
    codes, data = [], bytes(sent)
    while len(data) >= 2:
        size, at = data[1] & 0x7F, 2
        if size == 126:
            size, at = int.from_bytes(data[2:4], "big"), 4
        elif size == 127:
            size, at = int.from_bytes(data[2:10], "big"), 10
        if len(data) < at + size:
            break
        if data[0] & 0x0F == 0x8:
            codes.append(int.from_bytes(data[at : at + 2], "big") if size >= 2 else 1005)
        data = data[at + size :]
    return codes


def feed(stream: WebSocketStream, host: FakeHost, parts: list[bytes]) -> list[Any]:
    """Feed `parts`; after each, check the bounds. Returns the app's messages."""
    received: list[Any] = []
    fed = 0
    for part in parts:
        fed += len(part)
        stream.on_body(part)
        assert stream.part_size <= LIMIT  # what a fragmented message holds so far
        while stream.inbox:
            message = stream.inbox.popleft()
            if message["type"] == "websocket.receive":
                value = message.get("bytes") if message.get("text") is None else message["text"]
                assert size_of(value) <= LIMIT
            received.append(message)
        assert host.acked <= fed
    return received


def payloads(received: list[Any]) -> list[str | bytes]:
    out: list[str | bytes] = []
    for message in received:
        if message["type"] == "websocket.receive":
            out.append(message["text"] if message.get("text") is not None else message["bytes"])
    return out


message = st.one_of(st.binary(max_size=1500), st.text(max_size=600))
messages = st.lists(st.tuples(message, st.lists(st.integers(1, 400), max_size=3)), max_size=5)
cuts = st.lists(st.integers(0, 10**6), max_size=8)
edits = st.lists(st.tuples(st.integers(0, 2), st.integers(0, 10**6), st.integers(0, 255)))


def frames_for(ws: WSConnection, plan: list[tuple[str | bytes, list[int]]]) -> bytes:
    """Each message sent in fragments cut at the plan's sizes (the rest in the last)."""
    out = b""
    for data, sizes in plan:
        kind = TextMessage if isinstance(data, str) else BytesMessage
        at = 0
        for size in sizes:
            if at + size >= len(data):
                break
            out += ws.send(kind(data=data[at : at + size], message_finished=False))
            at += size
        out += ws.send(kind(data=data[at:], message_finished=True))
    return out


def size_of(data: str | bytes) -> int:
    return len(data.encode() if isinstance(data, str) else data)  # the limit is in bytes


@FUZZ
@given(deflate=st.booleans(), plan=messages, cut=cuts)
def test_framed_messages_arrive_whole_or_get_1009(
    deflate: bool, plan: list[tuple[str | bytes, list[int]]], cut: list[int]
) -> None:
    stream, host = accepted_stream(deflate)
    wire = frames_for(client(deflate), plan)
    got = payloads(feed(stream, host, chunks(wire, cut)))
    within = []
    for data, _ in plan:
        if size_of(data) > LIMIT:
            break  # the stream closes with 1009 at the first message over the limit
        within.append(data)
    assert got == within
    if len(within) < len(plan):
        assert close_codes(host.sent) == [MESSAGE_TOO_BIG]
    else:
        assert close_codes(host.sent) == []


@FUZZ
@given(deflate=st.booleans(), plan=messages, edit=edits, cut=cuts)
def test_mutated_frames_never_raise_nor_overflow(
    deflate: bool, plan: list[tuple[str | bytes, list[int]]], edit: Any, cut: list[int]
) -> None:
    stream, host = accepted_stream(deflate)
    wire = mutate(frames_for(client(deflate), plan), edit)
    got = payloads(feed(stream, host, chunks(wire, cut)))
    # A mutation can split or join frames but never make more messages than bytes allow;
    # the per-message bound is checked in `feed`.
    assert len(got) <= len(plan) + len(edit)


@FUZZ
@given(deflate=st.booleans(), data=st.binary(max_size=4096), cut=cuts)
def test_random_bytes_never_raise(deflate: bool, data: bytes, cut: list[int]) -> None:
    stream, host = accepted_stream(deflate)
    feed(stream, host, chunks(data, cut))


@FUZZ
@given(size=st.integers(0, 4 * LIMIT), fragments=st.integers(1, 4), cut=cuts)
def test_inflated_size_is_what_counts(size: int, fragments: int, cut: list[int]) -> None:
    # Highly compressible payloads: a few bytes on the wire, `size` after inflating.
    stream, host = accepted_stream(True)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = bytes(size)
    step = max(1, size // fragments)
    wire = b""
    bounds = list(range(0, size, step)) or [0]
    for n, start in enumerate(bounds):
        last = n == len(bounds) - 1
        chunk = compressor.compress(data[start : start + step if not last else size])
        chunk += compressor.flush(zlib.Z_SYNC_FLUSH)
        if last:
            chunk = chunk[:-4]  # RFC 7692 7.2.1: the final 00 00 ff ff is left out
        first = n == 0
        head = (0x80 if last else 0) | (0x40 if first else 0) | (0x2 if first else 0)
        wire += _masked(head, chunk)
    assert stream.ws is not None
    (deflate,) = stream.ws._proto.extensions  # type: ignore[attr-defined]
    inflate = deflate.frame_inbound_payload_data
    largest = [0]

    def watched(proto: Any, payload: bytes) -> Any:
        out = inflate(proto, payload)
        largest[0] = max(largest[0], len(out) if isinstance(out, bytes) else 0)
        return out

    deflate.frame_inbound_payload_data = watched
    got = payloads(feed(stream, host, chunks(wire, cut)))
    # Never inflated past the limit (and the byte that tells it was passed), bomb or not.
    assert largest[0] <= LIMIT + 1
    if size <= LIMIT:
        assert got == [data] and close_codes(host.sent) == []
    else:
        assert got == [] and close_codes(host.sent) == [MESSAGE_TOO_BIG]


def _masked(first_byte: int, payload: bytes) -> bytes:
    size = len(payload)
    if size < 126:
        head = bytes([first_byte, 0x80 | size])
    elif size < 1 << 16:
        head = bytes([first_byte, 0x80 | 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([first_byte, 0x80 | 127]) + size.to_bytes(8, "big")
    key = b"\x01\x02\x03\x04"
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
