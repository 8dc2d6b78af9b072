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
from collections.abc import Callable
from typing import Any

import aioquic
from aioquic.buffer import Buffer  # type: ignore[attr-defined]
from aioquic.h3.connection import (
    ErrorCode,
    FrameType,
    H3Connection,
    H3Stream,
    MessageError,
    ProtocolError,
    Setting,
    stream_is_request_response,
)
from aioquic.h3.events import H3Event
from aioquic.quic.connection import Limit, QuicConnection, QuicConnectionId
from aioquic.quic.crypto import CryptoContext
from aioquic.quic.events import QuicEvent, StreamDataReceived
from aioquic.quic.events import StreamReset as QuicStreamReset
from aioquic.quic.recovery import QuicPacketRecovery
from aioquic.quic.stream import QuicStream, QuicStreamReceiver, QuicStreamSender
from aioquic.tls import CipherSuite, Context, Epoch, SessionTicket, pull_client_hello
from pylsqpack import DecompressionFailed, StreamBlocked

from .qpack import Blocked, QpackSizes
from .tickets import SealedTickets, TicketState, state_of

TESTED = "1.7.2"  # pyproject.toml caps aioquic below the next minor release
CID_LENGTH = 8
# TLS output of the Initial (ServerHello) and 1-RTT (NewSessionTicket) epochs: aioquic
# gives every epoch 16 KiB, which only the Handshake flight (the certificates) needs.
SMALL_CRYPTO_BUFFER = 4096
# What a connection in handshake costs here, measured with tracemalloc (about 86 KiB of
# Python objects, TLS and crypto state, buffers, the h3 connection): the endpoint's
# estimate for the half-open budget (quic_handshake_memory), before what the peer sent.
HANDSHAKE_COST = 96 * 1024
# Given a function reading the ClientHello's SNI: (certificate, chain, private key).
ChooseCertificate = Callable[["str | None | Callable[[], str | None]"], tuple[Any, list[Any], Any]]

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
    (QuicConnection._initialize, "_crypto_buffers"),
    (QuicConnection.__init__, "_session_ticket_fetcher"),
    (Context._server_handle_finished, "_new_session_ticket"),
    (Context, "_build_session_ticket"),
    (Context, "_server_handle_hello"),
    (Limit.__init__, "value"),
    (Limit.__init__, "sent"),
    (QuicStream.__init__, "sender"),
    (QuicStream.__init__, "receiver"),
    (QuicStreamReceiver.__init__, "is_finished"),
    (H3Stream.__init__, "headers_recv_state"),
    (H3Stream.__init__, "receiving_ended"),
    (H3Stream.__init__, "blocked"),
    (H3Connection.__init__, "_quic"),
    (QuicStreamSender.__init__, "_buffer_start"),
    (QuicStreamSender.__init__, "_buffer_stop"),
    (QuicStreamSender.__init__, "is_finished"),
    (Context.__init__, "_max_early_data"),
    (Context.__init__, "update_traffic_key_cb"),
    (Context.__init__, "early_data_accepted"),
    (H3Connection.__init__, "_local_control_stream_id"),
    (H3Connection.__init__, "_stream"),
    (H3Connection.__init__, "_encoder"),
    (H3Connection.__init__, "_decoder"),
    (H3Connection.__init__, "_max_table_capacity"),
    (H3Connection.__init__, "_local_decoder_stream_id"),
    (H3Connection, "_receive_stream_data"),
    (H3Connection, "_handle_request_or_push_frame"),
    (H3Connection, "_handle_request_or_push_end"),
    (H3Connection, "_get_local_settings"),
    # release(): the callbacks that are bound methods of the connection
    (QuicConnection.__init__, "_QuicConnection__frame_handlers"),
    (QuicConnection.__init__, "_loss"),
    (QuicConnection.__init__, "_cryptos"),
    (QuicConnection.__init__, "_cryptos_initial"),
    (QuicPacketRecovery.__init__, "_send_probe"),
    (CryptoContext.__init__, "_setup_cb"),
    (CryptoContext.__init__, "_teardown_cb"),
    (Context.__init__, "alpn_cb"),
    (Context.__init__, "get_session_ticket_cb"),
    (Context.__init__, "new_session_ticket_cb"),
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
    fields = getattr(QuicConnectionId, "__dataclass_fields__", {})
    for name in ("cid", "stateless_reset_token", "was_sent"):
        if name not in fields:
            missing.append(f"QuicConnectionId.{name}")
    if missing:
        raise ImportError(
            f"edgecorn cannot use aioquic {aioquic.__version__} (tested with {TESTED}): "
            f"internals it relies on are gone ({', '.join(missing)})"
        )


