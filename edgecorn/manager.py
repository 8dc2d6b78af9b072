"""ConnectionManager: the one place that knows every connection of a worker.

It picks protocol adapters, caches the per-response headers (Server, Date,
Alt-Svc), runs the once-a-second tick for timeouts, and drains everything on
shutdown. Backend-neutral: the backend calls `tick()` and `shutdown()`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Protocol

from .asgi.host import StreamLimits
from .certificates import tick as tick_certificates
from .heap import HeapTrim
from .protocol.engines import h2_engine
from .protocol.h1 import H1Adapter, H11Adapter, HttptoolsAdapter
from .protocol.h2 import H2Adapter

if TYPE_CHECKING:
    from .asgi.types import ASGIApp
    from .config import Config
    from .protocol.base import Adapter
    from .protocol.events import Headers

log = logging.getLogger("edgecorn.error")

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # what an h2c prior-knowledge client sends first


class Managed(Protocol):
    """What the manager asks of a connection (connection.py imports the manager, so
    the manager names only this)."""

    def tick(self, keep_alive_ticks: int, read_timeout_ticks: int | None) -> None: ...

    def shutdown(self) -> None: ...

    def close(self) -> None: ...


def ticks(seconds: float) -> int:
    """How many once-a-second ticks time `seconds`. A count starts at the first tick after
    what it times, up to a second later, so one tick more than the seconds keeps every
    deadline at or past the configured time: a `keep_alive_timeout` of 1 used to close
    a new connection at the next tick, before its first request could arrive."""
    return max(1, math.ceil(seconds)) + 1


def http1_class(choice: str) -> type[H1Adapter]:
    if choice == "h11":
        return H11Adapter
    if choice == "httptools":
        return HttptoolsAdapter
    try:
        import httptools  # noqa: F401
    except ImportError:
        return H11Adapter
    return HttptoolsAdapter


class ConnectionManager:
    def __init__(
        self, config: Config, app: ASGIApp, state: dict[str, Any], access_log: Any
    ) -> None:
        self.config = config
        self.app = app
        self.state = state
        self.access_log = access_log
        self.limits = StreamLimits.from_config(config)  # shared by every stream's context
        self.connections: set[Managed] = set()
        self.extensions: dict[str, dict[str, Any]] = {
            "http.response.trailers": {},
            "http.response.early_hint": {},
            "http.response.pathsend": {},  # asgi/extensions.py
        }
        self.h1_class = http1_class(config.http1_parser)
        self.h2c = "h2" in config.alpn_protocols
        self.h2_engine = h2_engine(config.http2_engine)
        self.alt_svc: bytes | None = None
        self.extra_headers: Headers = []
        self.extra_headers_plain: Headers = []
        self.draining = False
        self.requests = 0
        self.request_limit: int | None = None
        self.on_request_limit: Callable[[], None] | None = None
        # max_concurrent_requests: streams whose app runs, counted by the connections.
        self.active_requests = 0
        self.max_active_requests = config.max_concurrent_requests
        # max_connections: registered connections plus TCP ones still in their handshake
        # (`pending`); listeners stop accepting at the limit and wait for `when_room`.
        self.pending: set[Managed] = set()
        self.room_waiters: list[Callable[[], None]] = []
        self.ended = 0  # connections discarded so far: what heap_trim waits for
        self.heap_trim = HeapTrim(config.malloc_trim_interval)
        self.refresh_headers()

    # --- adapters ---------------------------------------------------------------

    def new_h1(self, allow_h2c: bool) -> H1Adapter:
        config = self.config
        return self.h1_class(
            config.h11_max_incomplete_size,
            config.keep_alive_max_requests,
            allow_h2c and self.h2c,
        )

    def new_h2(self, upgrade_settings: bytes | None = None) -> H2Adapter:
        config = self.config
        adapter = H2Adapter(
            max_concurrent_streams=config.h2_max_concurrent_streams,
            max_header_list_size=config.h2_max_header_list_size,
            max_inbound_frame_size=config.h2_max_inbound_frame_size,
            max_requests=config.keep_alive_max_requests,
            engine=self.h2_engine,
            stall_ticks=ticks(config.send_timeout),
        )
        adapter.initiate(upgrade_settings)
        return adapter

    def for_alpn(self, alpn: str) -> Adapter:
        """TLS: the protocol the handshake agreed on."""
        return self.new_h2() if alpn == "h2" else self.new_h1(allow_h2c=False)

    def for_preface(self, data: bytes) -> Adapter | None:
        """Cleartext, from the first bytes: the HTTP/2 preface means h2c prior knowledge,
        anything else HTTP/1 (with `Upgrade: h2c`). None: a prefix of the preface, so
        wait for more."""
        if len(data) < len(H2_PREFACE) and H2_PREFACE.startswith(data):
            return None
        proto: Adapter
        if data.startswith(H2_PREFACE):
            proto = self.new_h2()
        else:
            proto = self.new_h1(allow_h2c=True)
        if self.draining:
            proto.goaway()
        return proto

    def advertise_h3(self, ports: list[int]) -> None:
        """Alt-Svc on every h1/h2 response: one entry per QUIC port (or the configured one)."""
        config = self.config
        if not config.alt_svc or not ports:
            return
        if config.alt_svc_port is not None:
            ports = [config.alt_svc_port]
        suffix = f"; ma={config.alt_svc_max_age}"
        if config.alt_svc_persist:
            suffix += "; persist=1"
        value = ", ".join(f'h3=":{port}"{suffix}' for port in dict.fromkeys(ports))
        self.alt_svc = value.encode()
        self.refresh_headers()
        log.info("Advertising HTTP/3: alt-svc: %s", value)

    # --- registry ------------------------------------------------------------------

    def count_request(self) -> None:
        self.requests += 1
        if self.request_limit is not None and self.requests == self.request_limit:
            if self.on_request_limit is not None:
                log.info("Served %d requests (max_requests): restarting this worker", self.requests)
                self.on_request_limit()

    def add(self, conn: Managed) -> None:
        self.pending.discard(conn)
        self.connections.add(conn)
        if self.draining:
            conn.shutdown()

    def discard(self, conn: Managed) -> None:
        self.ended += 1
        self.connections.discard(conn)
        self.pending.discard(conn)
        if self.room_waiters and self.has_room():
            waiters, self.room_waiters = self.room_waiters, []
            for waiter in waiters:
                waiter()

    def has_room(self) -> bool:
        """May a listener accept one more connection (max_connections)?"""
        return len(self.connections) + len(self.pending) < self.config.max_connections

    def when_room(self, callback: Callable[[], None]) -> None:
        """Call `callback` once, when a connection has gone and there is room again."""
        self.room_waiters.append(callback)

    # --- per-second work -------------------------------------------------------------

    def refresh_headers(self) -> None:
        """Rebuilt once a second so the hot path only appends a cached list."""
        headers: Headers = []
        if self.config.include_server_header:
            headers.append((b"server", b"edgecorn"))
        if self.config.include_date_header:
            headers.append((b"date", formatdate(usegmt=True).encode()))
        self.extra_headers_plain = headers
        # Alt-Svc only on https over TCP: HTTP/3 serves https origins, and an h3
        # response need not point at itself.
        if self.alt_svc is not None:
            headers = headers + [(b"alt-svc", self.alt_svc)]
        self.extra_headers = headers

    def tick(self) -> None:
        self.refresh_headers()
        tick_certificates(self.config)  # reloads changed certificate files every few seconds
        self.heap_trim.tick(self.ended)  # heap.py: freed memory back to the system
        config = self.config
        keep_alive = ticks(config.keep_alive_timeout)
        read_timeout = None if config.read_timeout is None else ticks(config.read_timeout)
        for conn in list(self.connections):
            try:
                conn.tick(keep_alive, read_timeout)
                proto = getattr(conn, "proto", None)
                if isinstance(proto, H2Adapter):
                    self._tick_h2(conn, proto)
            except Exception:  # one broken connection must not stop the tick
                log.exception("error in connection tick")
                conn.close()

    @staticmethod
    def _tick_h2(conn: Any, proto: H2Adapter) -> None:
        """The h2 flood budget is refilled only while the peer reads what we write (the
        transport is not backed up); streams stalled on a zero window are reset."""
        reset = proto.tick(peer_reading=not getattr(conn, "write_paused", False))
        if reset and not conn.closed:
            conn.reset_streams(reset)

    def shutdown(self) -> None:
        """Graceful: every connection finishes what it has and takes nothing new."""
        self.draining = True
        for conn in list(self.connections):
            conn.shutdown()

    def close_all(self) -> None:
        for conn in list(self.connections):
            conn.close()
