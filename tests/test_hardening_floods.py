"""HTTP/2 floods stay bounded in CPU and memory (issue 14).

Raw frames (struct + hpack) over cleartext h2 (prior knowledge) against a real edgecorn,
on asyncio and trio. Each flood is counted: what the server answered (PING/SETTINGS ACKs,
app starts, RST_STREAM) stays under a limit, and the connection ends with GOAWAY
ENHANCE_YOUR_CALM where the flood is the peer's fault. Sans-IO cases check the budget
rules themselves on both h2 engines. Every read loop is bounded in bytes and by a deadline.
"""

from __future__ import annotations

import socket
import struct
import time
import zlib
from pathlib import Path
from typing import Any

import hpack
import pytest

from edgecorn.protocol.engines import h2_engine, installed
from edgecorn.protocol.events import EndBody, ProtocolError, Request, StreamReset
from edgecorn.protocol.h2 import CONTROL_FRAMES_PER_TICK, H2Adapter

MAGIC = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, CONTINUATION = 0, 1, 3, 4, 6, 7, 9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
CANCEL, ENHANCE_YOUR_CALM = 0x8, 0xB
BACKENDS = ["asyncio", "trio"]
ENGINES = ["h2"] + (["jh2"] if installed("jh2") else [])


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    head = struct.pack(">I", len(payload))[1:] + bytes([kind, flags])
    return head + struct.pack(">I", stream_id) + payload


