"""WebSocket client helpers for the end-to-end tests.

- `build_frame` / `FrameReader`: RFC 6455 frames by hand, so a test can send exactly the
  (broken) bytes it wants and read what the server sends back.
- `RawWS`: a blocking raw-socket client over HTTP/1.1 (Upgrade handshake, then frames).
- `H2WS`: a blocking HTTP/2 client (the `h2` package, TLS + ALPN h2) that opens WebSockets
  with extended CONNECT (RFC 8441) and plain requests on the same connection.
- `h3_connect`: an aioquic HTTP/3 client for extended CONNECT over QUIC (RFC 9220).

Every read is bounded by a socket timeout or a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import struct
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Message, Ping, TextMessage

OP_CONT, OP_TEXT, OP_BINARY = 0x0, 0x1, 0x2
OP_CLOSE, OP_PING, OP_PONG = 0x8, 0x9, 0xA


# --------------------------------------------------------------------------- frames


def build_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
) -> bytes:
    """One frame; `rsv` is the 3 RSV bits (0b100 = RSV1); clients mask unless told not to."""
    head = bytearray([(0x80 if fin else 0) | (rsv & 0x7) << 4 | (opcode & 0xF)])
    length = len(payload)
    mask_bit = 0x80 if mask else 0
    if length < 126:
        head.append(mask_bit | length)
    elif length < 1 << 16:
        head.append(mask_bit | 126)
        head += struct.pack("!H", length)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", length)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes(head) + key + masked


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


@dataclass
class Frame:
    opcode: int
    payload: bytes
    fin: bool = True

    @property
    def close_code(self) -> int | None:
        if self.opcode != OP_CLOSE:
            return None
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else 1005


class FrameReader:
    """Parses the (unmasked) frames a server sends."""

    def __init__(self) -> None:
        self.buf = b""

    def feed(self, data: bytes) -> list[Frame]:
        self.buf += data
        frames = []
        while True:
            frame = self._one()
            if frame is None:
                return frames
            frames.append(frame)

    def _one(self) -> Frame | None:
        buf = self.buf
        if len(buf) < 2:
            return None
        fin, opcode = bool(buf[0] & 0x80), buf[0] & 0xF
        masked, length, pos = bool(buf[1] & 0x80), buf[1] & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                return None
            length, pos = struct.unpack("!H", buf[2:4])[0], 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length, pos = struct.unpack("!Q", buf[2:10])[0], 10
        key = b""
        if masked:  # a server must not mask; keep parsing so the test can say so
            key, pos = buf[pos : pos + 4], pos + 4
        if len(buf) < pos + length:
            return None
        payload = buf[pos : pos + length]
        if masked:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.buf = buf[pos + length :]
        return Frame(opcode, payload, fin)


# --------------------------------------------------------------------------- HTTP/1.1


class RawWS:
    """A raw-socket WebSocket client over HTTP/1.1 (optionally TLS)."""

    def __init__(
        self,
        port: int,
        path: str = "/ws",
        *,
        tls: bool = False,
        cafile: str | None = None,
        timeout: float = 5.0,
        extra_headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            ctx = ssl.create_default_context(cafile=cafile)
            ctx.set_alpn_protocols(["http/1.1"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.reader = FrameReader()
        self.frames: list[Frame] = []
        self.eof = False
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *[f"{k}: {v}" for k, v in extra_headers],
        ]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(65536)
            if not data:
                raise EOFError(f"closed during the handshake: {head!r}")
            head += data
        head, rest = head.split(b"\r\n\r\n", 1)
        self.head = head.decode("latin-1")
        self.status = int(self.head.split(" ", 2)[1])
        self.frames.extend(self.reader.feed(rest))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, opcode: int, payload: bytes = b"", **kwargs: Any) -> None:
        self.sock.sendall(build_frame(opcode, payload, **kwargs))

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.eof = True
            return False
        self.frames.extend(self.reader.feed(data))
        return True

    def recv_frame(self) -> Frame | None:
        """The next frame, or None at EOF (a socket timeout raises TimeoutError)."""
        while not self.frames:
            if not self._fill():
                return None
        return self.frames.pop(0)

    def recv_data_frame(self) -> Frame | None:
        """The next non-ping/pong frame."""
        while True:
            frame = self.recv_frame()
            if frame is None or frame.opcode not in (OP_PING, OP_PONG):
                return frame

    def close_code(self) -> int | None:
        """Read until the server's close frame; its code, or None if the socket closed first."""
        while True:
            frame = self.recv_frame()
            if frame is None:
                return None
            if frame.opcode == OP_CLOSE:
                return frame.close_code

    def wait_eof(self, timeout: float) -> bool:
        """True when the server closes the socket within `timeout` (frames are kept)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                self._fill()
            except TimeoutError:
                return False
        return True

    def echo(self, text: str) -> str | None:
        self.send_frame(OP_TEXT, text.encode())
        frame = self.recv_data_frame()
        return frame.payload.decode() if frame and frame.opcode == OP_TEXT else None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------- HTTP/2


@dataclass
class H2Stream:
    stream_id: int
    ws: WSConnection | None = None
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    raw: bytes = b""  # WebSocket bytes as received (before wsproto)
    frames: FrameReader = field(default_factory=FrameReader)
    server_frames: list[Frame] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    ended: bool = False
    reset: int | None = None

    def close_code(self) -> int | None:
        for frame in self.server_frames:
            if frame.opcode == OP_CLOSE:
                return frame.close_code
        return None

    def messages(self) -> list[str | bytes]:
        return assemble(self.events)


def assemble(events: list[Event]) -> list[str | bytes]:
    """Whole messages from wsproto's events (it yields a message in pieces as bytes arrive)."""
    done: list[str | bytes] = []
    parts: list[Any] = []
    for event in events:
        if isinstance(event, Message):
            parts.append(event.data)
            if event.message_finished:
                done.append("".join(parts) if isinstance(event, TextMessage) else b"".join(parts))
                parts = []
    return done