check()


class EdgeQuicConnection(QuicConnection):
    """aioquic's server connection, with 0-RTT offered in tickets only when enabled,
    and, with several workers, connection IDs whose first byte names the worker
    (see reuseport.py) so the kernel steers every packet to it.

    `reset_token` derives each connection ID's stateless reset token from the secret
    every worker shares (retry.py ResetTokens): aioquic draws random ones, which only
    this process could ever have used, so after a crash or restart nobody could reset."""

    def __init__(
        self,
        *,
        early_data: bool,
        cid_tag: int | None = None,
        cid_format: Any = None,
        max_streams: int = 128,
        choose_certificate: ChooseCertificate | None = None,
        reset_token: Callable[[bytes], bytes] | None = None,
        **kwargs: Any,
    ) -> None:
        self.edge_early_data = early_data
        self.edge_reset_token = reset_token
        self.edge_choose_certificate = choose_certificate
        self.edge_cid_tag = cid_tag
        self.edge_cid_format = cid_format  # quic/lb.py CidFormat, or None
        self.edge_cids: set[bytes] = set()
        super().__init__(**kwargs)
        # aioquic hard-codes 128 concurrent bidi streams and raises the limit by one per
        # finished stream, so this stays the number of concurrent requests.
        limit = self._local_max_streams_bidi
        limit.value = limit.sent = max_streams
        if cid_tag is not None or cid_format is not None:
            first = self._host_cids[0]
            first.cid = self._new_cid()
            self.host_cid = first.cid
            self._local_initial_source_connection_id = first.cid
        if reset_token is not None:  # sent in the transport parameters
            first = self._host_cids[0]
            first.stateless_reset_token = reset_token(first.cid)

    def _replenish_connection_ids(self) -> None:
        super()._replenish_connection_ids()
        tagged = self.edge_cid_tag is not None or self.edge_cid_format is not None
        reset_token = self.edge_reset_token
        for connection_id in self._host_cids:
            if connection_id.was_sent:
                continue  # announced: its CID and token are the peer's now
            if tagged and connection_id.cid not in self.edge_cids:
                connection_id.cid = self._new_cid()
            if reset_token is not None:
                connection_id.stateless_reset_token = reset_token(connection_id.cid)

    def _new_cid(self) -> bytes:
        """A CID in our format: the worker index for the BPF steering, and with QUIC-LB
        the server ID for the balancer in front (quic/lb.py)."""
        fmt = self.edge_cid_format
        tag = self.edge_cid_tag
        cid: bytes = fmt.new(tag) if fmt is not None else tagged_cid(tag or 0)
        self.edge_cids.add(cid)
        return cid

    def _initialize(self, peer_cid: bytes) -> None:
        super()._initialize(peer_cid)
        # A half-open connection is what an Initial flood is made of: 24 KiB less each.
        for epoch in (Epoch.INITIAL, Epoch.ONE_RTT):
            self._crypto_buffers[epoch] = Buffer(capacity=SMALL_CRYPTO_BUFFER)
        sealed = sealed_tickets(self._session_ticket_fetcher)
        if sealed is not None:  # before the SNI hook, which wraps _server_handle_hello
            seal_tickets(self.tls, sealed, _aioquic_ticket, pull_client_hello)
        if self.edge_choose_certificate is not None:
            _choose_certificate_by_sni(self.tls, self.edge_choose_certificate)
        if not self.edge_early_data:
            # Tickets then carry no early_data extension, so clients resume without 0-RTT.
            self.tls._max_early_data = None
        if not self.edge_early_data or sealed is not None:
            # aioquic's TLS accepts 0-RTT whenever a resumed ClientHello offers it (it never
            # checks the ticket): refuse the 0-RTT key, so EncryptedExtensions says "rejected".
            tls_context = self.tls
            install = tls_context.update_traffic_key_cb
            enabled = self.edge_early_data

            def no_early_data(direction: Any, epoch: Any, cipher_suite: Any, secret: bytes) -> None:
                if epoch == Epoch.ZERO_RTT and not (enabled and admit_early_data(tls_context)):
                    tls_context.early_data_accepted = False
                    return
                install(direction, epoch, cipher_suite, secret)

            tls_context.update_traffic_key_cb = no_early_data


