"""Slow clients on HTTP/2 and HTTP/3, and a minimum request-body rate everywhere (issue 14).

- `header_timeout` on HTTP/2: a HEADERS frame whose CONTINUATIONs never come (raw frames
  over TLS beside the `h2` client) ends the connection with a graceful GOAWAY that leaves
  the stalled stream out, while a stream already accepted is still answered.
- `header_timeout` on HTTP/3 (a raw aioquic client): a request stream whose HEADERS frame
  stops half-way, and one that never sent a byte, are reset with H3_REQUEST_INCOMPLETE;
  the connection lives on.
- `body_timeout` on HTTP/3: a stalled body resets its stream; the app sees
  `http.disconnect`.
- `body_min_rate`: a body trickled one byte at a time is cut on h1 (408), h2 and h3
  (stream reset), while one that comes fast enough is not.

Timeouts are 1 s; every client loop is bounded in count and time, nothing asserts on timing.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aioquic.quic.events import StreamReset as QuicStreamReset
from hyperframe.frame import ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame

from tests.support.clients import H2Conn
from tests.support.h3 import RawH3Client, RawResponse, wait_quic
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(120)

APP = "tests.apps.hardening:read_body"
CONFIG = "header_timeout: 1\nbody_timeout: 1\n"
RATE_CONFIG = CONFIG + "body_min_rate: 100\n"
H3_REQUEST_INCOMPLETE = 0x10D


# --------------------------------------------------------------------------- helpers


def _h2_wait(conn: H2Conn, seconds: float) -> None:
    """Process what the server sends for up to `seconds` (one read)."""
    conn.sock.settimeout(seconds)
    try:
        conn.pump()
    except TimeoutError:
        pass
    finally:
        conn.sock.settimeout(10)


def _h2_frames_until_closed(conn: H2Conn, drip: Callable[[], None] | None = None) -> list[Any]:
    """Every frame the server sends until it closes, parsed here: the h2 client stops
    at a GOAWAY, while the streams it leaves in are still answered after it. `drip`,
    if given, is called before each read (reads then wait 0.25 s, not 10 s)."""
    data = b""
    conn.sock.settimeout(10 if drip is None else 0.25)  # each read bounded
    for _ in range(200):
        if drip is not None:
            try:
                drip()
            except OSError:  # the server is done reading
                drip = None
        try:
            part = conn.sock.recv(65536)
        except ConnectionResetError:
            part = b""
        except TimeoutError:
            if drip is not None:
                continue
            raise AssertionError(f"the server kept the connection open: {data!r}") from None
        if not part:
            break
        data += part
    else:
        raise AssertionError("the server kept the HTTP/2 connection open")
    frames = []
    while len(data) >= 9:
        frame, length = Frame.parse_frame_header(memoryview(data[:9]))
        frame.parse_body(memoryview(data[9 : 9 + length]))
        frames.append(frame)
        data = data[9 + length :]
    return frames


class H3Client(RawH3Client):
    """The raw aioquic client, noting the stream resets the server sends."""

    def __init__(self, port: int, cafile: str) -> None:
        self.resets: dict[int, int] = {}
        super().__init__(port, cafile)
        next_event = self.quic.next_event

        def noting() -> Any:
            event = next_event()
            if isinstance(event, QuicStreamReset):
                self.resets[event.stream_id] = event.error_code
            return event

        self.quic.next_event = noting  # type: ignore[method-assign]

    def start(self, path: str, method: str, headers: list[tuple[bytes, bytes]]) -> int:
        """A request whose body is left open (sent with `send`)."""
        sid = self.quic.get_next_available_stream_id()
        fields = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", f"localhost:{self.addr[1]}".encode()),
            (b":path", path.encode()),
            *headers,
        ]
        self.h3.send_headers(sid, fields, end_stream=False)
        self.responses[sid] = RawResponse()
        self._flush()
        return sid

    def send(self, sid: int, data: bytes) -> None:
        self.h3.send_data(sid, data, end_stream=False)
        self._flush()

    def get_ok(self, path: str = "/") -> bytes | None:
        """A GET on this connection: its status line, to show the connection lives on."""
        sid = self.request(path)
        assert self.pump_until(lambda: self.responses[sid].ended, 10), self.responses[sid]
        return self.responses[sid].status and b"%d" % self.responses[sid].status


@pytest.fixture
def h3client(cafile: str) -> Any:
    clients: list[H3Client] = []

    def connect(port: int) -> H3Client:
        client = H3Client(port, cafile)
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.close()


# --------------------------------------------------------------------------- HTTP/2 header timeout


@pytest.mark.both_backends
@pytest.mark.both_http2_engines
def test_h2_stalled_continuation_gets_goaway_and_close(
    server_factory: Any, h2conn: Any, tmp_path: Path
) -> None:
    server = server_factory.start(app=APP, config=CONFIG)
    conn = h2conn(server.port)
    accepted = conn.request("GET", "/?sleep=2")  # stream 1: answered whatever comes next
    for _ in range(20):  # the server's SETTINGS, acknowledged: nothing else to send after
        if conn.conn.remote_settings.max_concurrent_streams == 100:
            break
        _h2_wait(conn, 0.5)
    # Stream 3: a HEADERS frame without END_HEADERS, and no CONTINUATION ever; from now
    # on the client sends nothing at all (any frame but a CONTINUATION is an error).
    conn.flush = lambda: None  # type: ignore[method-assign]
    block = conn.conn.encoder.encode(
        [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/")]
    )
    frame = HeadersFrame(3, data=block, flags=["END_STREAM"])
    conn.sock.sendall(frame.serialize())
    frames = _h2_frames_until_closed(conn)
    goaways = [(f.error_code, f.last_stream_id) for f in frames if isinstance(f, GoAwayFrame)]
    assert goaways == [(0, accepted)], frames  # NO_ERROR: stream 3 may be retried
    heads = [f for f in frames if isinstance(f, HeadersFrame) and f.stream_id == accepted]
    body = b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == accepted)
    assert len(heads) == 1 and body == b"read 0", frames
    fields = conn.conn.decoder.decode(heads[0].data, raw=True)
    assert (b":status", b"200") in fields, fields
    assert any("END_STREAM" in f.flags for f in frames if f.stream_id == accepted), frames


@pytest.mark.both_http2_engines
def test_h2_adapter_shows_an_open_header_block(http2_engine: str) -> None:
    """Sans-IO: the engine holds HEADERS + CONTINUATIONs until END_HEADERS; the adapter
    names the pending block (the same frame while it is the same block), and no longer
    once it ends."""
    import h2.config
    import h2.connection

    from edgecorn.protocol.engines import h2_engine
    from edgecorn.protocol.events import Request
    from edgecorn.protocol.h2 import H2Adapter

    server = H2Adapter(
        max_concurrent_streams=100,
        max_header_list_size=65536,
        max_inbound_frame_size=16384,
        max_requests=100,
        engine=h2_engine(http2_engine),
    )
    server.initiate()
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    assert server.receive_data(client.data_to_send()) == []
    client.receive_data(server.data_to_send())
    block = client.encoder.encode(
        [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"x"), (b":path", b"/")]
    )
    assert server.header_block is None
    head = HeadersFrame(1, data=block[:3], flags=["END_STREAM"]).serialize()
    assert server.receive_data(client.data_to_send() + head) == []
    first = server.header_block
    assert first is not None
    assert server.receive_data(ContinuationFrame(1, data=block[3:5]).serialize()) == []
    assert server.header_block is first
    end = ContinuationFrame(1, data=block[5:], flags=["END_HEADERS"]).serialize()
    events = server.receive_data(end)
    assert [type(e) for e in events][:1] == [Request] and server.header_block is None


def test_h2_trickled_continuations_get_goaway(server_factory: Any, h2conn: Any) -> None:
    """A header block kept alive by an empty CONTINUATION every 0.25 s is still one
    block: header_timeout bounds the whole of it, not the pauses."""
    server = server_factory.start(app=APP, config=CONFIG)
    conn = h2conn(server.port)
    for _ in range(20):
        if conn.conn.remote_settings.max_concurrent_streams == 100:
            break
        _h2_wait(conn, 0.5)
    conn.flush = lambda: None  # type: ignore[method-assign]
    block = conn.conn.encoder.encode([(b":method", b"GET"), (b":path", b"/")])
    conn.sock.sendall(HeadersFrame(1, data=block, flags=["END_STREAM"]).serialize())
    continuation = ContinuationFrame(1, data=b"").serialize()
    frames = _h2_frames_until_closed(conn, drip=lambda: conn.sock.sendall(continuation))
    goaways = [(f.error_code, f.last_stream_id) for f in frames if isinstance(f, GoAwayFrame)]
    assert goaways == [(0, 0)], frames
    assert not [f for f in frames if f.stream_id == 1], frames


# --------------------------------------------------------------------------- HTTP/3 header timeout


@pytest.mark.both_backends
def test_h3_incomplete_and_empty_request_streams_are_reset(
    server_factory: Any, h3client: Any
) -> None:
    server = server_factory.start(app=APP, config=CONFIG)
    wait_quic(server)
    client = h3client(server.port)
    assert client.get_ok() == b"200"  # stream 0
    client.quic.send_stream_data(4, b"")  # stream 4: opened, never a byte
    # Stream 8: a HEADERS frame (type 1) announcing 100 bytes, 10 of them sent.
    client.quic.send_stream_data(8, b"\x01\x40\x64" + b"\x00" * 10)
    client._flush()
    assert client.pump_until(lambda: {4, 8} <= client.resets.keys(), 15), client.resets
    assert client.resets[4] == client.resets[8] == H3_REQUEST_INCOMPLETE, client.resets
    assert client.get_ok() == b"200"  # the connection goes on


def test_h3_request_blocked_on_qpack_forever_is_reset(server_factory: Any, h3client: Any) -> None:
    """A header section that refers to a dynamic-table entry whose insert never comes
    (the client's encoder stream withheld) never completes: reset like a partial one."""
    server = server_factory.start(app=APP, config=CONFIG)
    wait_quic(server)
    client = h3client(server.port)
    field = [(b"x-stall", b"v" * 40)]
    encoder_stream = client.h3._local_encoder_stream_id
    send = client.quic.send_stream_data
    withheld: list[bytes] = []
    holding = [False]  # only what the encoder writes for our requests' fields

    def withhold(stream_id: int, data: bytes, end_stream: bool = False) -> None:
        if holding[0] and stream_id == encoder_stream and data:
            withheld.append(data)
            return
        send(stream_id, data, end_stream)

    client.quic.send_stream_data = withhold  # type: ignore[method-assign]
    assert client.get_ok() == b"200"  # the server's SETTINGS (QPACK table) are in
    blocked = None
    for _ in range(5):  # the encoder indexes the field once it has seen it used
        holding[0] = True
        sid = client.start("/", "GET", field)
        holding[0] = False
        client.h3.send_data(sid, b"", end_stream=True)  # a whole request: no body timeout
        client._flush()
        if withheld:
            blocked = sid
            break
        assert client.pump_until(lambda s=sid: client.responses[s].ended, 10)
    assert blocked is not None, "the client's encoder never used its dynamic table"
    assert client.pump_until(lambda: blocked in client.resets, 15), client.resets
    assert client.resets[blocked] == H3_REQUEST_INCOMPLETE, client.resets


# --------------------------------------------------------------------------- HTTP/3 body timeout


@pytest.mark.both_backends
def test_h3_stalled_body_resets_the_stream_only(
    server_factory: Any, h3client: Any, tmp_path: Path
) -> None:
    server = server_factory.start(app=APP, config=CONFIG)
    wait_quic(server)
    marker = tmp_path / "events.txt"
    client = h3client(server.port)
    sid = client.start(f"/?file={marker}", "POST", [(b"content-length", b"100000")])
    client.send(sid, b"ab")
    assert client.pump_until(lambda: sid in client.resets, 15), client.resets
    assert client.resets[sid] == H3_REQUEST_INCOMPLETE
    assert wait_until(lambda: marker.exists() and "disconnect" in marker.read_text(), 5)
    assert client.get_ok() == b"200"


# --------------------------------------------------------------------------- body_min_rate


def test_h1_trickled_body_gets_408(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory.start(app=APP, config=RATE_CONFIG)
    marker = tmp_path / "events.txt"
    sock = socket.create_connection(("127.0.0.1", server.insecure_port), timeout=10)
    with sock:
        sock.sendall(
            b"POST /?file=%s HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1000\r\n\r\n"
            % str(marker).encode()
        )
        answer = b""
        for _ in range(60):  # a byte every 0.25 s: never idle for body_timeout
            try:
                sock.sendall(b"x")
            except (BrokenPipeError, ConnectionResetError):
                break
            sock.settimeout(0.25)
            try:
                part = sock.recv(65536)
            except TimeoutError:
                continue
            answer += part
            break
        sock.settimeout(10)
        while part := _recv(sock):
            answer += part
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert wait_until(lambda: marker.exists() and "disconnect" in marker.read_text(), 5)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except (ConnectionResetError, TimeoutError):
        return b""


def test_h1_body_at_a_good_rate_is_not_cut(server_factory: Any) -> None:
    server = server_factory.start(app=APP, config=RATE_CONFIG)
    sock = socket.create_connection(("127.0.0.1", server.insecure_port), timeout=10)
    with sock:
        sock.sendall(b"POST / HTTP/1.1\r\nhost: localhost\r\ncontent-length: 3600\r\n\r\n")
        for _ in range(12):  # 3 s in all at 1200 bytes/s, twelve times the minimum
            time.sleep(0.25)
            sock.sendall(b"x" * 300)
        sock.sendall(b"GET / HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        answer = b""
        while part := _recv(sock):
            answer += part
    assert answer.startswith(b"HTTP/1.1 200 ") and b"read 3600" in answer, answer


def test_h2_trickled_body_resets_the_stream(
    server_factory: Any, h2conn: Any, tmp_path: Path
) -> None:
    server = server_factory.start(app=APP, config=RATE_CONFIG)
    marker = tmp_path / "events.txt"
    conn = h2conn(server.port)
    sid = conn.request(
        "POST", f"/?file={marker}", body=b"a", end=False, headers=[("content-length", "1000")]
    )
    resp = conn.responses[sid]
    for _ in range(60):
        if resp.ended:
            break
        conn.conn.send_data(sid, b"x")
        conn.flush()
        _h2_wait(conn, 0.25)
    assert resp.reset is not None and resp.status is None, resp
    assert wait_until(lambda: marker.exists() and "disconnect" in marker.read_text(), 5)
    after = conn.get("/")
    assert (after.status, after.body) == (200, b"read 0")


def test_h3_trickled_body_resets_the_stream(
    server_factory: Any, h3client: Any, tmp_path: Path
) -> None:
    server = server_factory.start(app=APP, config=RATE_CONFIG)
    wait_quic(server)
    marker = tmp_path / "events.txt"
    client = h3client(server.port)
    sid = client.start(f"/?file={marker}", "POST", [(b"content-length", b"1000")])
    for _ in range(60):
        if sid in client.resets:
            break
        client.send(sid, b"x")
        client.pump(0.25)
    assert client.resets.get(sid) == H3_REQUEST_INCOMPLETE, client.resets
    assert wait_until(lambda: marker.exists() and "disconnect" in marker.read_text(), 5)
    assert client.get_ok() == b"200"
