"""qh3 as the QUIC engine (`quic_engine: qh3`), behind the same door as aioquic.

qh3 is a fork of aioquic whose packet, crypto and QPACK work is compiled; its Python
surface keeps aioquic's API (QuicConnection, H3Connection, the TLS Context) but not
aioquic's internals. So this module gives the adapter (h3.py) what engine.py gives it
for aioquic, reached through qh3's own private names, checked at import:

- events come out as aioquic's event classes, so the adapter stays engine-blind;
- the first connection ID carries the worker tag / QUIC-LB format; the later ones
  (NEW_CONNECTION_ID) are made inside qh3's compiled core, with no hook, so several
  workers or QUIC-LB refuse qh3 (`unsupported`), they never silently lose connections;
- 0-RTT refusal, SNI certificates, the key log: through qh3's Python TLS Context;
- malformed requests (content-length, pseudo-headers) and oversized header sections are
  errors of their stream, as with aioquic; responses never wait on the encoder stream.

What qh3 cannot do is said by `unsupported(config)`: an explicit `qh3` is then a config
error, `auto` falls back to aioquic with one start-up line saying why.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import qh3
from aioquic.h3 import events as aioquic_h3_events
from aioquic.quic import events as aioquic_events
from qh3._hazmat import StreamBlocked, encode_uint_var
from qh3.h3 import events as qh3_h3_events
from qh3.h3.connection import (
    ErrorCode,
    FieldSectionTooLarge,
    FrameType,
    H3Connection,
    H3Stream,
    HeadersState,
    MessageError,
    ProtocolError,
)
from qh3.quic import events as qh3_events
from qh3.quic.configuration import QuicConfiguration
from qh3.quic.connection import QuicConnection, QuicConnectionError, QuicConnectionState
from qh3.tls import (
    CipherSuite,
    Context,
    Epoch,
    load_pem_private_key,
    load_pem_x509_certificates,
    pull_client_hello,
)

from .engine import missing_hooks, tagged_cid

log = logging.getLogger("edgecorn.error")

if TYPE_CHECKING:
    from ..config import Config

TESTED = "2.1.0"
VERSION: str = qh3.__version__
# What qh3's compiled core fixes when it makes a connection (quic/connection.py _create_core).
STREAM_LIMIT = 100

HOOKS: list[tuple[Any, str]] = [
    (QuicConnection, "_create_tls"),
    (QuicConnection.__init__, "host_cid"),
    (QuicConnection.__init__, "_core"),
    (QuicConnection.__init__, "_state"),
    (QuicConnection._create_core, "QuicConnectionCore"),
    (Context, "_server_handle_hello"),
    (Context.__init__, "_max_early_data"),
    (Context.__init__, "update_traffic_key_cb"),
    (Context.__init__, "early_data_accepted"),
    (H3Connection.__init__, "_local_control_stream_id"),
    (H3Connection.__init__, "_stream"),
    (H3Connection.__init__, "_encoder"),
    (H3Connection.__init__, "_decoder"),
    (H3Connection.__init__, "_max_field_section_size"),
    (H3Connection, "_init_connection"),
    (H3Connection, "_get_or_create_stream"),
    (H3Connection, "_encode_headers"),
    (H3Connection, "_maybe_cleanup_stream"),
    (H3Connection.__init__, "_quic_logger"),
    (H3Stream, "finish_sending"),
    (H3Stream.__init__, "headers_send_state"),
    (H3Connection, "_receive_stream_data"),
    (H3Connection, "_decode_headers"),
    (H3Connection.__init__, "_blocked_stream_map"),
    (H3Connection.__init__, "_max_encoded_field_section_size"),
    (H3Stream.__init__, "receiving_ended"),
    (H3Stream.__init__, "headers_recv_state"),
    (H3Stream.__init__, "blocked_frame_size"),
    (H3Connection, "_receive_stream_reset"),
    (H3Connection, "_receive_stop_sending"),
    (H3Connection, "_receive_datagram"),
]

# qh3 event class -> the aioquic class the adapter matches on (same fields, checked below).
_QUIC_EVENTS: dict[type, type] = {
    getattr(qh3_events, name): getattr(aioquic_events, name)
    for name in (
        "ConnectionIdIssued",
        "ConnectionIdRetired",
        "ConnectionTerminated",
        "DatagramFrameReceived",
        "HandshakeCompleted",
        "PingAcknowledged",
        "ProtocolNegotiated",
        "StreamDataReceived",
        "StopSendingReceived",
        "StreamReset",
    )
}


def _fields(cls: type) -> set[str]:
    return {field.name for field in dataclasses.fields(cls)}


def check() -> None:
    missing = missing_hooks(HOOKS)
    for ours, theirs in _QUIC_EVENTS.items():
        if _fields(ours) != _fields(theirs):
            missing.append(f"{ours.__qualname__} fields")
    if missing:
        raise ImportError(
            f"edgecorn cannot use qh3 {qh3.__version__} (tested with {TESTED}): "
            f"internals it relies on are gone ({', '.join(missing)})"
        )


check()


# Defects of a qh3 release that keep `auto` on aioquic (an explicit `qh3` still runs it).
KNOWN_DEFECTS = {
    "2.1.0": "qh3 2.1.0's core fails answering an aioquic client's Initial "
    "(packet builder capacity exhausted)",
}


def unsupported(config: Config) -> list[str]:
    """What this configuration needs that qh3 cannot do; empty: qh3 can serve it."""
    problems = []
    if config.workers > 1:
        problems.append(
            "several workers steer QUIC by a worker tag in every connection ID, and qh3 "
            "makes the NEW_CONNECTION_ID ones in its compiled core, untagged"
        )
    if config.quic_lb_server_id:
        problems.append(
            "quic_lb_server_id needs every connection ID in the QUIC-LB format, and qh3 "
            "makes the NEW_CONNECTION_ID ones in its compiled core"
        )
    if config.h3_max_concurrent_streams != STREAM_LIMIT:
        problems.append(f"h3_max_concurrent_streams: qh3 fixes the limit at {STREAM_LIMIT}")
    if config.quic_ticket_key_file:
        # Its tickets are not made where engine.py seals aioquic's, and a sealed ticket
        # from an aioquic host did not resume on qh3 2.1 (tried by hand): refuse, not pretend.
        problems.append("quic_ticket_key_file: qh3's session tickets cannot be sealed")
    return problems


# --- certificates: qh3 takes its own objects, not cryptography's -----------------------------

Certificate = tuple[Any, list[Any], Any]
_converted: dict[int, tuple[Certificate, Certificate]] = {}


def convert_certificate(certificate: Certificate) -> Certificate:
    """cryptography's (certificate, chain, key), as the certificate store holds them, as
    qh3's objects; cached per store entry (a reload makes new objects, hence a new entry)."""
    cached = _converted.get(id(certificate))
    if cached is not None and cached[0] is certificate:
        return cached[1]
    from cryptography.hazmat.primitives import serialization

    leaf, chain, key = certificate
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [leaf, *chain])
    certificates = load_pem_x509_certificates(pem)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    converted = (certificates[0], certificates[1:], load_pem_private_key(key_pem))
    if len(_converted) > 64:  # reloads: old entries are garbage
        _converted.clear()
    _converted[id(certificate)] = (certificate, converted)
    return converted