def _choose_certificate_by_sni(tls_context: Context, choose: ChooseCertificate) -> None:
    """aioquic's server TLS has one certificate, and reads the ClientHello's SNI only
    inside _server_handle_hello, after the key has picked the signature algorithm. So
    the chooser may read the name first (from a copy of the message) and the certificate
    it chooses is set before aioquic goes on."""
    handle = tls_context._server_handle_hello

    def handle_hello(input_buf: Any, initial_buf: Any, handshake_buf: Any) -> None:
        def server_name() -> str | None:
            try:  # a copy: aioquic's own parse below reads input_buf from its start
                whole = input_buf.data_slice(0, input_buf.capacity)
                name: str | None = pull_client_hello(type(input_buf)(data=whole)).server_name
            except Exception:  # malformed: aioquic's own parse below reports it
                return None
            return name

        certificate, chain, key = choose(server_name)
        tls_context.certificate, tls_context.certificate_chain = certificate, chain
        tls_context.certificate_private_key = key
        handle(input_buf, initial_buf, handshake_buf)

    tls_context._server_handle_hello = handle_hello  # type: ignore[method-assign]


# --- sealed session tickets (quic_ticket_key_file; tickets.py) ---------------------------------


def sealed_tickets(fetcher: Any) -> SealedTickets | None:
    """The SealedTickets whose `pop` the endpoint handed the connection as its ticket
    fetcher, or None (the in-memory TicketStore: aioquic's own ticket handling stays)."""
    tickets = getattr(fetcher, "__self__", None)
    return tickets if isinstance(tickets, SealedTickets) else None


class _SealingContext:
    """Mixed into the engine's TLS Context class (as `tls_context.__class__`): the ticket
    bytes of the NewSessionTicket become the sealed session state, and a presented
    ticket is opened instead of looked up.

    The TLS Context makes the NewSessionTicket (random ticket bytes) and sends it in one
    method, with no hook in between but the assignment to `_new_session_ticket`: the
    property below sees it, derives the resumption secret the same way the Context does
    right after (`_build_session_ticket`; the key schedule does not move in between) and
    replaces the ticket bytes before they are sent."""

    edge_tickets: SealedTickets
    edge_make_ticket: Callable[[bytes, TicketState], Any]
    edge_parse_hello: Callable[[Any], Any]
    edge_opened: tuple[bytes, TicketState] | None
    edge_hello: Any  # the ClientHello's buffer, read again for its ticket age

    @property
    def _new_session_ticket(self) -> Any:
        return self.__dict__.get("edge_new_session_ticket")

    @_new_session_ticket.setter
    def _new_session_ticket(self, value: Any) -> None:
        if value is not None:
            ticket = self._build_session_ticket(value, [])  # type: ignore[attr-defined]
            value.ticket = self.edge_tickets.seal(state_of(ticket))
        self.__dict__["edge_new_session_ticket"] = value

    def _server_handle_hello(self, input_buf: Any, *output_bufs: Any) -> None:
        self.edge_hello = input_buf
        super()._server_handle_hello(input_buf, *output_bufs)  # type: ignore[misc]

    def edge_open(self, label: bytes) -> Any:
        state = self.edge_tickets.open(label)
        if state is None:
            return None  # not ours, or another key: a full handshake
        self.edge_opened = (label, state)
        return self.edge_make_ticket(label, state)


_SEALING_CLASSES: dict[type, type] = {}


