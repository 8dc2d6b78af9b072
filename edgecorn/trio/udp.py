"""The trio side of a QUIC listener: the socket loop, and the clock, timers and tasks that
`QUICEndpoint` (edgecorn/quic/endpoint.py) asks of an event loop.

The endpoint routes datagrams by connection ID and sends what the connections produce
(each connection's timer and batching: edgecorn/quic/connection.py). Here one receiver task
per socket reads every datagram that is ready with plain non-blocking `recvfrom` calls and
hands each to the endpoint at once (no queue, no task per packet); it yields to the other
tasks when the socket is empty or every `BURST` datagrams, which is when the connections'
deferred flushes run. Datagrams the kernel will not take right now wait, in order, in a
bounded queue (`MAX_QUEUED`) for the sender task.
"""

from __future__ import annotations

import logging
import socket
from collections import deque
from typing import Any

import trio

from ..manager import ConnectionManager
from ..quic.endpoint import Datagrams, QUICEndpoint
from ..quic.worker import QuicSetup
from .runtime import Runtime

log = logging.getLogger("edgecorn.error")

BURST = 64  # datagrams handled before yielding to the other tasks
MAX_QUEUED = 4096  # datagrams waiting for a full socket; beyond this they are dropped


class QUICListener(QUICEndpoint):
    """One UDP socket's QUIC connections on trio; `run()` serves it until closed."""

    def __init__(
        self,
        manager: ConnectionManager,
        sock: socket.socket,
        setup: QuicSetup,
        runtime: Runtime,
    ) -> None:
        super().__init__(manager, sock, setup, runtime)
        self.queue: deque[tuple[bytes, Any]] = deque()
        self.send_wakeup = trio.Event()
        self.closed = False

    async def run(self) -> None:
        """Receive (and send what could not leave at once) until cancelled or closed."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._sender)
            await self._receiver()
            nursery.cancel_scope.cancel()

    async def _receiver(self) -> None:
        sock = self.sock
        burst = 0
        while not self.closed:
            try:
                data, addr = sock.recvfrom(65536)
            except BlockingIOError:
                burst = 0
                try:
                    await trio.lowlevel.wait_readable(sock)
                except (trio.ClosedResourceError, OSError):
                    return
                continue
            except OSError as exc:
                if self.closed or sock.fileno() < 0:
                    return
                # ICMP errors for one peer concern only that peer
                log.debug("UDP error: %s", exc)
                continue
            self.datagram_received(data, addr)
            burst += 1
            if burst >= BURST:
                burst = 0
                await trio.lowlevel.checkpoint()

    # --- QUICEndpoint's primitives ---------------------------------------------------

    def send(self, datagrams: Datagrams) -> None:
        if self.closed:
            return
        if self.queue:  # keep the order: behind what already waits
            self.send_later(datagrams)
            return
        super().send(datagrams)

    def send_later(self, datagrams: Datagrams) -> None:
        room = MAX_QUEUED - len(self.queue)
        self.queue.extend(datagrams[: max(room, 0)])  # the rest is lost, as UDP may lose it
        self.send_wakeup.set()

    async def _sender(self) -> None:
        sock = self.sock
        queue = self.queue
        while True:
            if not queue:
                self.send_wakeup = trio.Event()
                await self.send_wakeup.wait()
                continue
            try:
                await trio.lowlevel.wait_writable(sock)
            except (trio.ClosedResourceError, OSError):
                return
            while queue:
                data, addr = queue[0]
                try:
                    sock.sendto(data, addr)
                except BlockingIOError:
                    break
                except OSError as exc:
                    log.debug("UDP send to %s failed: %s", addr, exc)
                queue.popleft()

    # --- lifetime ----------------------------------------------------------------

    def close(self) -> None:
        """CONNECTION_CLOSE to every peer, sent now, then the socket is closed."""
        self.close_connections()
        self.closed = True
        self.queue.clear()
        trio.lowlevel.notify_closing(self.sock)
        self.sock.close()