class H2WS:
    """A blocking HTTP/2 client for WebSockets over extended CONNECT (RFC 8441)."""

    def __init__(self, port: int, cafile: str, timeout: float = 5.0) -> None:
        import h2.config
        import h2.connection

        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.set_alpn_protocols(["h2"])
        self.sock = ctx.wrap_socket(sock, server_hostname="localhost")
        assert self.sock.selected_alpn_protocol() == "h2", self.sock.selected_alpn_protocol()
        self.port = port
        self.timeout = timeout
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.conn.initiate_connection()
        self.flush()
        self.streams: dict[int, H2Stream] = {}
        self.server_settings: dict[int, int] | None = None
        self.terminated: Any = None
        self.until(lambda: self.server_settings is not None)

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def pump(self) -> None:
        import h2.events as ev

        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            raise EOFError("server closed the HTTP/2 connection")
        for event in self.conn.receive_data(data):
            stream = self.streams.get(getattr(event, "stream_id", 0) or 0)
            if isinstance(event, ev.RemoteSettingsChanged):
                if self.server_settings is None:
                    self.server_settings = {}
                for code, change in event.changed_settings.items():
                    self.server_settings[int(code)] = change.new_value
            elif isinstance(event, ev.ResponseReceived) and stream:
                stream.headers = list(event.headers)
                stream.status = int(dict(event.headers)[b":status"])
            elif isinstance(event, ev.DataReceived):
                if event.flow_controlled_length:
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                if stream:
                    self._data(stream, event.data)
            elif isinstance(event, ev.StreamEnded) and stream:
                stream.ended = True
            elif isinstance(event, ev.StreamReset) and stream:
                stream.reset = event.error_code
                stream.ended = True
            elif isinstance(event, ev.ConnectionTerminated):
                self.terminated = event
        self.flush()

    def _data(self, stream: H2Stream, data: bytes) -> None:
        if stream.ws is None or stream.status != 200:
            stream.body += data
            return
        stream.raw += data
        stream.server_frames.extend(stream.frames.feed(data))
        if not data or stream.ws.state is ConnectionState.CLOSED:
            return  # the END_STREAM DATA frame after the closing handshake
        stream.ws.receive_data(data)
        for event in stream.ws.events():
            stream.events.append(event)
            if isinstance(event, Ping):
                self.conn.send_data(stream.stream_id, stream.ws.send(event.response()))

    def until(self, predicate: Callable[[], bool], timeout: float | None = None) -> None:
        deadline = time.monotonic() + (timeout or self.timeout)
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            self.pump()

    def _base_headers(self, method: str, path: str) -> list[tuple[str, str]]:
        return [
            (":method", method),
            (":scheme", "https"),
            (":authority", f"localhost:{self.port}"),
            (":path", path),
        ]

    def connect(
        self,
        path: str = "/ws",
        protocol: str | None = "websocket",
        wait: bool = True,
        extra: tuple[tuple[str, str], ...] = (),
    ) -> H2Stream:
        """Extended CONNECT (or a plain CONNECT with `protocol=None`)."""
        stream_id = self.conn.get_next_available_stream_id()
        if protocol is None:  # a classic CONNECT has only :method and :authority
            headers = [(":method", "CONNECT"), (":authority", f"localhost:{self.port}")]
        else:
            headers = self._base_headers("CONNECT", path)
            headers.insert(1, (":protocol", protocol))
            headers.append(("sec-websocket-version", "13"))
        headers.extend(extra)
        stream = H2Stream(stream_id, ws=WSConnection(ConnectionType.CLIENT))
        self.streams[stream_id] = stream
        self.conn.send_headers(stream_id, headers, end_stream=False)
        self.flush()
        if wait:
            self.until(lambda: stream.status is not None or stream.ended)
        return stream

    def get(self, path: str) -> H2Stream:
        stream_id = self.conn.get_next_available_stream_id()
        stream = H2Stream(stream_id)
        self.streams[stream_id] = stream
        self.conn.send_headers(stream_id, self._base_headers("GET", path), end_stream=True)
        self.flush()
        self.until(lambda: stream.ended)
        return stream

    def send_ws(self, stream: H2Stream, event: Event) -> None:
        assert stream.ws is not None
        self.send_raw(stream, stream.ws.send(event))

    def send_raw(self, stream: H2Stream, data: bytes) -> None:
        """Send bytes on the stream, waiting for flow-control credit as needed."""
        view = memoryview(data)
        while view:
            room = min(
                self.conn.local_flow_control_window(stream.stream_id),
                self.conn.max_outbound_frame_size,
            )
            if room <= 0:
                self.pump()
                continue
            self.conn.send_data(stream.stream_id, bytes(view[:room]))
            view = view[room:]
            self.flush()

    def echo(self, stream: H2Stream, message: str | bytes) -> str | bytes:
        count = len(stream.messages())
        event = (
            TextMessage(data=message) if isinstance(message, str) else BytesMessage(data=message)
        )
        self.send_ws(stream, event)
        self.until(lambda: len(stream.messages()) > count or stream.ended)
        assert len(stream.messages()) > count, f"no echo on stream {stream.stream_id}: {stream}"
        return stream.messages()[count]

    def wait_close(self, stream: H2Stream, timeout: float | None = None) -> int | None:
        """Wait for the server's close frame or the end of the stream; the close code."""
        self.until(lambda: stream.close_code() is not None or stream.ended, timeout)
        return stream.close_code()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------- HTTP/3


