"""QUIC over one UDP socket, independent of the event loop: the endpoint routes
datagrams by connection ID to `QUICConnection`s and sends what they produce.

Datagrams are handled as they are read (no queue, no task per packet); a
connection's batch leaves with UDP GSO where the kernel has it. A backend
(asyncio/udp.py, trio/udp.py) supplies what to do with datagrams the socket cannot
take now; the clock, timers and tasks are the worker's `Runtime` (edgecorn/runtime.py).
"""

from __future__ import annotations

import logging
import socket
import struct
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from .. import metrics
from ..manager import ConnectionManager
from .connection import QUICConnection
from .engine import HANDSHAKE_COST, EdgeQuicConnection
from .ratelimit import PeerRate
from .retry import ResetTokens, RetryTokens
from .routing import Route, destination_cid, new_route, refusal
from .worker import QuicSetup

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger("edgecorn.error")

UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)  # linux/udp.h
GSO_MAX_SEGMENTS = 64
GSO_MAX_BYTES = 65000
HANDSHAKE_PEER_BYTES = 64 * 1024  # a half-open connection's estimate counts this much input
# CONNECTION_REFUSED answers a second at max_connections, per peer address and in all.
REFUSALS_PER_PEER = 10.0
REFUSALS_TOTAL = 1000.0

Datagrams = list[tuple[bytes, Any]]