def request_block(path: str, extra: list[tuple[str, str]] | None = None) -> bytes:
    fields = [(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", "x")]
    return bytes(hpack.Encoder().encode(fields + (extra or [])))


def frames(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(type, flags, stream id, payload) of every whole frame in `data`."""
    out = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        if len(data) < 9 + length:
            break
        sid = int.from_bytes(data[5:9], "big") & 0x7FFFFFFF
        out.append((data[3], data[4], sid, data[9 : 9 + length]))
        data = data[9 + length :]
    return out


def goaway_codes(data: bytes) -> list[int]:
    return [int.from_bytes(p[4:8], "big") for kind, _, _, p in frames(data) if kind == GOAWAY]


class Peer:
    """A raw h2c client: sends what it is told, reads until close, a byte cap or a deadline."""

    def __init__(self, port: int, settings: bytes = b"") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock.sendall(MAGIC + frame(SETTINGS, 0, 0, settings))
        self.received = b""

    def send(self, data: bytes) -> bool:
        """False once the server has closed (it may, mid-flood)."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def read(self, until: Any = None, timeout: float = 10.0, cap: int = 8 << 20) -> bytes:
        deadline = time.monotonic() + timeout
        while len(self.received) < cap and time.monotonic() < deadline:
            if until is not None and until(self.received):
                break
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                part = self.sock.recv(65536)
            except (TimeoutError, OSError):
                break
            if not part:
                break
            self.received += part
        return self.received

    def close(self) -> None:
        self.sock.close()


def start(server_factory: Any, backend: str, config: str = "") -> Any:
    server_factory.worker_class = backend
    return server_factory.start(tls=False, config=config or None)


def closed_with_goaway(data: bytes) -> bool:
    return GOAWAY in [kind for kind, _, _, _ in frames(data)]


# --------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("backend", BACKENDS)
def test_rapid_reset_is_cut_off(server_factory: Any, backend: str, tmp_path: Path) -> None:
    # CVE-2023-44487: HEADERS + RST_STREAM pairs. keep_alive_max_requests would cap the
    # connection at its default 1000 requests: raised, so the flood rule is what acts.
    server = start(server_factory, backend, "keep_alive_max_requests: 1000000\n")
    starts = tmp_path / "starts"
    block = request_block(f"/slow?s=3&file={starts}")
    peer = Peer(server.insecure_port)
    pairs = 5000
    try:
        for batch in range(0, pairs, 250):
            chunk = b"".join(
                frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, block)
                + frame(RST_STREAM, 0, 2 * i + 1, struct.pack(">I", CANCEL))
                for i in range(batch, batch + 250)
            )
            if not peer.send(chunk):
                break
        data = peer.read(closed_with_goaway)
    finally:
        peer.close()
    assert goaway_codes(data) == [ENHANCE_YOUR_CALM], goaway_codes(data)
    time.sleep(0.5)  # apps already spawned write their line now (an upper bound is checked)
    started = starts.read_text().count("started") if starts.exists() else 0
    assert started <= 400, f"{started} apps started for {pairs} cancelled requests"
    assert server.alive()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind", ["ping", "settings"])
def test_ping_and_settings_floods_are_cut_off(server_factory: Any, backend: str, kind: str) -> None:
    server = start(server_factory, backend)
    flood = (
        frame(PING, 0, 0, b"12345678")
        if kind == "ping"
        else frame(SETTINGS, 0, 0, struct.pack(">HI", 0x3, 100))
    )
    count = 50_000
    peer = Peer(server.insecure_port)
    try:
        for _ in range(0, count, 1000):
            if not peer.send(flood * 1000):
                break
        data = peer.read(closed_with_goaway)
    finally:
        peer.close()
    acks = sum(1 for k, flags, _, _ in frames(data) if k in (PING, SETTINGS) and flags & ACK)
    assert goaway_codes(data) == [ENHANCE_YOUR_CALM], goaway_codes(data)
    # The budget plus what one read of frames (64 KiB) can hold.
    assert acks <= CONTROL_FRAMES_PER_TICK + 65536 // 9 + 1, f"{acks} ACKs for {count}"


@pytest.mark.parametrize("backend", BACKENDS)
def test_continuation_flood_is_cut_off(server_factory: Any, backend: str) -> None:
    # A header block that never ends: HEADERS without END_HEADERS, then CONTINUATIONs
    # (fewer than the 64 that h2 itself would stop at, each a full 16 KiB frame).
    server = start(server_factory, backend)
    peer = Peer(server.insecure_port)
    sent = 0
    try:
        peer.send(frame(HEADERS, END_STREAM, 1, request_block("/")))
        for _ in range(60):
            if not peer.send(frame(CONTINUATION, 0, 1, b"\x00" * 16384)):
                break
            sent += 16384
        data = peer.read(closed_with_goaway)
    finally:
        peer.close()
    assert goaway_codes(data) == [ENHANCE_YOUR_CALM], (sent, goaway_codes(data))


@pytest.mark.parametrize("backend", BACKENDS)
def test_oversized_header_lists_stay_bounded(server_factory: Any, backend: str) -> None:
    # 40 requests of ~100 kB header lists (over the 64 KiB limit), each in 16 KiB frames:
    # the first closes the connection, nothing of the rest is kept.
    server = start(server_factory, backend)
    before = server.rss_kib()
    peer = Peer(server.insecure_port)
    try:
        for i in range(40):
            block = request_block("/", [(f"x-h{j}", "v" * 1000) for j in range(100)])
            parts = [block[k : k + 16384] for k in range(0, len(block), 16384)]
            chunk = frame(HEADERS, END_STREAM, 2 * i + 1, parts[0]) + b"".join(
                frame(CONTINUATION, END_HEADERS if n == len(parts) - 1 else 0, 2 * i + 1, p)
                for n, p in enumerate(parts[1:], 1)
            )
            if not peer.send(chunk):
                break
        data = peer.read(closed_with_goaway)
    finally:
        peer.close()
    assert goaway_codes(data) == [ENHANCE_YOUR_CALM]
    assert not [f for f in frames(data) if f[0] == HEADERS], "no request was answered"
    assert server.rss_kib() - before < 16 * 1024


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_window_streams_are_reset(server_factory: Any, backend: str) -> None:
    # A peer that never opens its window (SETTINGS_INITIAL_WINDOW_SIZE 0) holds each
    # response (and the app's chunk waiting in it) until send_timeout resets the stream.
    server = start(server_factory, backend, "send_timeout: 1\n")
    streams = 20
    peer = Peer(server.insecure_port, settings=struct.pack(">HI", 0x4, 0))
    block = request_block("/big?mb=0")  # endless: only the reset ends it
    try:
        peer.send(
            b"".join(
                frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, block) for i in range(streams)
            )
        )

        def all_reset(data: bytes) -> bool:
            return len({f[2] for f in frames(data) if f[0] == RST_STREAM}) >= streams

        data = peer.read(all_reset, timeout=15)
    finally:
        peer.close()
    resets = {f[2]: int.from_bytes(f[3], "big") for f in frames(data) if f[0] == RST_STREAM}
    assert sorted(resets) == [2 * i + 1 for i in range(streams)], resets
    assert set(resets.values()) == {CANCEL}
    assert not [f for f in frames(data) if f[0] == DATA and f[3]], "no window, no DATA"


# --------------------------------------------------------------------------- sans-IO


def adapter(engine: str, stall_ticks: int | None = None) -> H2Adapter:
    proto = H2Adapter(
        max_concurrent_streams=100,
        max_header_list_size=65536,
        max_inbound_frame_size=16384,
        max_requests=1_000_000,
        engine=h2_engine(engine),
        stall_ticks=stall_ticks,
    )
    proto.initiate()
    proto.data_to_send()
    proto.receive_data(MAGIC + frame(SETTINGS, 0, 0))
    proto.data_to_send()
    return proto


@pytest.mark.parametrize("engine", ENGINES)
def test_control_budget_refills_only_while_the_peer_reads(engine: str) -> None:
    ping = frame(PING, 0, 0, b"12345678")
    proto = adapter(engine)
    for _ in range(5):  # 5 ticks of 900 PINGs: under the budget each time
        assert not any(isinstance(e, ProtocolError) for e in proto.receive_data(ping * 900))
        proto.tick(peer_reading=True)
    proto.tick(peer_reading=False)
    assert proto.receive_data(ping * 900) == []
    proto.tick(peer_reading=False)  # the peer reads nothing: no new budget
    events = proto.receive_data(ping * 900)
    assert isinstance(events[0], ProtocolError) and proto.closing
    assert goaway_codes(proto.data_to_send())[-1:] == [ENHANCE_YOUR_CALM]


@pytest.mark.parametrize("engine", ENGINES)
def test_cancelled_streams_under_the_allowance_are_fine(engine: str) -> None:
    proto = adapter(engine)
    block = request_block("/")
    data = b"".join(
        frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, block)
        + frame(RST_STREAM, 0, 2 * i + 1, struct.pack(">I", CANCEL))
        for i in range(100)
    )
    # Asked for and cancelled in the same read: no app is started at all.
    assert proto.receive_data(data) == []
    # Then answered requests: the cancelled ones are now the smaller part.
    for i in range(100, 250):
        proto.receive_data(frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, block))
        proto.send_response(2 * i + 1, 200, [], b"ok", True)
    events = proto.receive_data(
        b"".join(
            frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, block)
            + frame(RST_STREAM, 0, 2 * i + 1, struct.pack(">I", CANCEL))
            for i in range(250, 300)
        )
    )
    assert not any(isinstance(e, ProtocolError) for e in events), "150 of 300 cancelled"
    events = proto.receive_data(
        b"".join(
            frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, block)
            + frame(RST_STREAM, 0, 2 * i + 1, struct.pack(">I", CANCEL))
            for i in range(300, 310)
        )
    )
    assert any(isinstance(e, ProtocolError) for e in events), "160 of 310 cancelled"


