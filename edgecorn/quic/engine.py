"""The one door to aioquic's internals.

edgecorn needs a few things aioquic has no public API for: tagging connection
IDs for multi-worker steering, a concurrent-stream limit, refusing 0-RTT, the
bytes a stream still holds, the h3 control stream for GOAWAY, and whether the
connection is terminated. They are reached here and nowhere else
(tests/test_quic_engine.py checks that), and every private name is checked at
import: a renamed attribute in a new aioquic fails the start with one line,
instead of silently switching off 0-RTT refusal or CID steering. A second QUIC
engine (qh3, ...) plugs in here.
"""

from __future__ import annotations

import os
from typing import Any

import aioquic
from aioquic.h3.connection import H3Connection
from aioquic.quic.connection import Limit, QuicConnection, QuicConnectionId
from aioquic.quic.stream import QuicStream, QuicStreamSender
from aioquic.tls import Context, Epoch

TESTED = "1.7.2"  # pyproject.toml caps aioquic below the next minor release
CID_LENGTH = 8

# (where, name): the private methods we override and the attributes we read or set
# (instance attributes are looked for in the __init__ that assigns them).
HOOKS: list[tuple[Any, str]] = [
    (QuicConnection, "_initialize"),
    (QuicConnection, "_replenish_connection_ids"),
    (QuicConnection.__init__, "_host_cids"),
    (QuicConnection.__init__, "_local_initial_source_connection_id"),
    (QuicConnection.__init__, "_local_max_streams_bidi"),
    (QuicConnection.__init__, "_streams"),
    (QuicConnection.__init__, "_state"),
    (QuicConnection._initialize, "tls"),
    (Limit.__init__, "value"),
    (Limit.__init__, "sent"),
    (QuicStream.__init__, "sender"),
    (QuicStreamSender.__init__, "_buffer_start"),
    (QuicStreamSender.__init__, "_buffer_stop"),
    (QuicStreamSender.__init__, "is_finished"),
    (Context.__init__, "_max_early_data"),
    (Context.__init__, "update_traffic_key_cb"),
    (Context.__init__, "early_data_accepted"),
    (H3Connection.__init__, "_local_control_stream_id"),
]


def missing_hooks(hooks: list[tuple[Any, str]]) -> list[str]:
    missing = []
    for where, name in hooks:
        code = getattr(where, "__code__", None)
        found = name in code.co_names if code is not None else hasattr(where, name)
        if not found:
            missing.append(f"{where.__qualname__}: {name}")
    return missing


def check(hooks: list[tuple[Any, str]] = HOOKS) -> None:
    missing = missing_hooks(hooks)
    if "cid" not in getattr(QuicConnectionId, "__dataclass_fields__", {}):
        missing.append("QuicConnectionId.cid")
    if missing:
        raise ImportError(
            f"edgecorn cannot use aioquic {aioquic.__version__} (tested with {TESTED}): "
            f"internals it relies on are gone ({', '.join(missing)})"
        )


check()


class EdgeQuicConnection(QuicConnection):
    """aioquic's server connection, with 0-RTT offered in tickets only when enabled,
    and, with several workers, connection IDs whose first byte names the worker
    (see reuseport.py) so the kernel steers every packet to it."""

    def __init__(
        self, *, early_data: bool, cid_tag: int | None = None, max_streams: int = 128, **kwargs: Any
    ) -> None:
        self.edge_early_data = early_data
        self.edge_cid_tag = cid_tag
        super().__init__(**kwargs)
        # aioquic hard-codes 128 concurrent bidi streams and raises the limit by one per
        # finished stream, so this stays the number of concurrent requests.
        limit = self._local_max_streams_bidi
        limit.value = limit.sent = max_streams
        if cid_tag is not None:
            first = self._host_cids[0]
            first.cid = tagged_cid(cid_tag)
            self.host_cid = first.cid
            self._local_initial_source_connection_id = first.cid

    def _replenish_connection_ids(self) -> None:
        super()._replenish_connection_ids()
        tag = self.edge_cid_tag
        if tag is not None:
            for connection_id in self._host_cids:
                if not connection_id.was_sent and connection_id.cid[0] != tag:
                    connection_id.cid = tagged_cid(tag)  # not yet announced: safe to change

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        if not self.edge_early_data:
            # Tickets then carry no early_data extension, so clients resume without 0-RTT.
            self.tls._max_early_data = None
            # aioquic's TLS accepts 0-RTT whenever a resumed ClientHello offers it (it never
            # checks the ticket): refuse the 0-RTT key, so EncryptedExtensions says "rejected".
            tls_context = self.tls
            install = tls_context.update_traffic_key_cb

            def no_early_data(direction: Any, epoch: Any, cipher_suite: Any, secret: bytes) -> None:
                if epoch == Epoch.ZERO_RTT:
                    tls_context.early_data_accepted = False
                    return
                install(direction, epoch, cipher_suite, secret)

            tls_context.update_traffic_key_cb = no_early_data


def tagged_cid(tag: int) -> bytes:
    return bytes([tag]) + os.urandom(CID_LENGTH - 1)


def buffered(quic: QuicConnection, stream_id: int) -> int | None:
    """Bytes aioquic holds for a stream (unsent or unacknowledged); None: no such stream."""
    stream = quic._streams.get(stream_id)
    if stream is None:
        return None
    sender = stream.sender
    return sender._buffer_stop - sender._buffer_start


def requests_delivered(quic: QuicConnection) -> bool:
    """Every client-initiated bidirectional (request) stream's sending side is finished."""
    return all(stream.sender.is_finished for sid, stream in quic._streams.items() if sid % 4 == 0)


def terminated(quic: QuicConnection) -> bool:
    return quic._state.name == "TERMINATED"


def control_stream_id(h3: H3Connection) -> int | None:
    """Our HTTP/3 control stream, where GOAWAY goes (aioquic sends none itself)."""
    return h3._local_control_stream_id