def seal_tickets(
    tls_context: Any,
    tickets: SealedTickets,
    make_ticket: Callable[[bytes, TicketState], Any],
    parse_hello: Callable[[Any], Any],
) -> None:
    """Switch one server TLS Context (aioquic's or qh3's) to sealed tickets: its engine
    gives the SessionTicket maker and the ClientHello parser."""
    base = type(tls_context)
    sealing = _SEALING_CLASSES.get(base)
    if sealing is None:
        sealing = type(f"Sealing{base.__name__}", (_SealingContext, base), {})
        _SEALING_CLASSES[base] = sealing
    tls_context.__class__ = sealing
    tls_context.edge_tickets = tickets
    tls_context.edge_make_ticket = make_ticket
    tls_context.edge_parse_hello = parse_hello
    tls_context.edge_opened = None
    tls_context.edge_hello = None
    tls_context.get_session_ticket_cb = tls_context.edge_open


def admit_early_data(tls_context: Any) -> bool:
    """With sealed tickets, whether this worker's replay guard lets the resumed
    ClientHello's 0-RTT in (tickets.py EarlyDataGuard); True without them."""
    if not isinstance(tls_context, _SealingContext):
        return True
    opened, hello = tls_context.edge_opened, tls_context.edge_hello
    if opened is None or hello is None:
        return False
    label, state = opened
    try:  # a copy: the Context reads its own buffer on
        whole = hello.data_slice(0, hello.capacity)
        parsed = tls_context.edge_parse_hello(type(hello)(data=whole))
        identity, obfuscated_age = parsed.pre_shared_key.identities[0]
    except Exception:
        return False
    if identity != label:
        return False
    return tls_context.edge_tickets.guard.admit(label, state, obfuscated_age)


def _aioquic_ticket(label: bytes, state: TicketState) -> SessionTicket:
    return SessionTicket(
        age_add=state.age_add,
        cipher_suite=CipherSuite(state.cipher_suite),
        not_valid_after=state.not_valid_after,
        not_valid_before=state.not_valid_before,
        resumption_secret=state.resumption_secret,
        server_name=state.server_name,
        ticket=label,
        max_early_data_size=state.max_early_data_size,
    )


def tagged_cid(tag: int) -> bytes:
    return bytes([tag]) + os.urandom(CID_LENGTH - 1)


def buffered(quic: QuicConnection, stream_id: int) -> int | None:
    """Bytes aioquic holds for a stream (unsent or unacknowledged); None: no such stream."""
    if not isinstance(quic, QuicConnection):  # another engine (qh3_engine.py)
        held: int | None = quic.edge_buffered(stream_id)
        return held
    stream = quic._streams.get(stream_id)
    if stream is None:
        return None
    sender = stream.sender
    return sender._buffer_stop - sender._buffer_start


def requests_delivered(quic: QuicConnection) -> bool:
    """Every client-initiated bidirectional (request) stream's sending side is finished."""
    if not isinstance(quic, QuicConnection):  # another engine (qh3_engine.py)
        return bool(quic.edge_delivered())
    return all(stream.sender.is_finished for sid, stream in quic._streams.items() if sid % 4 == 0)


def tls_facts(quic: Any) -> tuple[int | None, bytes | None]:
    """The cipher suite a QUIC connection's TLS negotiated (None until the ClientHello is
    processed) and the certificate we sent, as DER: aioquic's and qh3's Python TLS
    contexts both keep them (for the ASGI `tls` extension)."""
    tls = getattr(quic, "tls", None)
    suite = getattr(getattr(tls, "key_schedule", None), "cipher_suite", None)
    certificate = getattr(tls, "certificate", None)
    der: bytes | None = None
    if certificate is not None:
        try:
            from cryptography.hazmat.primitives.serialization import Encoding

            der = certificate.public_bytes(Encoding.DER)
        except TypeError:  # qh3's own Certificate: DER without an argument
            der = certificate.public_bytes()
    return (None if suite is None else int(suite)), der


def terminated(quic: QuicConnection) -> bool:
    return quic._state.name == "TERMINATED"


