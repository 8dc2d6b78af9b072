"""What both upstream codecs (HTTP/1.1 in upstream.py, HTTP/2 in h2upstream.py) share."""

from __future__ import annotations

from typing import Any, Protocol

READ_SIZE = 64 * 1024


class UpstreamError(Exception):
    """The upstream could not be reached or broke the exchange; `status` is what to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Link(Protocol):
    """A byte stream to an upstream as the HTTP/2 client uses it (upstream.Connection)."""

    stream: Any
    idle_since: float

    def usable(self) -> bool: ...

    async def aclose(self) -> None: ...
