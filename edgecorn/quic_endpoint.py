"""QUIC over UDP, independent of the event loop: the endpoint routes datagrams by
connection ID to `QUICConnection`s and sends what they produce.

Datagrams are handled as they are read (no queue, no task per packet); each
connection keeps one timer, moved only when aioquic's timer changes; all a
connection produced in a loop turn leaves in one batch, with UDP GSO where the
kernel has it. A backend (asyncio/udp.py, trio/udp.py) supplies the clock,
timers, tasks and what to do with datagrams the socket cannot take now.
"""

from __future__ import annotations

import logging
import socket
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from typing import Any

from aioquic.quic.configuration import QuicConfiguration

from .connection import Connection
from .manager import ConnectionManager
from .protocol.h3 import H3Adapter
from .protocol.quic import (
    EdgeQuicConnection,
    RetryTokens,
    TicketStore,
    destination_cid,
    new_route,
)

log = logging.getLogger("edgecorn.error")

UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)  # linux/udp.h
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65000

Datagrams = list[tuple[bytes, Any]]
TIMER_GRANULARITY = 0.001


class QUICConnection(Connection):
    def __init__(self, endpoint: QUICEndpoint, quic: EdgeQuicConnection, addr: Any) -> None:
        super().__init__(endpoint.manager, secure=True)
        self.endpoint = endpoint
        self.quic = quic
        config = self.config
        self.h3 = H3Adapter(
            quic,
            max_requests=config.keep_alive_max_requests,
            max_header_list_size=config.h3_max_header_list_size,
            early_data_unsafe=config.quic_early_data_unsafe,
        )
        self.proto = self.h3
        self.batch_writes = True
        self.advertise = False  # no Alt-Svc on responses that came over HTTP/3
        self.client = (addr[0], addr[1])
        sockname = endpoint.sock.getsockname()
        self.server = (sockname[0], sockname[1])
        self.timer: Any = None
        self.timer_at: float | None = None
        self.cids: set[bytes] = set()
        self.handshaking = True
        self.manager.add(self)

    # --- input -------------------------------------------------------------------

    def datagram(self, data: bytes, addr: Any) -> None:
        self.reads += 1
        self._after(self.h3.receive_datagram(data, addr, self.endpoint.now()))

    def _on_timer(self) -> None:
        self.timer = None
        self.timer_at = None
        try:
            self._after(self.h3.handle_timer(self.endpoint.now()))
        except Exception:  # a broken connection ends here, not in the event loop
            log.exception("error in a QUIC timer for %s", self.client)
            self._terminate()

    def _after(self, events: list[Any]) -> None:
        h3 = self.h3
        if h3.cid_changes:
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
        if self.handshaking and h3.handshake_done:
            self.handshaking = False
            self.endpoint.handshaking -= 1
        if events:
            self.handle(events)
        if self.window_waiters:
            self._wake(self.window_waiters)  # acks free send buffer without any event
        self.flush()

    # --- output ------------------------------------------------------------------

    def flush_stream(self) -> None:
        # `sendable` already bounds what aioquic holds per stream: batch like the rest,
        # since every datagrams_to_send() call costs, even for a few packets.
        self.flush()

    def _flush_now(self) -> None:
        self.flush_pending = False
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
        if datagrams:
            endpoint.send(datagrams)
        if h3.terminated or self.quic._state.name == "TERMINATED":
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
        if not self.closed:
            self.closed = True
            self.on_lost()

    # --- Connection's primitives: the endpoint's ------------------------------------

    def write(self, data: bytes) -> None:
        pass  # QUIC output leaves as datagrams from `_flush_now`

    def close(self) -> None:
        # QUIC closes by sending CONNECTION_CLOSE and draining; the connection stays
        # routable until aioquic reports it terminated (then `_terminate`).
        if not self.h3.terminated:
            self.h3.close()
            self.flush()

    def close_transport(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        pass  # QUIC flow control bounds what a peer may send

    def resume_reading(self) -> None:
        pass

    def defer(self, callback: Callable[[], None]) -> None:
        self.endpoint.defer(callback)

    def call_later(self, delay: float, callback: Callable[[], None]) -> Any:
        return self.endpoint.call_later(delay, callback)

    def create_future(self) -> Any:
        return self.endpoint.create_future()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        self.endpoint.spawn(coro)

    def tick(self, keep_alive_ticks: int, read_timeout_ticks: int | None) -> None:
        pass  # QUIC's own idle timeout (quic_idle_timeout) applies


class QUICEndpoint(ABC):
    """One UDP socket's QUIC connections."""

    def __init__(
        self,
        manager: ConnectionManager,
        sock: socket.socket,
        configuration: QuicConfiguration,
        tickets: TicketStore,
        cid_tag: int | None = None,
    ) -> None:
        self.manager = manager
        self.sock = sock
        self.configuration = configuration
        self.tickets = tickets
        self.cid_tag = cid_tag
        self.routes: dict[bytes, QUICConnection] = {}
        self.handshaking = 0
        config = manager.config
        self.retry_mode = config.quic_retry
        self.retry_threshold = config.quic_retry_threshold
        self.retry = RetryTokens() if self.retry_mode != "off" else None
        self.early_data = config.quic_early_data
        self.max_streams = config.h3_max_concurrent_streams
        self.gso = hasattr(sock, "sendmsg")

    # --- what the backend supplies ------------------------------------------------

    @abstractmethod
    def now(self) -> float: ...

    @abstractmethod
    def call_at(self, when: float, callback: Callable[[], None]) -> Any: ...

    @abstractmethod
    def call_later(self, delay: float, callback: Callable[[], None]) -> Any: ...

    @abstractmethod
    def defer(self, callback: Callable[[], None]) -> None: ...

    @abstractmethod
    def create_future(self) -> Any: ...

    @abstractmethod
    def spawn(self, coro: Coroutine[Any, Any, None]) -> None: ...

    @abstractmethod
    def send_later(self, datagrams: Datagrams) -> None:
        """The socket is full: send these, in order, when it can take them."""

    # --- input -------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Any) -> None:
        # Nothing a peer sends may stop the listener: failures end at one connection.
        conn = None
        try:
            dcid = destination_cid(data)
            if dcid is None:
                return
            conn = self.routes.get(dcid)
            if conn is not None:
                conn.datagram(data, addr)
                return
            if self.manager.draining:
                return
            want_retry = self.retry_mode == "on" or (
                self.retry_mode == "under_load" and self.handshaking >= self.retry_threshold
            )
            route = new_route(data, addr, self.retry, want_retry)
            if route is None:
                return
            if route.reply is not None:
                self.send([(route.reply, addr)])
                return
            quic = EdgeQuicConnection(
                early_data=self.early_data,
                max_streams=self.max_streams,
                cid_tag=self.cid_tag,
                configuration=self.configuration,
                original_destination_connection_id=route.original_dcid,
                retry_source_connection_id=route.retry_scid,
                session_ticket_fetcher=self.tickets.pop,
                session_ticket_handler=self.tickets.add,
            )
            conn = QUICConnection(self, quic, addr)
            self.handshaking += 1
            conn.cids.update((route.dcid, quic.host_cid))
            self.routes[route.dcid] = conn
            self.routes[quic.host_cid] = conn
            conn.datagram(data, addr)
        except Exception:
            log.exception("error handling a QUIC datagram from %s", addr)
            if conn is not None:
                conn._terminate()

    # --- output ------------------------------------------------------------------

    def send(self, datagrams: Datagrams) -> None:
        index = 0
        if self.gso and len(datagrams) > 1:
            try:
                index = self._send_gso(datagrams)
            except OSError as exc:
                log.info("UDP GSO unavailable (%s); sending datagrams one by one", exc)
                self.gso = False
                index = 0
        sock = self.sock
        count = len(datagrams)
        while index < count:
            data, addr = datagrams[index]
            try:
                sock.sendto(data, addr)
            except BlockingIOError:
                self.send_later(datagrams[index:])
                return
            except OSError as exc:  # one peer's trouble (ICMP) is that peer's
                log.debug("UDP send to %s failed: %s", addr, exc)
            index += 1

    def _send_gso(self, datagrams: Datagrams) -> int:
        """Send runs of equal-size datagrams to one peer with one sendmsg each.

        Returns the index of the first datagram not sent (the socket was full),
        or the count when all left; raises OSError when the kernel refuses GSO.
        """
        sock = self.sock
        index = 0
        count = len(datagrams)
        while index < count:
            data, addr = datagrams[index]
            size = len(data)
            parts = [data]
            total = size
            end = index + 1
            while end < count and len(parts) < GSO_MAX_SEGMENTS:
                nxt, nxt_addr = datagrams[end]
                if nxt_addr != addr or len(nxt) > size or total + len(nxt) > GSO_MAX_BYTES:
                    break
                parts.append(nxt)
                total += len(nxt)
                end += 1
                if len(nxt) < size:
                    break  # a shorter datagram can only end a GSO run
            try:
                if len(parts) == 1:
                    sock.sendto(data, addr)
                else:
                    segment = [(socket.SOL_UDP, UDP_SEGMENT, struct.pack("=H", size))]
                    sock.sendmsg(parts, segment, 0, addr)
            except BlockingIOError:
                return index
            index = end
        return index

    # --- lifetime ----------------------------------------------------------------

    def close_connections(self) -> None:
        """CONNECTION_CLOSE to every peer, sent now."""
        for conn in set(self.routes.values()):
            try:
                conn.h3.close()
                conn._flush_now()
            except Exception:
                log.exception("error closing a QUIC connection")