def release(quic: Any) -> None:
    """A terminated aioquic connection: break its reference cycles, so that refcounting
    frees it instead of a full gc (about 350 objects a connection). aioquic keeps bound
    methods of the connection in its frame-handler table, its loss detector, its crypto
    contexts and its TLS context, and the hooks in `_initialize` are closures over the TLS
    context set on it. Once terminated nothing calls them: receive_datagram and
    datagrams_to_send return first, and the connection's timer is gone. (qh3: its own.)"""
    if not isinstance(quic, QuicConnection) or not terminated(quic):
        return
    state = vars(quic)
    state.pop("_QuicConnection__frame_handlers", None)
    loss = state.get("_loss")
    if loss is not None:
        loss._send_probe = _nothing
    for pairs in (state.get("_cryptos", {}), state.get("_cryptos_initial", {})):
        for pair in pairs.values():
            for context in (pair.recv, pair.send):
                context._setup_cb = context._teardown_cb = _nothing
    tls = state.get("tls")
    if tls is not None:
        vars(tls).pop("_server_handle_hello", None)  # the SNI hook; the class's method stays
        tls.alpn_cb = tls.get_session_ticket_cb = tls.new_session_ticket_cb = None
        tls.update_traffic_key_cb = _nothing


def _nothing(*args: Any) -> None:
    pass


def waiting_requests(quic: QuicConnection, h3: H3Connection) -> list[int]:
    """The peer's request streams whose HEADERS frame has not been read whole: part of
    it came, or nothing at all (opening a stream opens every lower one, RFC 9000 2.1),
    or its QPACK block waits on the encoder stream. Streams we stopped reading are left
    out. qh3 keeps its QUIC streams in its compiled core: there only streams that sent
    some bytes are seen."""
    if isinstance(quic, QuicConnection):  # aioquic: streams with no byte yet, too
        quiet = {s for s, st in quic._streams.items() if s % 4 == 0 and not st.receiver.is_finished}
    else:  # another engine (qh3_engine.py): only its h3 connection's streams are seen
        quiet = set()
    ignored: set[int] = getattr(h3, "ignored", set())
    waiting = []
    for sid in quiet | {s for s in h3._stream if s % 4 == 0}:
        stream = h3._stream.get(sid)
        if sid in ignored:
            continue
        if stream is None:
            waiting.append(sid)  # opened, nothing sent yet
        elif stream.headers_recv_state.name == "INITIAL" and (
            stream.blocked or not stream.receiving_ended  # (ended without: a MessageError)
        ):
            waiting.append(sid)
    return waiting


def abandon_head(h3: EdgeH3Connection, stream_id: int) -> None:
    """A request stream given up before its header section was decoded (header_timeout):
    a section blocked on the encoder stream is cancelled in our decoder and to the peer's
    encoder (RFC 9204 4.4.2), so neither keeps it; what still comes is dropped."""
    stream = h3._stream.get(stream_id)
    decoder_stream = getattr(h3, "_local_decoder_stream_id", None)
    if (
        isinstance(h3, EdgeH3Connection)
        and stream is not None
        and stream.blocked
        and decoder_stream is not None
    ):
        h3._quic.send_stream_data(decoder_stream, h3._decoder.cancel_stream(stream_id))
        stream.blocked = False
    h3.ignore(stream_id)


def control_stream_id(h3: H3Connection) -> int | None:
    """Our HTTP/3 control stream, where GOAWAY goes (aioquic sends none itself)."""
    return h3._local_control_stream_id


def h3_connection(quic: QuicConnection, max_field_section_size: int) -> H3Connection:
    """The HTTP/3 connection of this QUIC connection's engine."""
    if not isinstance(quic, QuicConnection):  # another engine (qh3_engine.py)
        h3: H3Connection = quic.edge_h3(max_field_section_size)
        return h3
    return EdgeH3Connection(quic, max_field_section_size)


