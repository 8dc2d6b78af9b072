"""The command interface every protocol adapter offers to the connection."""

from __future__ import annotations

from typing import Protocol

from .events import Event, Headers


class Adapter(Protocol):
    """Sans-IO: `receive_data` turns bytes into events, commands queue bytes for `data_to_send`."""

    http_version: str  # "1.1", "2" or "3" (h1 reports the request's own version per Request)

    def receive_data(self, data: bytes) -> list[Event]: ...

    def resume(self) -> list[Event]:
        """Events held back (pipelined requests) that may now be delivered."""
        ...

    def data_to_send(self) -> bytes: ...

    def want_body(self, stream_id: int) -> None:
        """The app asked for the body: the place to send `100 Continue`."""
        ...

    def ack_data(self, stream_id: int, size: int) -> None:
        """The app consumed `size` body bytes: reopen flow control by that much."""
        ...

    def send_informational(self, stream_id: int, status: int, headers: Headers) -> None: ...

    def send_response(
        self, stream_id: int, status: int, headers: Headers, body: bytes, end: bool
    ) -> None: ...

    def send_data(self, stream_id: int, data: bytes, end: bool) -> None: ...

    def send_trailers(self, stream_id: int, headers: Headers) -> None: ...

    def sendable(self, stream_id: int) -> int:
        """How many body bytes the stream may send now; -1 when the stream is gone."""
        ...

    def reset(self, stream_id: int) -> None:
        """Abandon a stream whose response cannot be completed."""
        ...

    def goaway(self) -> None:
        """Start a graceful close: finish open streams, accept no new ones."""
        ...

    def release(self) -> None:
        """The peer is gone (no more `receive_data`): break the adapter's reference
        cycles so that refcounting alone frees it. Commands stay harmless."""
        ...

    @property
    def backlog(self) -> int:
        """Received body bytes not yet consumed by apps (for read back-pressure)."""
        ...

    @property
    def closing(self) -> bool:
        """The connection should be closed once `data_to_send` has been written."""
        ...

    @property
    def idle(self) -> bool:
        """No request is in progress."""
        ...
