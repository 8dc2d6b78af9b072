"""One QUIC connection, independent of the event loop: datagrams and timers in,
stream events to the protocol-blind streams, datagrams out through its endpoint.

Each connection keeps one timer, moved only when aioquic's timer changes; all a
connection produced in a loop turn leaves in one batch (its `QUICSender` defers
`send_datagrams`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from aioquic.h3.connection import ErrorCode

from .. import metrics
from ..asgi.extensions import quic_tls_extension
from ..connection import Connection
from ..sender import Sender
from . import engine
from .engine import EdgeQuicConnection
from .h3 import H3Adapter

if TYPE_CHECKING:
    import socket

    from ..asgi.http import HTTPStream
    from ..manager import ConnectionManager
    from ..runtime import Runtime

log = logging.getLogger("edgecorn.error")

TIMER_GRANULARITY = 0.001


class Endpoint(Protocol):
    """What a connection uses of its endpoint (endpoint.py imports this module)."""

    manager: ConnectionManager
    sock: socket.socket
    routes: dict[bytes, QUICConnection]
    handshaking: int
    handshake_bytes: int

    def now(self) -> float: ...

    def send(self, datagrams: list[tuple[bytes, Any]]) -> None: ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Any: ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any: ...

    runtime: Runtime  # the connection binds its primitives (Connection.__init__)


def _nothing() -> None:
    pass


class QUICSender(Sender):
    """Output is datagrams, sent once per loop turn for all streams; closing is QUIC's
    CONNECTION_CLOSE (the connection stays routable until aioquic reports it terminated,
    then `QUICConnection._terminate`)."""

    def __init__(self, endpoint: Endpoint, conn: QUICConnection) -> None:
        super().__init__(endpoint.runtime)
        self.send = conn.send_datagrams
        self.batch = True

    def flush(self) -> None:
        if not self.flush_pending:
            self.flush_pending = True
            self.loop.defer(self.send)  # which clears flush_pending (no call between)

    def flush_stream(self) -> None:
        # `sendable` already bounds what aioquic holds per stream: batch like the rest,
        # since every datagrams_to_send() call costs, even for a few packets.
        self.flush()

    def flush_now(self) -> None:
        self.send()

    def release(self) -> None:
        super().release()
        self.send = _nothing

    def close(self) -> None:
        h3 = self.proto
        assert isinstance(h3, H3Adapter)
        if not h3.terminated:
            h3.close()
            self.flush()

    def end(self) -> None:
        if not self.closed:
            self.closed = True
            self.ending = True
            self.close()


class QUICConnection(Connection):
    def __init__(self, endpoint: Endpoint, quic: EdgeQuicConnection, addr: Any) -> None:
        self.endpoint = endpoint
        self.quic = quic
        super().__init__(endpoint.manager, True, QUICSender(endpoint, self), endpoint.runtime)
        config = self.config
        self.h3 = H3Adapter(
            quic,
            max_requests=config.keep_alive_max_requests,
            max_header_list_size=config.h3_max_header_list_size,
            early_data_unsafe=config.quic_early_data_unsafe,
        )
        self.use(self.h3)
        self.advertise = False  # no Alt-Svc on responses that came over HTTP/3
        self.client = (addr[0], addr[1])
        sockname = endpoint.sock.getsockname()
        self.server = (sockname[0], sockname[1])
        self.timer: Any = None
        self.timer_at: float | None = None
        self.cids: set[bytes] = set()
        self.handshaking = True
        self.handshake_bytes = 0  # its share of the endpoint's half-open estimate
        self.tls_pending = True  # the ASGI `tls` extension waits for the cipher suite
        self.context = self.make_context()  # made again once, with `tls` (`_add_tls`)
        self.manager.add(self)

    # --- input -------------------------------------------------------------------

    def datagram(self, data: bytes, addr: Any) -> None:
        self.reads += 1
        if self.handshaking and metrics.recorder is not None:  # did the client try 0-RTT?
            metrics.recorder.quic_datagram(self, data)
        self._after(self.h3.receive_datagram(data, addr, self.endpoint.now()))

    def _on_timer(self) -> None:
        self.timer = None
        self.timer_at = None
        try:
            self._after(self.h3.handle_timer(self.endpoint.now()))
        except Exception:  # a broken connection ends here, not in the event loop
            log.exception("error in a QUIC timer for %s", self.client)
            self._terminate()

    def _route_cids(self) -> None:
        h3 = self.h3
        routes = self.endpoint.routes
        for issued, cid in h3.cid_changes:
            if issued:
                self.cids.add(cid)
                routes[cid] = self
            else:
                self.cids.discard(cid)
                if routes.get(cid) is self:
                    del routes[cid]
        h3.cid_changes.clear()

    def _after(self, events: list[Any]) -> None:
        h3 = self.h3
        if h3.cid_changes:
            self._route_cids()
        if self.handshaking and h3.handshake_done:
            self.handshaking = False
            self.endpoint.handshaking -= 1
            self.endpoint.handshake_bytes -= self.handshake_bytes
            if metrics.recorder is not None:
                metrics.recorder.quic_handshake(self, completed=True)
        if events:
            if self.tls_pending:
                self._add_tls()
            self.handle(events)
        sender = self.sender
        if sender.window_waiters:  # acks free send buffer without any event
            sender.window_opened()
        self.flush()

    def _add_tls(self) -> None:
        """Before the first request (0-RTT ones too): the cipher suite is known once the
        ClientHello has been answered."""
        suite, certificate = engine.tls_facts(self.quic)
        if suite is not None:
            self.tls_pending = False
            tls = quic_tls_extension(suite, certificate)
            self.extensions = {**self.extensions, "tls": tls}
            self.context = self.make_context()

    # --- output ------------------------------------------------------------------

    def send_datagrams(self) -> None:
        self.sender.flush_pending = False
        h3 = self.h3
        if (
            h3.last_stream_id is not None
            and not h3.open
            and not h3.terminated
            and h3.all_delivered()
        ):
            h3.close()  # GOAWAY sent and every accepted response acknowledged
        endpoint = self.endpoint
        datagrams = h3.datagrams(endpoint.now())
        if h3.cid_changes:
            self._route_cids()
        if datagrams:
            endpoint.send(datagrams)
        if h3.terminated or engine.terminated(self.quic):
            self._terminate()
            return
        timer_at = self.quic.get_timer()
        if timer_at != self.timer_at:
            if self.timer is not None:
                self.timer.cancel()
            self.timer_at = timer_at
            if timer_at is None:
                self.timer = None
            elif timer_at - endpoint.now() < TIMER_GRANULARITY:
                # Event loops sleep in whole milliseconds: a pacing gap shorter than that
                # would cost a full millisecond per burst. The next loop turn is soon enough.
                self.timer = endpoint.call_later(0, self._on_timer)
            else:
                self.timer = endpoint.call_at(timer_at, self._on_timer)

    def _terminate(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        routes = self.endpoint.routes
        for cid in self.cids:
            if routes.get(cid) is self:
                del routes[cid]
        self.cids.clear()
        if self.handshaking:
            self.handshaking = False
            self.endpoint.handshaking -= 1
            self.endpoint.handshake_bytes -= self.handshake_bytes
            if metrics.recorder is not None:
                metrics.recorder.quic_handshake(self, completed=False)
        if not self.closed:
            self.closed = True
            self.on_lost()

    def tick(self, keep_alive_ticks: int, read_timeout_ticks: int | None) -> None:
        """Once a second: `header_timeout` for request streams whose HEADERS never
        come whole, and `body_timeout`/`body_min_rate` for request bodies. Idle
        connections are QUIC's own idle timeout's (quic_idle_timeout)."""
        if self.closed or self.h3.terminated:
            return
        expired = self.h3.time_out_heads(self.header_ticks)
        if self.streams:
            self._check_bodies()
        if expired:
            log.debug("HTTP/3 request heads from %s timed out: %s", self.client, expired)
            self.flush()

    def _body_timed_out(self, stream: HTTPStream, why: str = "request body timed out") -> None:
        """The stream is reset and the client asked to stop (H3_REQUEST_INCOMPLETE);
        the app sees http.disconnect, as on HTTP/2."""
        log.debug("HTTP/3 %s from %s on stream %d", why, self.client, stream.stream_id)
        self.h3.reset(stream.stream_id, ErrorCode.H3_REQUEST_INCOMPLETE)
        stream.on_reset()
        self.flush()