class UnblockingEncoder:
    """pylsqpack's encoder (which cannot be subclassed), told the peer allows no blocked
    streams whatever it said: our header blocks then refer only to dynamic-table entries
    the peer has acknowledged, so a response never waits on the encoder stream (a lost or
    late encoder-stream packet, a client that never unblocks). RFC 9204 2.1.2 lets an
    encoder risk fewer blocked streams than the decoder allows."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.encode = encoder.encode
        self.feed_decoder = encoder.feed_decoder

    def apply_settings(self, max_table_capacity: int, blocked_streams: int) -> bytes:
        data: bytes = self.encoder.apply_settings(max_table_capacity, 0)
        return data


class SizedDecoder:
    """pylsqpack's decoder (which cannot be subclassed) with the peer's dynamic-table
    sizes followed beside it (qpack.py). EdgeH3Connection sizes a header block before it
    is decoded; one that blocks is kept and sized when it resumes, and refused then with
    QPACK_DECOMPRESSION_FAILED if it would expand past `stop` (aioquic's resume path has
    no stream-level way out)."""

    MAX_KEPT = 64  # blocked blocks kept; lsqpack itself allows 16 blocked streams

    def __init__(self, decoder: Any, sizes: QpackSizes, stop: int) -> None:
        self.decoder = decoder
        self.sizes = sizes
        self.stop = stop
        self.blocked: dict[int, bytes] = {}

    def feed_encoder(self, data: bytes) -> Any:
        self.sizes.feed_encoder(data)
        return self.decoder.feed_encoder(data)

    def feed_header(self, stream_id: int, data: bytes) -> Any:
        try:
            return self.decoder.feed_header(stream_id, data)
        except StreamBlocked:
            if not self.stop:  # no header limit: nothing to size against
                raise
            if len(self.blocked) >= self.MAX_KEPT:  # streams reset while blocked
                del self.blocked[next(iter(self.blocked))]
            self.blocked[stream_id] = data
            raise

    def resume_header(self, stream_id: int) -> Any:
        if not self.stop:
            return self.decoder.resume_header(stream_id)
        block = self.blocked.pop(stream_id, None)
        try:
            size = None if block is None else self.sizes.expanded_size(block, self.stop)
        except Blocked:
            size = None
        if block is None or (size is not None and size > self.stop):
            raise DecompressionFailed("header block would expand past the limit")
        return self.decoder.resume_header(stream_id)

    def cancel_stream(self, stream_id: int) -> bytes:
        self.blocked.pop(stream_id, None)
        data: bytes = self.decoder.cancel_stream(stream_id)
        return data


class EdgeH3Connection(H3Connection):
    """aioquic's HTTP/3 connection, where a malformed request is a stream error.

    aioquic closes the whole connection on any malformed message (a content-length that
    does not match the body, a missing pseudo-header); RFC 9114 4.1.2 makes that an
    error of its stream: reset it with H3_MESSAGE_ERROR, keep the connection. Streams
    we stopped reading (`ignore`) have what still arrives for them dropped unparsed.

    `max_field_section_size` is advertised (RFC 9114 7.2.4.1), and a HEADERS frame
    longer than it is given up as soon as its length is read (`oversized`): aioquic
    would hold the whole frame to decode it. A HEADERS frame within it whose QPACK block
    could expand past EXPANSION times the limit (references to large dynamic-table
    entries: a decompression bomb) is refused the same way before it is decoded."""

    # A request within the limit (name + value + 32 a field) sizes to at most 2.5x it
    # here (Huffman strings count 8/5 of their length, a static entry 80 bytes for at
    # least 32 counted): 4x never refuses one, and what is decoded stays within a few
    # times the limit. The exact count, and the 431, are then the adapter's.
    EXPANSION = 4

    def __init__(self, quic: QuicConnection, max_field_section_size: int = 0) -> None:
        self.max_field_section_size = max_field_section_size  # read by super().__init__
        super().__init__(quic)
        self._encoder = UnblockingEncoder(self._encoder)  # type: ignore[assignment]
        self.qpack = QpackSizes(self._max_table_capacity)
        self.expansion_stop = self.EXPANSION * max_field_section_size
        self._decoder = SizedDecoder(  # type: ignore[assignment]
            self._decoder, self.qpack, self.expansion_stop
        )
        self.malformed: list[int] = []  # request streams reset here, for the adapter
        self.oversized: list[int] = []  # request streams whose HEADERS frame is too long
        self.ignored: set[int] = set()

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        if self.max_field_section_size:
            settings[Setting.MAX_FIELD_SECTION_SIZE] = self.max_field_section_size
        return settings

    def send_response(
        self, stream_id: int, headers: list[tuple[bytes, bytes]], body: bytes, end: bool
    ) -> None:
        """A final response's HEADERS and first DATA (qh3_engine's sends them at once)."""
        self.send_headers(stream_id, headers, end and not body)
        if body:
            self.send_data(stream_id, body, end)

    def ignore(self, stream_id: int) -> None:
        """We no longer read this request stream (STOP_SENDING sent or stream reset)."""
        self.ignored.add(stream_id)

    def handle_event(self, event: QuicEvent) -> list[H3Event]:
        if type(event) is QuicStreamReset and event.stream_id in self.ignored:
            self.ignored.discard(event.stream_id)
            self._stream.pop(event.stream_id, None)
            return []
        return super().handle_event(event)

    def _receive_stream_data(self, event: StreamDataReceived) -> list[H3Event]:
        sid = event.stream_id
        if sid in self.ignored:
            if event.end_stream:
                self.ignored.discard(sid)
                self._stream.pop(sid, None)
            return []
        try:
            events = super()._receive_stream_data(event)
        except ProtocolError:
            # A frame error after the message went bad is that stream's, too.
            if sid not in self.ignored:
                raise
            events = []
        if sid in self.ignored and event.end_stream:
            self.ignored.discard(sid)  # nothing more can arrive for it
        elif self.max_field_section_size and stream_is_request_response(sid):
            stream = self._stream.get(sid)
            if (
                stream is not None
                and stream.frame_type == FrameType.HEADERS
                and (stream.frame_size or 0) > self.max_field_section_size
            ):
                stream.buffer = b""
                stream.frame_type = stream.frame_size = None
                self._refuse_section(sid)
        return events

    def _refuse_section(self, sid: int) -> None:
        """Give up a request's header section unread (the adapter answers 431)."""
        # The client's encoder may count on an acknowledgement for this section
        # (RFC 9204 4.4.2): say it is abandoned.
        decoder_stream = self._local_decoder_stream_id
        if decoder_stream is not None:
            decoder_stream_data = self._decoder.cancel_stream(sid)
            self._quic.send_stream_data(decoder_stream, decoder_stream_data)
        self.oversized.append(sid)
        self.ignored.add(sid)

    def _handle_request_or_push_frame(
        self, frame_type: int, frame_data: bytes | None, stream: Any, stream_ended: bool
    ) -> list[H3Event]:
        if stream.stream_id in self.ignored:
            return []
        if (
            frame_type == FrameType.HEADERS
            and frame_data is not None
            and self.expansion_stop
            and stream_is_request_response(stream.stream_id)
        ):
            try:
                size = self.qpack.expanded_size(frame_data, self.expansion_stop)
            except Blocked:
                size = None  # SizedDecoder sizes it when it resumes
            if size is not None and size > self.expansion_stop:
                self._refuse_section(stream.stream_id)
                return []
        try:
            return super()._handle_request_or_push_frame(
                frame_type, frame_data, stream, stream_ended
            )
        except MessageError:
            if not stream_is_request_response(stream.stream_id):
                raise
            self._message_error(stream)
            return []

    def _handle_request_or_push_end(self, stream: Any) -> list[H3Event]:
        if stream.stream_id in self.ignored:
            return []
        try:
            return super()._handle_request_or_push_end(stream)
        except MessageError:
            if not stream_is_request_response(stream.stream_id):
                raise
            self._message_error(stream)
            return []

    def refuse(self, sid: int) -> None:
        """A request the adapter found malformed (fields.parse_request): failed as the
        ones aioquic's own checks find, so the stream's state goes too."""
        stream = self._stream.get(sid)
        if stream is not None:
            self._message_error(stream)
            return
        try:
            self._quic.reset_stream(sid, ErrorCode.H3_MESSAGE_ERROR)
        except ValueError:
            pass

    def _message_error(self, stream: Any) -> None:
        sid = stream.stream_id
        self.malformed.append(sid)
        self.ignored.add(sid)
        finished = stream.receiving_ended
        stream.sending_ended = stream.receiving_ended = True  # aioquic then forgets it
        quic = self._quic
        try:
            quic.reset_stream(sid, ErrorCode.H3_MESSAGE_ERROR)
        except ValueError:
            pass  # our side already finished (the response went out)
        if not finished:
            quic.stop_stream(sid, ErrorCode.H3_MESSAGE_ERROR)
