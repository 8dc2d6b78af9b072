"""Session tickets for resumption, kept in memory, each usable once."""

from __future__ import annotations

import time

from aioquic.tls import SessionTicket


class TicketStore:
    """Single use is what makes 0-RTT replay of a ticket fail here (RFC 8446 8.1).
    Tickets live in two generations that rotate every `rotation` seconds, so a
    ticket is forgotten after one to two rotations and the store stays bounded.
    """

    def __init__(self, rotation: float = 3600.0, max_size: int = 100_000) -> None:
        self.rotation = rotation
        self.max_size = max_size
        self.current: dict[bytes, SessionTicket] = {}
        self.previous: dict[bytes, SessionTicket] = {}
        self.rotated_at = time.monotonic()

    def _maybe_rotate(self) -> None:
        full = len(self.current) >= self.max_size
        if full or time.monotonic() - self.rotated_at >= self.rotation:
            self.previous, self.current = self.current, {}
            self.rotated_at = time.monotonic()

    def add(self, ticket: SessionTicket) -> None:
        self._maybe_rotate()
        self.current[ticket.ticket] = ticket

    def pop(self, label: bytes) -> SessionTicket | None:
        self._maybe_rotate()
        return self.current.pop(label, None) or self.previous.pop(label, None)