class H3Stream:
    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.events: list[Event] = []
        self.body = b""
        self.ended = False
        self.changed = asyncio.Event()

    def messages(self) -> list[str | bytes]:
        return assemble(self.events)

    def close_code(self) -> int | None:
        for event in self.events:
            if isinstance(event, CloseConnection):
                return int(event.code)
        return None


def _h3_protocol_class() -> Any:
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.h3.connection import H3Connection
    from aioquic.h3.events import DataReceived, HeadersReceived
    from aioquic.quic.events import QuicEvent, StreamReset

    class H3WSClient(QuicConnectionProtocol):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.h3 = H3Connection(self._quic)
            self.streams: dict[int, H3Stream] = {}

        def quic_event_received(self, event: QuicEvent) -> None:
            if isinstance(event, StreamReset) and event.stream_id in self.streams:
                stream = self.streams[event.stream_id]
                stream.ended = True
                stream.changed.set()
            for h3_event in self.h3.handle_event(event):
                stream_ = self.streams.get(getattr(h3_event, "stream_id", -1))
                if stream_ is None:
                    continue
                if isinstance(h3_event, HeadersReceived):
                    if stream_.status is None:
                        stream_.headers = list(h3_event.headers)
                        stream_.status = int(dict(h3_event.headers)[b":status"])
                elif isinstance(h3_event, DataReceived):
                    if stream_.status == 200:
                        self._ws_data(stream_, h3_event.data)
                    else:
                        stream_.body += h3_event.data
                if getattr(h3_event, "stream_ended", False):
                    stream_.ended = True
                stream_.changed.set()

        def _ws_data(self, stream: H3Stream, data: bytes) -> None:
            if not data or stream.ws.state is ConnectionState.CLOSED:
                return  # the empty end of the stream after the closing handshake
            stream.ws.receive_data(data)
            for ws_event in stream.ws.events():
                stream.events.append(ws_event)
                if isinstance(ws_event, Ping):
                    self.send_ws(stream, ws_event.response())

        @property
        def server_settings(self) -> dict[int, int] | None:
            settings = self.h3.received_settings
            return None if settings is None else {int(k): v for k, v in settings.items()}

        def connect_ws(self, authority: str, path: str = "/ws") -> H3Stream:
            stream_id = self._quic.get_next_available_stream_id()
            stream = H3Stream(stream_id)
            self.streams[stream_id] = stream
            headers = [
                (b":method", b"CONNECT"),
                (b":protocol", b"websocket"),
                (b":scheme", b"https"),
                (b":authority", authority.encode()),
                (b":path", path.encode()),
                (b"sec-websocket-version", b"13"),
            ]
            self.h3.send_headers(stream_id, headers, end_stream=False)
            self.transmit()
            return stream

        def send_ws(self, stream: H3Stream, event: Event) -> None:
            self.h3.send_data(stream.stream_id, stream.ws.send(event), end_stream=False)
            self.transmit()

        async def wait(
            self, stream: H3Stream, predicate: Callable[[], bool], timeout: float = 5.0
        ) -> None:
            async def loop() -> None:
                while not predicate():
                    stream.changed.clear()
                    await stream.changed.wait()

            await asyncio.wait_for(loop(), timeout)

        async def echo(self, stream: H3Stream, message: str | bytes) -> str | bytes:
            count = len(stream.messages())
            event = (
                TextMessage(data=message)
                if isinstance(message, str)
                else BytesMessage(data=message)
            )
            self.send_ws(stream, event)
            await self.wait(stream, lambda: len(stream.messages()) > count or stream.ended)
            assert len(stream.messages()) > count, f"no echo on h3 stream {stream.stream_id}"
            return stream.messages()[count]

    return H3WSClient


@asynccontextmanager
async def h3_connect(port: int, cafile: str) -> AsyncIterator[Any]:
    """An aioquic HTTP/3 client connection to 127.0.0.1:port (UDP), verifying `cafile`."""
    from aioquic.asyncio.client import connect
    from aioquic.h3.connection import H3_ALPN
    from aioquic.quic.configuration import QuicConfiguration

    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="localhost")
    config.load_verify_locations(cafile)
    async with connect(
        "127.0.0.1",
        port,
        configuration=config,
        create_protocol=_h3_protocol_class(),
        wait_connected=True,
    ) as client:
        yield client
