"""HTTP/1.1 to upstreams: kept-alive connections per origin, on any event loop (anyio).

h11 is the codec: it already frames what an edge needs (chunked both ways, trailers, 1xx
responses, HEAD and 304 without bodies, keep-alive rules), and an upstream connection's cost
is dominated by the client side of the edge, not by this parser. A well-kept client library
(httpx/httpcore) was the other choice; it cannot relay 1xx responses (103 Early Hints, 100
Continue), trailers or an HTTP/1.1 Upgrade for WebSockets, which a transparent edge needs.
"""

from __future__ import annotations

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

log = logging.getLogger("edgecorn.error")

READ_SIZE = 64 * 1024
MAX_IDLE_PER_ORIGIN = 64
IDLE_TIMEOUT = 4.0  # below the 5 s keep-alive most servers (Uvicorn, Hypercorn, nginx) use
FAILS_BEFORE_DOWN = 3
DOWN_FOR = 10.0


class UpstreamError(Exception):
    """The upstream could not be reached or broke the exchange; `status` is what to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


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
    idle: list[Connection] = field(default_factory=list)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.base_path = parts.path.rstrip("/")

    @property
    def healthy(self) -> bool:
        return self.down_until <= time.monotonic()

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
        """An idle kept-alive connection (reused=True) or a new one."""
        while self.idle:
            conn = self.idle.pop()
            if conn.usable():
                return conn, True
            await conn.aclose()
        try:
            with anyio.fail_after(timeout):
                stream: anyio.abc.ByteStream = await anyio.connect_tcp(self.host, self.port)
                if self.scheme == "https":
                    context = ssl.create_default_context()
                    stream = await anyio.streams.tls.TLSStream.wrap(
                        stream, hostname=self.host, ssl_context=context, standard_compatible=False
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
        return Connection(stream, max_head), False

    async def release(self, conn: Connection) -> None:
        """Keep `conn` for the next request if its exchange ended cleanly, else close it."""
        if conn.reusable() and len(self.idle) < MAX_IDLE_PER_ORIGIN:
            conn.h11.start_next_cycle()
            conn.idle_since = time.monotonic()
            self.idle.append(conn)
        else:
            await conn.aclose()


class Connection:
    """One HTTP/1.1 connection to an upstream: h11 events over an anyio byte stream."""

    def __init__(self, stream: anyio.abc.ByteStream, max_head: int = 64 * 1024) -> None:
        self.stream = stream
        # A response head larger than this is refused (502), as nginx's proxy_buffer_size.
        self.h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head)
        self.idle_since = time.monotonic()
        self.received = False  # any byte of a response arrived

    def usable(self) -> bool:
        """An idle connection the upstream has not closed (nor written to) in the meantime."""
        if time.monotonic() - self.idle_since > IDLE_TIMEOUT:
            return False
        sock = self.stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
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
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    async def send(self, event: Any) -> None:
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