def qh3_configuration(config: Config, default_certificate: Certificate) -> QuicConfiguration:
    """The qh3 twin of configuration.quic_configuration (same keys, qh3's objects)."""
    from qh3.quic.logger import QuicFileLogger

    from .configuration import finish, server_options

    configuration = QuicConfiguration(**server_options(config))
    result: QuicConfiguration = finish(
        configuration,
        config,
        convert_certificate(default_certificate),
        CipherSuite,
        QuicFileLogger,
    )
    return result


# --- the QUIC connection ----------------------------------------------------------------------


class Qh3Connection(QuicConnection):
    """qh3's server connection with what EdgeQuicConnection adds to aioquic's."""

    def __init__(
        self,
        *,
        early_data: bool,
        cid_tag: int | None = None,
        cid_format: Any = None,
        max_streams: int = STREAM_LIMIT,
        choose_certificate: Callable[[str | None], Certificate] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.edge_early_data = early_data
        self.edge_choose_certificate = choose_certificate
        if cid_format is not None or cid_tag is not None:
            # qh3 hands host_cid to its core at the first datagram: the first CID is ours.
            self.host_cid = (
                cid_format.new(cid_tag) if cid_format is not None else tagged_cid(cid_tag or 0)
            )

    def _create_tls(self, remote_source_cid: bytes | None) -> Any:
        bridge = super()._create_tls(remote_source_cid)
        tls_context = bridge.tls
        if self.edge_choose_certificate is not None:
            _choose_certificate_by_sni(tls_context, self.edge_choose_certificate)
        if not self.edge_early_data:
            # As in engine.py: tickets without early_data, and a 0-RTT key never installed.
            tls_context._max_early_data = None
            install = tls_context.update_traffic_key_cb

            def no_early_data(direction: Any, epoch: Any, cipher_suite: Any, secret: bytes) -> None:
                if epoch == Epoch.ZERO_RTT:
                    tls_context.early_data_accepted = False
                    return
                install(direction, epoch, cipher_suite, secret)

            tls_context.update_traffic_key_cb = no_early_data
        return bridge

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Any]]:
        try:
            return super().datagrams_to_send(now)
        except QuicConnectionError as exc:
            # A failure inside qh3's core ends this connection, not the listener's loop
            # (seen with qh3 2.1.0 answering an aioquic client: "packet builder capacity
            # exhausted"); aioquic's datagrams_to_send never raises.
            log.warning("qh3 failed a QUIC connection: %s", exc.reason_phrase)
            self._state = QuicConnectionState.TERMINATED
            self._events.append(qh3_events.ConnectionTerminated(exc.error_code, None, str(exc)))
            return []

    def next_event(self) -> Any:
        event = super().next_event()
        if event is None:
            return None
        theirs = _QUIC_EVENTS.get(type(event))
        return theirs(**vars(event)) if theirs is not None else event

    # aioquic raises ValueError for a stream that is gone or finished in that direction,
    # and the adapter counts on it; qh3's core raises RuntimeError (QuicConnectionError).
    def reset_stream(self, stream_id: int, error_code: int) -> None:
        try:
            super().reset_stream(stream_id, error_code)
        except QuicConnectionError as exc:
            raise ValueError(str(exc)) from None

    def send_stream_data(self, stream_id: int, data: Any, end_stream: bool = False) -> None:
        if not data and not end_stream:
            # qh3's H3Connection sends the QPACK encoder and decoder streams' output after
            # every header section, almost always empty: two of a response's four calls
            # into qh3's send path did nothing.
            return
        try:
            super().send_stream_data(stream_id, data, end_stream)
        except QuicConnectionError as exc:
            if self._close_event is not None:
                return  # closing: aioquic too takes it and never sends it (a late GOAWAY)
            raise ValueError(str(exc)) from None

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        try:
            super().stop_stream(stream_id, error_code)
        except QuicConnectionError as exc:
            raise ValueError(str(exc)) from None

    # --- what engine.py's helpers read for aioquic ---

    def edge_buffered(self, stream_id: int) -> int | None:
        """Bytes qh3 holds for a stream not yet sent; None: no such stream (or finished).
        qh3 cannot tell unacknowledged bytes per stream: the congestion window bounds them."""
        core = self._core
        if core is None or not core.can_send_stream(stream_id):
            return None
        size: int = core.get_send_buffer_size(stream_id)
        return size

    def edge_delivered(self) -> bool:
        """Nothing left to send and nothing in flight: every response acknowledged. qh3 has
        no per-stream acknowledgement state, so this is for the whole connection."""
        core = self._core
        return core is None or (core.get_send_buffer_size() == 0 and core.bytes_in_flight == 0)

    def edge_terminated(self) -> bool:
        return self._state is QuicConnectionState.TERMINATED

    def edge_h3(self, max_field_section_size: int) -> Qh3H3Connection:
        return Qh3H3Connection(self, max_field_section_size)


