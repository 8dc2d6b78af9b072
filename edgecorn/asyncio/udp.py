"""The asyncio QUIC listener: `QUICEndpoint` on a datagram protocol.

Datagrams are handled right in `datagram_received`; the loop's clock and
timers drive aioquic; what the socket cannot take now is left to the
transport, which sends it when the socket is writable.
"""

from __future__ import annotations

import asyncio
import logging
import socket

from ..manager import ConnectionManager
from ..quic.endpoint import Datagrams, QUICEndpoint
from ..quic.worker import QuicSetup
from .runtime import AsyncioRuntime

log = logging.getLogger("edgecorn.error")


class QUICListener(QUICEndpoint, asyncio.DatagramProtocol):
    def __init__(
        self,
        manager: ConnectionManager,
        sock: socket.socket,
        setup: QuicSetup,
        runtime: AsyncioRuntime,
    ) -> None:
        super().__init__(manager, sock, setup, runtime)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)  # ICMP errors for one peer concern only that peer

    # --- QUICEndpoint's primitive ------------------------------------------------------

    def send_later(self, datagrams: Datagrams) -> None:
        if self.transport is not None:
            for data, addr in datagrams:
                self.transport.sendto(data, addr)

    def close(self) -> None:
        self.close_connections()
        if self.transport is not None:
            self.transport.close()
