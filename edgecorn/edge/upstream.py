"""HTTP/1.1 to upstreams: kept-alive connections per origin, on any event loop (anyio).

Responses are parsed by httptools (llhttp, already our fast HTTP/1 server parser): it frames
chunked bodies, trailers, 1xx responses and bodiless 204/304 in C. h11 was the first codec and
cost about 0.1 ms of header validation per proxied request for fields our own parsers had
already checked; it stays for the WebSocket Upgrade handshake. A well-kept client library
(httpx/httpcore) was the other choice; it cannot relay 1xx responses (103 Early Hints, 100
Continue), trailers or an HTTP/1.1 Upgrade for WebSockets, which a transparent edge needs.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio
import anyio.abc
import anyio.streams.tls
import h11
import httptools

from .errors import READ_SIZE, UpstreamError

log = logging.getLogger("edgecorn.error")

# Enough idle connections for an h2/h3 client's concurrency (a smaller pool churned: every
# request beyond it opened and closed a connection); idle ones past IDLE_TIMEOUT are swept.
MAX_IDLE_PER_ORIGIN = 512
IDLE_TIMEOUT = 4.0  # below the 5 s keep-alive most servers (Uvicorn, Hypercorn, nginx) use
FAILS_BEFORE_DOWN = 3
DOWN_FOR = 10.0


@dataclass
class Upstream:
    """One upstream origin with its passive health and its idle connections."""

    url: str
    scheme: str = ""
    host: str = ""
    port: int = 0
    base_path: str = ""
    fails: int = 0
    down_until: float = 0.0
    protocol: str = "http/1.1"  # or "h2c" (prior knowledge), "h2" (TLS with ALPN)
    idle: list[Connection] = field(default_factory=list)
    muxes: list[Any] = field(default_factory=list)  # HTTP/2: h2upstream.Multiplex
    _tls: ssl.SSLContext | None = None
    _h2_lock: anyio.Lock | None = None

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")

    @property
    def healthy(self) -> bool:
        return self.down_until <= time.monotonic()

    def tls_context(self) -> ssl.SSLContext | None:
        """One client context per https upstream (loading the CA store costs milliseconds)."""
        if self.scheme != "https":
            return None
        if self._tls is None:
            self._tls = ssl.create_default_context()
            if self.protocol == "h2":
                self._tls.set_alpn_protocols(["h2"])
        return self._tls

    def failed(self, why: str) -> None:
        self.fails += 1
        if self.fails >= FAILS_BEFORE_DOWN and self.healthy:
            self.down_until = time.monotonic() + DOWN_FOR
            log.warning(
                "upstream %s failed %d times in a row (%s): skipping it for %.0f s",
                self.url,
                self.fails,
                why,
                DOWN_FOR,
            )

    def succeeded(self) -> None:
        self.fails = 0
        self.down_until = 0.0

    async def connect(self, timeout: float, max_head: int = 64 * 1024) -> tuple[Connection, bool]:
        """An idle kept-alive HTTP/1.1 connection (reused=True) or a new one."""
        while self.idle:
            conn = self.idle.pop()
            if conn.usable():
                return conn, True
            await conn.aclose()
        return Connection(await self._open(timeout), max_head), False

    async def request(self, timeout: float, max_head: int = 64 * 1024) -> tuple[Any, bool]:
        """Where the next request goes: a `Connection`, or a stream on an HTTP/2 connection
        (reused=True when that connection was already open)."""
        if self.protocol == "http/1.1":
            return await self.connect(timeout, max_head)
        from .h2upstream import Multiplex

        if self._h2_lock is None:
            self._h2_lock = anyio.Lock()
        async with self._h2_lock:  # concurrent first requests share one new connection
            for mux in list(self.muxes):
                if mux.has_room():
                    return mux.open(), True
                if not mux.streams:
                    self.muxes.remove(mux)
                    await mux.aclose()
                elif mux.error is not None or mux.goaway:
                    self.muxes.remove(mux)  # closed by its last stream
            mux = Multiplex(Connection(await self._open(timeout)), self.scheme, self.url)
            self.muxes.append(mux)
            return mux.open(), False

    async def _open(self, timeout: float) -> Any:
        context = self.tls_context()
        stream: Any
        try:
            with anyio.fail_after(timeout):
                if _on_asyncio():
                    from ..asyncio.stream import open_stream  # the fast path on asyncio

                    stream = await open_stream(
                        self.host, self.port, context, self.host if context else None
                    )
                else:
                    stream = await anyio.connect_tcp(self.host, self.port)
                    if context is not None:
                        stream = await anyio.streams.tls.TLSStream.wrap(
                            stream,
                            hostname=self.host,
                            ssl_context=context,
                            standard_compatible=False,
                        )
        except TimeoutError:
            raise UpstreamError(
                504, f"connecting to {self.url} timed out after {timeout:g} s"
            ) from None
        except (OSError, ssl.SSLError, anyio.BrokenResourceError) as exc:
            cause = exc.__cause__ or exc
            inner = getattr(cause, "exceptions", None)  # anyio: one error per address tried
            if inner:
                cause = inner[-1]
            reason = getattr(cause, "strerror", None) or str(cause) or type(cause).__name__
            raise UpstreamError(502, f"cannot connect to {self.url}: {reason}") from None
        if self.protocol == "h2" and _alpn(stream) != "h2":
            await stream.aclose()
            raise UpstreamError(502, f"{self.url} did not agree to HTTP/2 (ALPN)")
        return stream

    async def release(self, conn: Any) -> None:
        """Keep `conn` for the next request if its exchange ended cleanly, else close it."""
        if not isinstance(conn, Connection):
            await conn.aclose()  # an HTTP/2 stream: its connection stays with the others
            return
        idle = self.idle
        now = time.monotonic()
        # Oldest first: connections are taken from the end, so expired ones gather at the
        # front; closing them here keeps a large pool from holding dead sockets.
        while idle and now - idle[0].idle_since > IDLE_TIMEOUT:
            await idle.pop(0).aclose()
        if conn.reusable() and len(idle) < MAX_IDLE_PER_ORIGIN:
            conn.idle_since = now
            idle.append(conn)
        else:
            await conn.aclose()


class Connection:
    """One HTTP/1.1 connection to an upstream over an anyio byte stream.

    Requests are written as bytes (their fields come from our own parsers, already checked);
    responses are parsed by httptools (llhttp) into a short list of events per read:
    ("info", status, headers) for 1xx, ("head", status, headers), ("data", bytes) and
    ("end", trailers). The WebSocket bridge uses h11 on a connection of its own instead
    (`h11` below), for its Upgrade handshake.
    """

    def __init__(self, stream: Any, max_head: int = 64 * 1024) -> None:
        self.stream = stream  # an anyio byte stream, or asyncio/stream.py's twin of one
        self.sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        self.fast = hasattr(stream, "stale")  # asyncio/stream.py: timeouts and EOF built in
        self.max_head = max_head  # a bigger response head is refused (502), as nginx does
        self.idle_since = time.monotonic()
        self.received = False  # any byte of a response arrived
        self.events: list[tuple[Any, ...]] = []
        self.parser: Any = None
        self.fields: list[tuple[bytes, bytes]] = []
        self.head_size = 0
        self.status = 0
        self.head_only = False  # a HEAD request: the response has no body whatever it says
        self.reading_body = False
        self.until_close = False  # no length and not chunked: the body ends at EOF
        self.keep_alive = False
        self.complete = False
        self.sent_all = False  # the whole request went out
        self._h11: h11.Connection | None = None

    @property
    def h11(self) -> h11.Connection:
        if self._h11 is None:
            self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=self.max_head)
        return self._h11

    def usable(self) -> bool:
        """An idle connection the upstream has not closed (nor written to) in the meantime."""
        if time.monotonic() - self.idle_since > IDLE_TIMEOUT:
            return False
        if self.fast:
            return not self.stream.stale  # its protocol has seen any EOF or stray bytes
        sock = self.sock
        if sock is None:
            return True
        # asyncio and trio wrap the socket in objects without recv(): peek through a
        # temporary socket object on the same descriptor (no dup, detached afterwards).
        peek = socket.socket(sock.family, socket.SOCK_STREAM, 0, sock.fileno())
        try:
            peek.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            return False  # EOF (b"") or unexpected bytes: either way not for the next request
        except BlockingIOError:
            return True  # nothing to read: still open
        except OSError:
            return False
        finally:
            peek.detach()

    def reusable(self) -> bool:
        return self.complete and self.sent_all and self.keep_alive

    # --- the request ---------------------------------------------------------------------

    async def send_head(
        self, method: str, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes = b""
    ) -> None:
        """Write the request head (and a first piece of body) in one write."""
        self.parser = httptools.HttpResponseParser(self)
        self.events, self.fields, self.head_size = [], [], 0
        self.status, self.reading_body, self.until_close = 0, False, False
        self.complete, self.sent_all, self.received = False, False, False
        self.head_only = method == "HEAD"
        parts = [method.encode(), b" ", target, b" HTTP/1.1\r\n"]
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
        parts += (b"\r\n", body)
        await self.stream.send(b"".join(parts))

    async def send(self, data: bytes) -> None:
        if data:
            await self.stream.send(data)

    # --- the response ------------------------------------------------------------------------

    async def read(self, timeout: float) -> list[tuple[Any, ...]]:
        """The events of the next read (never none: EOF gives "end" or an error);
        TimeoutError when the upstream sends nothing for `timeout` seconds."""
        try:
            if self.fast:
                data = await self.stream.receive(READ_SIZE, timeout)
            else:
                with anyio.fail_after(timeout):
                    data = await self.stream.receive(READ_SIZE)
        except TimeoutError:
            raise  # an OSError too, but not a closed connection
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError, ssl.SSLError):
            data = b""
        if not data:
            if self.until_close and self.reading_body:
                self.complete, self.keep_alive = True, False
                return [("end", [])]
            raise UpstreamError(
                502,
                "closed the connection in the middle of the response"
                if self.reading_body
                else "closed the connection without a response",
            )
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, UpstreamError):  # raised by one of our callbacks
                raise exc.__context__ from None
            raise UpstreamError(502, f"invalid response: {exc}") from None
        events, self.events = self.events, []
        return events

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if self.head_size > self.max_head and not self.reading_body:
            raise UpstreamError(502, f"response head larger than {self.max_head} bytes")
        self.fields.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        fields, self.fields, self.head_size = self.fields, [], 0
        if status < 200:
            self.events.append(("info", status, fields))
            return
        self.status = status
        self.events.append(("head", status, fields))
        framed = False
        close = self.parser.get_http_version() == "1.0"
        for name, value in fields:
            if name == b"content-length" or name == b"transfer-encoding":
                framed = True
            elif name == b"connection":
                tokens = value.lower()
                close = b"close" in tokens or (close and b"keep-alive" not in tokens)
        self.keep_alive = not close
        if self.head_only:
            self.complete = True  # the parser would wait for a body that never comes
            self.events.append(("end", []))
            return
        self.reading_body = True
        self.until_close = not framed and status not in (204, 304)

    def on_body(self, body: bytes) -> None:
        self.events.append(("data", body))

    def on_message_complete(self) -> None:
        if not self.reading_body:
            return  # a 1xx, or a HEAD response already ended
        self.complete = True
        self.events.append(("end", self.fields))
        self.fields = []

    # --- the WebSocket bridge's h11 side -----------------------------------------------------

    async def send_event(self, event: Any) -> None:
        data = self.h11.send(event)
        if data:
            await self.stream.send(data)

    async def next_event(self, timeout: float) -> Any:
        """The next h11 event; TimeoutError after `timeout` s without one."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            with anyio.fail_after(timeout):
                try:
                    data = await self.stream.receive(READ_SIZE)
                except (anyio.EndOfStream, anyio.BrokenResourceError, OSError, ssl.SSLError):
                    data = b""
            self.received = self.received or bool(data)
            self.h11.receive_data(data)

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self.stream.aclose()
            except (OSError, anyio.BrokenResourceError, ssl.SSLError):
                pass


def _alpn(stream: Any) -> str | None:
    transport = getattr(stream, "transport", None)  # asyncio/stream.py
    if transport is not None:
        ssl_object = transport.get_extra_info("ssl_object")
        return ssl_object.selected_alpn_protocol() if ssl_object is not None else None
    protocol: str | None = stream.extra(anyio.streams.tls.TLSAttribute.alpn_protocol, None)
    return protocol


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:  # trio (no asyncio loop in this thread)
        return False
    return True