def _choose_certificate_by_sni(
    tls_context: Context, choose: Callable[[str | None], Certificate]
) -> None:
    """As engine.py does for aioquic: read the SNI from a copy of the ClientHello, then set
    the certificate chosen for it before the handshake signs with the key."""
    handle = tls_context._server_handle_hello

    def handle_hello(input_buf: Any, *output_bufs: Any) -> None:
        try:
            whole = input_buf.data_slice(0, input_buf.capacity)
            server_name = pull_client_hello(type(input_buf)(data=whole)).server_name
        except Exception:  # malformed: qh3's own parse below reports it
            server_name = None
        leaf, chain, key = convert_certificate(choose(server_name))
        tls_context.certificate, tls_context.certificate_chain = leaf, chain
        tls_context.certificate_private_key = key
        handle(input_buf, *output_bufs)

    tls_context._server_handle_hello = handle_hello  # type: ignore[method-assign,assignment]


# --- HTTP/3 ----------------------------------------------------------------------------------

_HEADERS = bytes((FrameType.HEADERS,))  # frame types as one-byte varints
_DATA = bytes((FrameType.DATA,))


class _UnblockingEncoder:
    """engine.UnblockingEncoder for qh3's QPACK encoder (whose apply_settings takes the
    dynamic table capacity too): never risk a blocked stream."""

    def __init__(self, encoder: Any) -> None:
        self.encode = encoder.encode
        self.feed_decoder = encoder.feed_decoder
        self._apply = encoder.apply_settings

    def apply_settings(
        self, max_table_capacity: int, dyn_table_capacity: int, blocked_streams: int
    ) -> bytes:
        data: bytes = self._apply(
            max_table_capacity=max_table_capacity,
            dyn_table_capacity=dyn_table_capacity,
            blocked_streams=0,
        )
        return data


