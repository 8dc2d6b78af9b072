"""The asyncio TCP listener's per-connection protocol: moves bytes, nothing else."""

from __future__ import annotations

import asyncio
from typing import Any

from ..connection import Connection
from ..manager import ConnectionManager
from .runtime import AsyncioRuntime


class TCPProtocol(AsyncioRuntime, Connection, asyncio.Protocol):
    transport: asyncio.Transport

    def __init__(self, manager: ConnectionManager, secure: bool, tasks: set[Any]) -> None:
        super().__init__(manager, secure)
        self.loop = asyncio.get_running_loop()
        self.tasks = tasks
        self.secure = secure

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        peer = transport.get_extra_info("peername")
        local = transport.get_extra_info("sockname")
        if isinstance(peer, tuple):
            self.client = (peer[0], peer[1])
        if isinstance(local, tuple):
            self.server = (local[0], local[1])
        elif local:
            self.server = (str(local), None)
        alpn = None
        if self.secure:
            ssl_object = transport.get_extra_info("ssl_object")
            alpn = (ssl_object.selected_alpn_protocol() if ssl_object else None) or "http/1.1"
        self.use_protocol(alpn)

    # asyncio.Protocol callbacks are Connection's own handlers: no extra call per read.
    data_received = Connection.on_data
    pause_writing = Connection.on_pause_writing
    resume_writing = Connection.on_resume_writing

    def eof_received(self) -> bool:
        self.on_eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_lost()

    # backend primitives
    def write(self, data: bytes) -> None:
        self.transport.write(data)

    def close_transport(self) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        if self.write_paused:
            transport.abort()  # a peer that stopped reading gets no more time
        else:
            transport.close()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.closed:
            self.transport.resume_reading()