@pytest.mark.parametrize("engine", ENGINES)
def test_request_cancelled_in_a_later_read_is_reset(engine: str) -> None:
    proto = adapter(engine)
    events = proto.receive_data(frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block("/")))
    assert [type(e) for e in events] == [Request, EndBody]
    events = proto.receive_data(frame(RST_STREAM, 0, 1, struct.pack(">I", CANCEL)))
    assert events == [StreamReset(1)]


@pytest.mark.parametrize("engine", ENGINES)
def test_stalled_stream_is_reset_after_its_ticks(engine: str) -> None:
    proto = adapter(engine, stall_ticks=3)
    proto.receive_data(frame(SETTINGS, 0, 0, struct.pack(">HI", 0x4, 0)))
    proto.receive_data(frame(HEADERS, END_STREAM | END_HEADERS, 1, request_block("/")))
    proto.send_response(1, 200, [], b"", False)
    assert proto.sendable(1) == 0
    assert proto.tick(True) == [] and proto.tick(True) == []
    assert proto.tick(True) == [StreamReset(1)]
    assert proto.sendable(1) == -1
    resets = [f for f in frames(proto.data_to_send()) if f[0] == RST_STREAM]
    assert [(f[2], int.from_bytes(f[3], "big")) for f in resets] == [(1, CANCEL)]
    # A window that opens in time clears the count.
    proto.receive_data(frame(HEADERS, END_STREAM | END_HEADERS, 3, request_block("/")))
    proto.send_response(3, 200, [], b"", False)
    assert proto.sendable(3) == 0
    proto.tick(True)
    proto.tick(True)
    proto.receive_data(frame(0x8, 0, 3, struct.pack(">I", 100)))  # WINDOW_UPDATE
    assert proto.tick(True) == [] and proto.tick(True) == [] and proto.tick(True) == []
    assert proto.sendable(3) == 100