class Qh3H3Connection(H3Connection):
    """qh3's HTTP/3 connection with EdgeH3Connection's face: aioquic's events in and out,
    malformed and oversized requests as errors of their stream (`malformed`, `oversized`),
    and streams we stopped reading (`ignore`) dropped unparsed."""

    def __init__(self, quic: Qh3Connection, max_field_section_size: int = 0) -> None:
        self.edge_field_section_size = max_field_section_size  # read by _init_connection
        super().__init__(quic)
        self._encoder = _UnblockingEncoder(self._encoder)  # type: ignore[assignment]
        self.malformed: list[int] = []
        self.oversized: list[int] = []
        self.ignored: set[int] = set()
        # content-length per request stream, counted down by its DATA (qh3 does not check it)
        self.expected: dict[int, int] = {}

    def _init_connection(self) -> None:
        size = self.edge_field_section_size
        if size:  # advertised (RFC 9114 7.2.4.1) and enforced by the decoder
            self._max_field_section_size = size
            self._max_encoded_field_section_size = size * 4 + 32
            self._decoder = type(self._decoder)(
                self._max_table_capacity, self._blocked_streams, max_field_section_size=size
            )
        super()._init_connection()

    def ignore(self, stream_id: int) -> None:
        self.ignored.add(stream_id)

    def send_response(self, stream_id: int, headers: Any, body: bytes, end: bool) -> None:
        """A final response's HEADERS and its first DATA in one QUIC send, leaving the
        stream in the state qh3's send_headers then send_data would: those two take its
        Python send path twice. With qlog on, they run as they are (their frame events)."""
        stream = self._get_or_create_stream(stream_id)
        initial = stream.headers_send_state is HeadersState.INITIAL
        if not body or not initial or self._quic_logger is not None:
            self.send_headers(stream_id, headers, end and not body)
            if body:
                self.send_data(stream_id, body, end)
            return
        block = self._encode_headers(stream_id, headers)
        stream.headers_send_state = HeadersState.AFTER_HEADERS  # a final status: >= 200
        if end:
            stream.finish_sending()
        # Both frames in one join (qh3's encode_frame twice and a concatenation: 2.2 us
        # against 0.6 us, timeit).
        frames = b"".join(
            (_HEADERS, encode_uint_var(len(block)), block, _DATA, encode_uint_var(len(body)), body)
        )
        self._quic.send_stream_data(stream_id, frames, end)
        self._maybe_cleanup_stream(stream)

    def handle_event(self, event: Any) -> list[Any]:
        if self._is_done:
            return []
        kind = type(event)
        try:
            if kind is aioquic_events.StreamDataReceived:
                sid = event.stream_id
                if sid in self.ignored:
                    if event.end_stream:
                        self.ignored.discard(sid)
                        self._stream.pop(sid, None)
                    return []
                if sid % 4 == 0:
                    return self._request_data(event)
                # The encoder stream's inserts can release QPACK-blocked requests.
                return self._aioquic_events(self._receive_stream_data(event))
            if kind is aioquic_events.StreamReset:
                if event.stream_id in self.ignored:
                    self.ignored.discard(event.stream_id)
                    self._stream.pop(event.stream_id, None)
                    return []
                self._receive_stream_reset(event.stream_id, event.error_code)
            elif kind is aioquic_events.StopSendingReceived:
                self._receive_stop_sending(event.stream_id, event.error_code)
            elif kind is aioquic_events.DatagramFrameReceived:
                self._receive_datagram(event.data)
        except ProtocolError as exc:
            self._is_done = True
            self._quic.close(error_code=exc.error_code, reason_phrase=exc.reason_phrase)
        return []  # the adapter reads only headers and data

    def _request_data(self, event: Any) -> list[Any]:
        sid = event.stream_id
        try:
            if event.end_stream and sid not in self._stream and self._quic_logger is None:
                fast = self._whole_request(sid, event.data)
                if fast is not None:
                    return fast
            produced: list[Any] = self._receive_stream_data(event)
        except FieldSectionTooLarge:
            self.oversized.append(sid)
            self._stop(sid, reset=False)
            return []
        except MessageError:
            self._message_error(sid)
            return []
        return self._aioquic_events(produced)

    def _aioquic_events(self, produced: list[Any]) -> list[Any]:
        """qh3's request-stream events as aioquic's, after the content-length check: a
        stream failed there loses its events. Requests a QPACK block held come from the
        encoder stream's data, so the events are not all of one stream."""
        events: list[Any] = []
        for item in produced:
            sid = item.stream_id
            if sid in self.ignored:
                continue  # failed here, or stopped while blocked
            kind = type(item)
            if kind is qh3_h3_events.HeadersReceived:
                if not self._content_length(sid, item.headers, item.stream_ended):
                    events = [e for e in events if e.stream_id != sid]
                    continue
                events.append(
                    aioquic_h3_events.HeadersReceived(
                        headers=item.headers, stream_id=sid, stream_ended=item.stream_ended
                    )
                )
            elif kind is qh3_h3_events.DataReceived:
                left = self.expected.get(sid)
                if left is not None:
                    left -= len(item.data)
                    if left < 0 or (item.stream_ended and left):
                        self._message_error(sid)
                        events = [e for e in events if e.stream_id != sid]
                        continue
                    self.expected[sid] = left
                if item.stream_ended:
                    self.expected.pop(sid, None)
                events.append(
                    aioquic_h3_events.DataReceived(
                        data=item.data, stream_id=sid, stream_ended=item.stream_ended
                    )
                )
        return events

    def _whole_request(self, sid: int, data: bytes) -> list[Any] | None:
        """The fast path for the common request: a new stream whose one StreamDataReceived
        holds exactly one whole HEADERS frame and its end (a GET). qh3's own path parses
        it as any frame sequence, then checks the fields as our parse_request does again
        (a fifth of a hello-world response's server time, by py-spy). Here: the same
        events, with the stream left in the state qh3's path leaves it in (checked against
        that path by tests/test_qh3_engine.py). None: anything else, for qh3's path."""
        size = len(data)
        if size < 3 or data[0] != 0x01:  # FrameType.HEADERS, as a one-byte varint
            return None
        first = data[1]
        if first < 0x40:  # a one-byte length
            length, start = first, 2
        elif first < 0x80:  # a two-byte one
            length, start = ((first & 0x3F) << 8) | data[2], 3
        else:
            return None
        if not length or start + length != size or length > self._max_encoded_field_section_size:
            return None
        stream = self._get_or_create_stream(sid)
        stream.receiving_ended = True
        try:
            headers = self._decode_headers(sid, data, offset=start, length=length)
        except StreamBlocked:  # qh3 decodes it when the encoder stream catches up
            stream.blocked = True
            stream.blocked_frame_size = length
            self._blocked_stream_map[sid] = stream
            return []
        stream.headers_recv_state = HeadersState.AFTER_HEADERS
        # What qh3's field check refuses that fields.parse_request lets through: RFC 9114
        # 4.3.1's :authority, which both engines require (a Host field does not do).
        authority = scheme = None
        for name, value in headers:
            if name[:1] != b":":
                break
            if name == b":authority":
                authority = value
            elif name == b":scheme":
                scheme = value
        if authority is None or (not authority and scheme in (b"http", b"https")):
            self._message_error(sid)
            return []
        if not self._content_length(sid, headers, True):
            return []
        return [
            aioquic_h3_events.HeadersReceived(headers=headers, stream_id=sid, stream_ended=True)
        ]

    def _content_length(self, sid: int, headers: Any, ended: bool) -> bool:
        """RFC 9114 4.1.2: a content-length the body does not match makes the request
        malformed (aioquic checks it; qh3 does not). False: the stream was failed."""
        if sid in self.expected:  # trailers: the body must have been whole
            if self.expected.pop(sid):
                self._message_error(sid)
                return False
            return True
        for name, value in headers:
            if name == b"content-length":
                if not value.isdigit():
                    self._message_error(sid)
                    return False
                if ended and int(value):
                    self._message_error(sid)
                    return False
                if not ended:
                    self.expected[sid] = int(value)
                break
        return True

    def refuse(self, sid: int) -> None:
        """A request the adapter found malformed (fields.parse_request): failed as the
        ones qh3's own checks find, so the stream's state goes too."""
        self._message_error(sid)

    def _message_error(self, sid: int) -> None:
        self.malformed.append(sid)
        self._stop(sid, reset=True)

    def _stop(self, sid: int, *, reset: bool) -> None:
        """We read no more of this request stream; with `reset`, nor answer it."""
        self.ignored.add(sid)
        self.expected.pop(sid, None)
        stream = self._stream.pop(sid, None)
        finished = stream is not None and stream.receiving_ended
        quic = self._quic
        if reset:
            try:
                quic.reset_stream(sid, ErrorCode.H3_MESSAGE_ERROR)
            except ValueError:
                pass
        if not finished and reset:
            try:
                quic.stop_stream(sid, ErrorCode.H3_MESSAGE_ERROR)
            except ValueError:
                pass
