"""The raw clients behind the `h1` and `h2conn` fixtures: send exactly the bytes a test wants,
parse what comes back. Every read is bounded by a socket timeout."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

# --------------------------------------------------------------------------- HTTP/1 client


@dataclass
class Response:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    raw_head: bytes
    chunked: bool = False
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        values = self.headers_all(name)
        return values[-1] if values else None

    def headers_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name.lower()]

    def json(self) -> Any:
        return json.loads(self.body)


class H1Conn:
    """A raw-socket HTTP/1.1 client: send exactly the bytes you want, parse what comes back."""

    def __init__(
        self, port: int, tls: bool = False, cafile: str | None = None, timeout: float = 10.0
    ) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            ctx = ssl.create_default_context(cafile=cafile)
            ctx.set_alpn_protocols(["http/1.1"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        self.buf = b""
        self.eof = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
        version: str = "HTTP/1.1",
    ) -> None:
        lines = [f"{method} {path} {version}"]
        names = {k.lower() for k, _ in headers}
        if "host" not in names:
            lines.append("Host: localhost")
        if body is not None and "content-length" not in names and "transfer-encoding" not in names:
            lines.append(f"Content-Length: {len(body)}")
        lines += [f"{k}: {v}" for k, v in headers]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))

    def _fill(self) -> bool:
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _read_until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            if not self._fill():
                raise EOFError(f"connection closed; buffered {self.buf[:300]!r}")
        head, self.buf = self.buf.split(sep, 1)
        return head

    def _read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise EOFError(f"connection closed after {len(self.buf)} of {n} bytes")
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_head(self) -> Response:
        raw = self._read_until(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ", 2)
        assert len(parts) >= 2 and parts[0].startswith("HTTP/"), f"bad status line {lines[0]!r}"
        headers = []
        for line in lines[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
        return Response(
            status=int(parts[1]),
            reason=parts[2] if len(parts) > 2 else "",
            version=parts[0],
            headers=headers,
            body=b"",
            raw_head=raw,
        )

    def read_response(
        self, head: bool = False, informational: list[Response] | None = None
    ) -> Response:
        """Read one final response; 1xx responses are appended to `informational`."""
        while True:
            resp = self.read_head()
            if 100 <= resp.status < 200 and resp.status != 101:
                if informational is None:
                    raise AssertionError(f"unexpected informational response {resp.raw_head!r}")
                informational.append(resp)
                continue
            break
        if head or resp.status in (204, 304) or resp.status == 101:
            return resp
        te = (resp.header("transfer-encoding") or "").lower()
        if "chunked" in te:
            resp.chunked = True
            chunks = []
            while True:
                size_line = self._read_until(b"\r\n")
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    break
                chunks.append(self._read_exact(size))
                assert self._read_exact(2) == b"\r\n", "chunk not followed by CRLF"
            while True:
                line = self._read_until(b"\r\n")
                if not line:
                    break
                name, _, value = line.decode("latin-1").partition(":")
                resp.trailers.append((name.strip().lower(), value.strip()))
            resp.body = b"".join(chunks)
        elif resp.header("content-length") is not None:
            resp.body = self._read_exact(int(resp.header("content-length") or 0))
        else:
            resp.body = self.read_until_close()
        return resp

    def read_until_close(self, limit: int = 64 * 1024 * 1024) -> bytes:
        """Everything until EOF (bounded by the socket timeout and `limit`)."""
        while len(self.buf) < limit and self._fill():
            pass
        data, self.buf = self.buf, b""
        return data

    def closed_by_peer(self, timeout: float = 5.0) -> bool:
        """True when the server closes the connection within `timeout` without sending more."""
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False
        if data:
            self.buf += data
            return False
        self.eof = True
        return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------- HTTP/2 client


@dataclass
class H2Response:
    status: int | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    informational: list[list[tuple[bytes, bytes]]] = field(default_factory=list)
    reset: int | None = None
    ended: bool = False

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None


class H2Conn:
    """A blocking HTTP/2 client on the `h2` package, over TLS (ALPN h2) or h2c prior knowledge."""

    def __init__(
        self,
        port: int,
        tls: bool = True,
        cafile: str | None = None,
        settings: dict[int, int] | None = None,
        timeout: float = 10.0,
    ) -> None:
        import h2.config
        import h2.connection

        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls:
            ctx = ssl.create_default_context(cafile=cafile)
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
        self.sock = sock
        self.tls = tls
        self.port = port
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.responses: dict[int, H2Response] = {}
        self.pushes: list[Any] = []  # PushedStreamReceived events; responses[promised id]
        self.closed = False
        self.goaway: Any = None
        self.auto_ack = True
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Sequence[tuple[str, str]] = (),
        end: bool = True,
    ) -> int:
        stream_id = self.conn.get_next_available_stream_id()
        hdrs = [
            (":method", method),
            (":scheme", "https" if self.tls else "http"),
            (":authority", f"localhost:{self.port}"),
            (":path", path),
            *headers,
        ]
        if body is not None:
            hdrs.append(("content-length", str(len(body))))
        self.responses[stream_id] = H2Response()
        self.conn.send_headers(stream_id, hdrs, end_stream=end and not body)
        self.flush()
        if body:
            self.send_body(stream_id, body, end=end)
        return stream_id

    def send_body(self, stream_id: int, body: bytes, end: bool = True) -> None:
        view = memoryview(body)
        while view:
            window = min(
                self.conn.local_flow_control_window(stream_id), self.conn.max_outbound_frame_size
            )
            if window <= 0:
                self.pump()
                continue
            self.conn.send_data(stream_id, bytes(view[:window]))
            view = view[window:]
            self.flush()
        if end:
            self.conn.end_stream(stream_id)
            self.flush()

    def pump(self) -> list[Any]:
        """Read once from the socket and process the events."""
        import h2.events as ev

        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.closed = True
            raise EOFError("server closed the HTTP/2 connection")
        events = self.conn.receive_data(data)
        for event in events:
            resp = self.responses.get(getattr(event, "stream_id", 0) or 0)
            if isinstance(event, ev.InformationalResponseReceived) and resp:
                resp.informational.append(list(event.headers))
            elif isinstance(event, ev.ResponseReceived) and resp:
                resp.headers = list(event.headers)
                resp.status = int(dict(event.headers)[b":status"])
            elif isinstance(event, ev.TrailersReceived) and resp:
                resp.trailers = list(event.headers)
            elif isinstance(event, ev.DataReceived):
                if resp:
                    resp.body += event.data
                if self.auto_ack and event.flow_controlled_length:
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
            elif isinstance(event, ev.StreamEnded) and resp:
                resp.ended = True
            elif isinstance(event, ev.StreamReset) and resp:
                resp.reset = event.error_code
                resp.ended = True
            elif isinstance(event, ev.ConnectionTerminated):
                self.goaway = event
            elif isinstance(event, ev.PushedStreamReceived):
                self.pushes.append(event)
                self.responses[event.pushed_stream_id] = H2Response()
        self.flush()
        return events

    def response(self, stream_id: int) -> H2Response:
        resp = self.responses[stream_id]
        while not resp.ended:
            self.pump()
        return resp

    def get(self, path: str, **kwargs: Any) -> H2Response:
        return self.response(self.request("GET", path, **kwargs))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------- curl


@dataclass
class CurlResult:
    returncode: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")