# --------------------------------------------------------------------------- WebSocket bombs

WS_APP = "tests.apps.ws:app"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE = 0x0, 0x1, 0x2, 0x8
MESSAGE_TOO_BIG = 1009


def ws_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    """A masked client frame (RFC 6455 5.2); the mask is fixed, which the server allows."""
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    size = len(payload)
    if size < 126:
        head += bytes([0x80 | size])
    elif size < 1 << 16:
        head += bytes([0x80 | 126]) + struct.pack(">H", size)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", size)
    mask = b"\x12\x34\x56\x78"
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if size < 4096 else _mask(payload)
    return head + mask + body


def _mask(payload: bytes) -> bytes:
    key = int.from_bytes(b"\x12\x34\x56\x78" * ((len(payload) + 3) // 4), "big")
    padded = payload + b"\0" * (-len(payload) % 4)
    return (int.from_bytes(padded, "big") ^ key).to_bytes(len(padded), "big")[: len(payload)]


def deflated(data: bytes) -> bytes:
    """A permessage-deflate payload: raw deflate, sync-flushed, its 00 00 ff ff cut."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of the unmasked frames a server sent."""
    out = []
    while len(data) >= 2:
        size, at = data[1] & 0x7F, 2
        if size == 126:
            size, at = int.from_bytes(data[2:4], "big"), 4
        elif size == 127:
            size, at = int.from_bytes(data[2:10], "big"), 10
        if len(data) < at + size:
            break
        out.append((data[0] & 0x0F, data[at : at + size]))
        data = data[at + size :]
    return out


class WSPeer:
    def __init__(self, port: int, deflate: bool) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        lines = [
            "GET /echo HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ]
        if deflate:
            lines.append("Sec-WebSocket-Extensions: permessage-deflate")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            part = self.sock.recv(4096)
            if not part:
                break
            head += part
        self.head, _, self.received = head.partition(b"\r\n\r\n")
        assert self.head.startswith(b"HTTP/1.1 101 "), self.head
        assert (b"permessage-deflate" in self.head.lower()) == deflate, self.head

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def frames(self, until: Any, timeout: float = 10.0) -> list[tuple[int, bytes]]:
        deadline = time.monotonic() + timeout
        while not until(server_frames(self.received)) and time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                part = self.sock.recv(65536)
            except OSError:
                break
            if not part or len(self.received) > 8 << 20:
                break
            self.received += part
        return server_frames(self.received)

    def close(self) -> None:
        self.sock.close()


def has_close(frames_: list[tuple[int, bytes]]) -> bool:
    return any(op == OP_CLOSE for op, _ in frames_)


def close_code(frames_: list[tuple[int, bytes]]) -> int | None:
    payload = next((p for op, p in frames_ if op == OP_CLOSE), None)
    return None if payload is None else int.from_bytes(payload[:2], "big")


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:"))


@pytest.mark.parametrize("backend", BACKENDS)
def test_deflate_bomb_is_refused_before_it_inflates(server_factory: Any, backend: str) -> None:
    # 128 MiB of zeros compress to ~128 KiB: one frame, far past a 1 MiB message limit.
    server_factory.worker_class = backend
    server = server_factory.start(
        app=WS_APP, tls=False, config="websocket_max_message_size: 1048576\n"
    )
    bomb = ws_frame(OP_BINARY, deflated(bytes(128 << 20)), rsv1=True)
    peer = WSPeer(server.insecure_port, deflate=True)
    try:
        assert peer.send(ws_frame(OP_TEXT, deflated(b"hello"), rsv1=True))
        assert peer.frames(lambda f: len(f) >= 1)[0][0] == OP_TEXT
        peak = peak_rss_kib(server.pid)
        peer.send(bomb)
        got = peer.frames(has_close)
    finally:
        peer.close()
    assert close_code(got) == MESSAGE_TOO_BIG, got
    grown = peak_rss_kib(server.pid) - peak
    assert grown < 32 * 1024, f"peak RSS grew {grown} KiB for a 128 MiB inflation"


@pytest.mark.parametrize("deflate", [False, True])
def test_fragment_bomb_is_refused_at_the_limit(server_factory: Any, deflate: bool) -> None:
    # 4 KiB fragments of one message, never final: 1009 once they pass 64 KiB (counted
    # inflated when compressed: each 8 KiB fragment inflates to 512 KiB then).
    server = server_factory.start(
        app=WS_APP, tls=False, config="websocket_max_message_size: 65536\n"
    )
    chunk = deflated(bytes(512 << 10)) if deflate else b"x" * 4096
    peer = WSPeer(server.insecure_port, deflate=deflate)
    sent = 0
    try:
        peer.send(ws_frame(OP_BINARY, chunk, fin=False, rsv1=deflate))
        for _ in range(400):
            if has_close(server_frames(peer.received)) or not peer.send(
                ws_frame(OP_CONT, chunk, fin=False)
            ):
                break
            sent += 1
        got = peer.frames(has_close)
    finally:
        peer.close()
    assert close_code(got) == MESSAGE_TOO_BIG, (sent, got)


@pytest.mark.parametrize("size", [65536, 65537])
def test_deflated_message_at_the_limit(server_factory: Any, size: int) -> None:
    server = server_factory.start(
        app=WS_APP, tls=False, config="websocket_max_message_size: 65536\n"
    )
    payload = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    peer = WSPeer(server.insecure_port, deflate=True)
    try:
        # In two compressed fragments: the limit is per message, not per frame.
        half = len(payload) // 2
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        first = compressor.compress(payload[:half]) + compressor.flush(zlib.Z_SYNC_FLUSH)
        second = compressor.compress(payload[half:]) + compressor.flush(zlib.Z_SYNC_FLUSH)
        peer.send(ws_frame(OP_BINARY, first, fin=False, rsv1=True))
        peer.send(ws_frame(OP_CONT, second[:-4]))
        got = peer.frames(lambda f: len(f) >= 1)
    finally:
        peer.close()
    if size == 65536:
        assert got[0][0] == OP_BINARY, got[:1]  # echoed (compressed by the server)
        assert zlib.decompressobj(-15).decompress(got[0][1] + b"\x00\x00\xff\xff") == payload
    else:
        assert close_code(got) == MESSAGE_TOO_BIG, got