class QUICEndpoint(ABC):
    """One UDP socket's QUIC connections."""

    def __init__(
        self, manager: ConnectionManager, sock: socket.socket, setup: QuicSetup, runtime: Runtime
    ) -> None:
        self.manager = manager
        # The runtime's primitives, bound (the connections call them on their endpoint).
        self.runtime = runtime
        self.now = runtime.now
        self.call_at = runtime.call_at
        self.call_later = runtime.call_later
        self.defer = runtime.defer
        self.create_future = runtime.create_future
        self.spawn = runtime.spawn
        self.sock = sock
        self.configuration = setup.configuration
        self.tickets = setup.tickets
        self.cid_tag = setup.cid_tag
        self.cid_format = setup.cid_format
        self.choose_certificate = setup.choose_certificate
        self.connection_class: Any = setup.connection_class or EdgeQuicConnection
        self.routes: dict[bytes, QUICConnection] = {}
        self.handshaking = 0
        config = manager.config
        self.retry_mode = config.quic_retry
        self.retry_threshold = config.quic_retry_threshold
        self.retry = RetryTokens(setup.retry_key) if self.retry_mode != "off" else None
        # Stateless resets need tokens we derive; another engine (qh3) draws its own.
        derives = issubclass(self.connection_class, EdgeQuicConnection)
        self.resets = ResetTokens(setup.retry_key) if derives else None
        # The half-open budget: connections in handshake and what they are estimated to
        # hold (the engine's measured cost plus what their peers sent so far).
        self.max_handshakes = config.quic_max_handshakes
        self.handshake_memory = config.quic_handshake_memory
        self.handshake_bytes = 0
        self.budget_full = False
        self.early_data = config.quic_early_data
        self.max_streams = config.h3_max_concurrent_streams
        self.gso = hasattr(sock, "sendmsg")
        self.refusing = False  # said once in the log each time max_connections is reached
        self.alone = setup.alone  # no other worker's socket on this port (workers: 0)
        self.refusals = PeerRate(REFUSALS_PER_PEER, total=REFUSALS_TOTAL)

    # --- what the backend supplies ------------------------------------------------

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
                if conn.handshaking:
                    self._count_handshake_bytes(conn, len(data))
                conn.datagram(data, addr)
                return
            if not data[0] & 0x80:  # a short header: a connection we do not have (any more)
                self._reset(data, dcid, addr)
                return
            draining = self.manager.draining
            if draining and not self.alone:
                return  # silent: another worker (a rolling restart's new one) may get the retry
            full = self._budget_full(len(data))
            want_retry = self.retry_mode == "on" or (
                self.retry_mode == "under_load" and self.handshaking >= self.retry_threshold
            )
            # max_connections (TCP and QUIC together); or draining with no other worker to
            # take the client's retransmission: refused, so the client fails at once
            # instead of retransmitting its Initial until its handshake timeout.
            no_room = draining or not self.manager.has_room()
            route = new_route(data, addr, self.retry, want_retry, full, no_room)
            if route is None:
                return
            if route.refuse:
                self._refuse(route, addr)
                return
            if route.reply is not None:
                if metrics.recorder is not None:
                    metrics.recorder.quic_reply(route.reply)  # counts Retry packets
                self.send([(route.reply, addr)])
                return
            extra = {} if self.resets is None else {"reset_token": self.resets.token}
            quic = self.connection_class(
                early_data=self.early_data,
                max_streams=self.max_streams,
                cid_tag=self.cid_tag,
                cid_format=self.cid_format,
                choose_certificate=self.choose_certificate,
                configuration=self.configuration,
                original_destination_connection_id=route.original_dcid,
                retry_source_connection_id=route.retry_scid,
                session_ticket_fetcher=self.tickets.pop,
                session_ticket_handler=self.tickets.add,
                **extra,
            )
            conn = QUICConnection(self, quic, addr)
            self.refusing = False
            self.handshaking += 1
            conn.handshake_bytes = HANDSHAKE_COST
            self.handshake_bytes += HANDSHAKE_COST
            self._count_handshake_bytes(conn, len(data))
            conn.cids.update((route.dcid, quic.host_cid))
            self.routes[route.dcid] = conn
            self.routes[quic.host_cid] = conn
            conn.datagram(data, addr)
        except Exception:
            log.exception("error handling a QUIC datagram from %s", addr)
            if conn is not None:
                conn._terminate()

    def _budget_full(self, size: int) -> bool:
        """Whether one more half-open connection would pass quic_max_handshakes or
        quic_handshake_memory; said once in the log each time the budget fills."""
        full = (
            self.handshaking >= self.max_handshakes
            or self.handshake_bytes + HANDSHAKE_COST + size > self.handshake_memory
        )
        if full and not self.budget_full:
            log.warning(
                "QUIC: %d connections in handshake (~%d KiB): new ones get Retry or are "
                "dropped until some complete (quic_max_handshakes, quic_handshake_memory)",
                self.handshaking,
                self.handshake_bytes // 1024,
            )
        self.budget_full = full
        return full

    def _count_handshake_bytes(self, conn: QUICConnection, size: int) -> None:
        """What a peer sent before its handshake completed (CRYPTO, 0-RTT) may be held:
        counted, up to HANDSHAKE_PEER_BYTES a connection, so that one peer sending much
        cannot spend the budget alone (the count cap still holds)."""
        size = min(size, HANDSHAKE_COST + HANDSHAKE_PEER_BYTES - conn.handshake_bytes)
        if size > 0:
            conn.handshake_bytes += size
            self.handshake_bytes += size

    def _refuse(self, route: Route, addr: Any) -> None:
        """max_connections is reached (or a lone worker drains): a new connection is
        refused in one small Initial (routing.refusal), and no state is kept. The
        refusals are rate-limited per peer like the resets (each costs a key derivation
        and an encryption); past the rate the Initial is dropped and the client's
        retransmission may be refused, or fit, later."""
        if not self.refusing:
            self.refusing = True
            if self.manager.draining:
                log.info("QUIC: shutting down: new QUIC connections are refused")
            else:
                log.warning(
                    "QUIC: %d connections (max_connections): new QUIC connections are refused",
                    len(self.manager.connections) + len(self.manager.pending),
                )
        if self.refusals.allow(addr, self.now()):
            self.send([(refusal(route), addr)])

    def _reset(self, data: bytes, dcid: bytes, addr: Any) -> None:
        """RFC 9000 10.3: the peer of a connection this worker lost (a crash, a restart,
        a connection already forgotten) learns at once that it is gone, instead of
        retransmitting into silence until its idle timeout."""
        if self.resets is None:
            return
        reply = self.resets.reset(data, dcid, addr, self.now())
        if reply is not None:
            self.send([(reply, addr)])

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
                conn.send_datagrams()
            except Exception:
                log.exception("error closing a QUIC connection")
