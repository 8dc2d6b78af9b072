"""HTTP/2 adapter on top of h2: stream events out, the common commands in."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from .engines import H2Engine, h2_engine
from .events import Body, EndBody, Event, Headers, ProtocolError, Request, StreamReset
from .fields import malformed_trailers, parse_request, request_from_fields, response_fields

RFC_WINDOW = 65535  # SETTINGS_INITIAL_WINDOW_SIZE's default (RFC 9113 6.5.2)
RFC_TABLE_SIZE = 4096  # SETTINGS_HEADER_TABLE_SIZE's default
# RFC 9113 error codes the adapter picks itself (h2 reports most violations as PROTOCOL_ERROR).
PROTOCOL_ERROR = 0x1
SETTINGS_TIMEOUT = 0x4
FRAME_SIZE_ERROR = 0x6
COMPRESSION_ERROR = 0x9
GOAWAY = 0x7
CANCEL = 0x8
ENHANCE_YOUR_CALM = 0xB
GOAWAY_SIZE = 17  # frame header + last stream id + error code, no debug data
# Flood limits. Frames that cost us work but carry no request (PING and SETTINGS, which
# we must answer; PRIORITY; empty DATA) are budgeted per tick (a second), and the budget
# is refilled only while the peer reads what we write, so a peer that never reads cannot
# make us queue answers without end (CVE-2019-9512/9513/9515/9518).
CONTROL_FRAMES_PER_TICK = 1000
# Rapid reset (CVE-2023-44487): each HEADERS starts an app the peer cancels at once.
# Past this many cancelled streams, a connection that cancels most of what it asks for
# is closed; a browser cancelling a page's worth of requests stays well under it.
RESET_ALLOWANCE = 100


class H2Adapter:
    http_version = "2"

    def __init__(
        self,
        *,
        max_concurrent_streams: int,
        max_header_list_size: int,
        max_inbound_frame_size: int,
        max_requests: int,
        enable_connect_protocol: bool = True,
        engine: H2Engine | None = None,
        stall_ticks: int | None = None,
    ) -> None:
        # The h2-API library (h2 or jh2) comes from the config through the manager.
        self.h2 = engine or h2_engine("h2")
        # Inbound headers are checked here (fields.parse_request), in one pass and by
        # RFC 9113's rules on every engine: the engines' own checks cost ~10% of a
        # hello-world request, make a malformed request a connection error instead of a
        # stream error, and jh2's still want :scheme/:path on an ordinary CONNECT.
        # Outbound ones are ours, already lower-cased and checked by the connection.
        config = self.h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
        )
        self.conn = self.h2.H2Connection(config)
        codes, settings = self.h2.settings.SettingCodes, self.h2.settings.Settings
        # The window and HPACK table are named, not left to the engine: jh2's defaults are
        # a browser's (6 MiB stream windows, a 64 KiB table), h2's are RFC 9113's; every
        # engine must advertise the same, and flow control is what bounds a peer's input.
        self.conn.local_settings = settings(
            client=False,
            initial_values={
                codes.HEADER_TABLE_SIZE: RFC_TABLE_SIZE,
                codes.INITIAL_WINDOW_SIZE: RFC_WINDOW,
                codes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
                codes.MAX_HEADER_LIST_SIZE: max_header_list_size,
                codes.MAX_FRAME_SIZE: max_inbound_frame_size,
                codes.ENABLE_CONNECT_PROTOCOL: int(enable_connect_protocol),
            },
        )
        self.conn.decoder.max_allowed_table_size = RFC_TABLE_SIZE
        # Until the peer's SETTINGS arrive its values are RFC 9113's defaults; jh2 would
        # assume its own (a 6 MiB stream window), overrunning a peer that never names one.
        self.conn.remote_settings = settings(
            client=True,
            initial_values={
                codes.HEADER_TABLE_SIZE: RFC_TABLE_SIZE,
                codes.INITIAL_WINDOW_SIZE: RFC_WINDOW,
            },
        )
        self.max_requests = max_requests
        self.requests = 0
        # A header block (HEADERS + CONTINUATIONs) may not grow past what the decoded list
        # may be (HPACK rarely makes a block bigger than twice its fields) plus one frame.
        self.max_header_block = 2 * max_header_list_size + max_inbound_frame_size
        self.reset_allowance = max(RESET_ALLOWANCE, max_concurrent_streams)
        self.cancelled = 0  # open streams the peer reset
        self.control_frames = 0  # since the last tick at which the peer was reading
        # Streams whose response waits for the peer's flow-control window: ticks waited.
        # After `stall_ticks` the stream is reset (a zero-window peer holds no app forever).
        self.stall_ticks = stall_ticks
        self.stalled: dict[int, int] = {}
        self.open: set[int] = set()  # streams whose response is not finished
        self.head: set[int] = set()  # HEAD requests: the response has no body
        self.unacked: dict[int, int] = {}
        self.trailers: dict[int, Headers] = {}
        self.last_stream_id: int | None = None  # set once GOAWAY has been sent
        self.terminated = False
        self.settled = False  # the peer's first SETTINGS has arrived (RFC 9113 3.4)
        self.extra = b""  # frames we write ourselves (graceful GOAWAY), after h2's own

    def initiate(self, upgrade_settings: bytes | None = None) -> None:
        if upgrade_settings is None:
            self.conn.initiate_connection()
        else:
            self.conn.initiate_upgrade_connection(upgrade_settings)

    # --- state ---------------------------------------------------------------

    @property
    def backlog(self) -> int:
        return 0  # flow control bounds what a peer may send

    @property
    def closing(self) -> bool:
        return self.terminated or (self.last_stream_id is not None and not self.open)

    @property
    def idle(self) -> bool:
        return not self.open

    @property
    def settings_pending(self) -> bool:
        """The peer's preface (SETTINGS) has not come yet: the caller times it out."""
        return not self.settled and not self.terminated

    @property
    def header_block(self) -> object | None:
        """The first frame of a header block whose CONTINUATIONs have not all come, or
        None: the engine holds the frames until END_HEADERS, so no event tells of it
        (the caller times it out; the same frame object while it is the same block)."""
        pending = getattr(self.conn.incoming_buffer, "_headers_buffer", None)
        return pending[0] if pending else None

    def time_out(self) -> list[Event]:
        """No SETTINGS in time: it never acknowledged ours either (RFC 9113 6.5.3)."""
        return self._fail(SETTINGS_TIMEOUT, "no SETTINGS from the peer")

    def data_to_send(self) -> bytes:
        data: bytes = self.conn.data_to_send()
        if self.extra:
            data, self.extra = data + self.extra, b""
        return data

    # --- receiving -------------------------------------------------------------

    def upgrade_request(self, request: Request, body: bytes) -> list[Event]:
        """Stream 1 of an h2c upgrade: the HTTP/1.1 request that asked for it."""
        self.requests += 1
        self.open.add(1)
        events: list[Event] = [replace(request, stream_id=1, http_version="2")]
        if body:
            events.append(Body(1, body))
        events.append(EndBody(1))
        return events

    def receive_data(self, data: bytes) -> list[Event]:
        if self.terminated:
            return []
        try:
            h2_events = self.conn.receive_data(data)
        except self.h2.exceptions.ProtocolError as exc:
            return self._fail(_error_code(exc), str(exc) or type(exc).__name__)
        events: list[Event] = []
        control = 0
        requested: set[int] = set()  # streams whose request came in this batch
        cancelled: set[int] = set()  # ... and that the peer reset in it too
        for event in h2_events:
            if isinstance(event, self.h2.events.DataReceived):
                sid = event.stream_id
                if not event.data and getattr(event, "stream_ended", None) is None:
                    control += 1  # an empty DATA frame moves nothing
                padding = event.flow_controlled_length - len(event.data)
                if padding:
                    self.conn.acknowledge_received_data(padding, sid)
                if sid in self.open:
                    self.unacked[sid] = self.unacked.get(sid, 0) + len(event.data)
                    events.append(Body(sid, event.data))
                elif event.data:
                    self.conn.acknowledge_received_data(len(event.data), sid)
            elif isinstance(event, self.h2.events.RequestReceived):
                requested.add(event.stream_id)
                self._request(event, events)
            elif isinstance(event, self.h2.events.StreamEnded):
                # h2 reports the end separately after a HEADERS, DATA or trailers frame.
                trailers = self.trailers.pop(event.stream_id, None)
                if event.stream_id in self.open:
                    events.append(EndBody(event.stream_id, trailers))
            elif isinstance(event, self.h2.events.TrailersReceived):
                if malformed_trailers(event.headers) and event.stream_id in self.open:
                    self._refuse_malformed(event.stream_id)
                    events.append(StreamReset(event.stream_id))
                else:
                    self.trailers[event.stream_id] = list(event.headers)
            elif isinstance(event, self.h2.events.StreamReset):
                if event.stream_id in self.open and event.stream_id % 2:  # not our pushes
                    self.cancelled += 1
                self._drop(event.stream_id)
                if event.stream_id in requested:
                    cancelled.add(event.stream_id)
                else:
                    events.append(StreamReset(event.stream_id))
            elif isinstance(event, self.h2.events.ConnectionTerminated):
                self.terminated = True
                events.extend(StreamReset(sid) for sid in self.open)
                self.open.clear()
            elif isinstance(event, self.h2.events.RemoteSettingsChanged):
                self.settled = True
                control += 1
            elif isinstance(event, (self.h2.events.PingReceived, self.h2.events.PriorityUpdated)):
                control += 1
        self.control_frames += control
        if cancelled:
            # Asked for and cancelled in one read (rapid reset does that by the hundred):
            # no app is started for a request nobody waits for.
            events = [e for e in events if getattr(e, "stream_id", None) not in cancelled]
        flood = self._flood()
        if flood:
            return events + self._fail(ENHANCE_YOUR_CALM, flood)
        return events

    def _flood(self) -> str:
        """Why the peer's frames so far are a flood, or "" (checked once per read)."""
        if self.control_frames > CONTROL_FRAMES_PER_TICK:
            return f"{self.control_frames} PING/SETTINGS/PRIORITY/empty DATA frames in a tick"
        if self.cancelled > self.reset_allowance and 2 * self.cancelled > self.requests:
            return f"rapid reset: {self.cancelled} of {self.requests} streams cancelled"
        # h2 keeps a header block's frames until END_HEADERS (up to 64 of them, each up
        # to the frame size): cut an endless CONTINUATION chain at the header list limit.
        pending = getattr(self.conn.incoming_buffer, "_headers_buffer", None)
        if pending and sum(len(frame.data) for frame in pending) > self.max_header_block:
            return "header block (CONTINUATION) larger than the header list limit"
        return ""

    def tick(self, peer_reading: bool) -> list[Event]:
        """Once a second: a new control-frame budget if the peer reads what we write, and
        the streams whose response has waited too long for a window are reset."""
        if peer_reading:
            self.control_frames = 0
        events: list[Event] = []
        for sid, ticks in list(self.stalled.items()):
            if self.sendable(sid) != 0:
                self.stalled.pop(sid, None)  # the window opened, or the stream is gone
                continue
            self.stalled[sid] = ticks + 1
            if self.stall_ticks is not None and ticks + 1 >= self.stall_ticks:
                self.conn.reset_stream(sid, CANCEL)
                self._drop(sid)
                events.append(StreamReset(sid))
        return events

    def _fail(self, code: int, message: str) -> list[Event]:
        """A connection error: GOAWAY with `code`, every open stream reset."""
        self.terminated = True
        queued: bytes = self.conn.data_to_send()
        if len(queued) >= GOAWAY_SIZE and queued[3 - GOAWAY_SIZE] == GOAWAY:
            # h2 queued its own GOAWAY (always PROTOCOL_ERROR) as it raised: ours replaces it.
            queued = queued[:-GOAWAY_SIZE]
        self.conn.close_connection(error_code=code)
        self.extra = queued + self.conn.data_to_send()  # no graceful GOAWAY after this one
        events: list[Event] = [ProtocolError(message)]
        events.extend(StreamReset(sid) for sid in self.open)
        self.open.clear()
        return events

    def _request(self, event: Any, events: list[Event]) -> None:
        sid = event.stream_id
        if self.last_stream_id is not None and sid > self.last_stream_id:
            # After our GOAWAY: the peer retries it elsewhere (RFC 9113 6.8).
            try:
                self.conn.reset_stream(sid, self.h2.errors.ErrorCodes.REFUSED_STREAM)
            except self.h2.exceptions.ProtocolError:
                pass  # already closed from the peer's side
            return
        parsed = parse_request(sid, event.headers, "2", bool(self.conn.remote_settings.enable_push))
        if isinstance(parsed, str):
            # RFC 9113 8.1.1: a stream error. It counts as a request the peer cancelled,
            # so a flood of them meets the rapid-reset rule.
            self.requests += 1
            self.cancelled += 1
            self._refuse_malformed(sid)
            return
        request = parsed[0]
        self.open.add(sid)
        self.requests += 1
        if request.method == "HEAD":
            self.head.add(sid)
        events.append(request)
        if self.requests >= self.max_requests:
            self.goaway(sid)

    def _refuse_malformed(self, stream_id: int) -> None:
        self.conn.reset_stream(stream_id, PROTOCOL_ERROR)
        self._drop(stream_id)
        self.trailers.pop(stream_id, None)

    def resume(self) -> list[Event]:
        return []

    def want_body(self, stream_id: int) -> None:
        pass

    def ack_data(self, stream_id: int, size: int) -> None:
        left = self.unacked.get(stream_id)
        if left is None:
            return
        size = min(size, left)
        self.unacked[stream_id] = left - size
        if size:
            self.conn.acknowledge_received_data(size, stream_id)

    # --- sending ---------------------------------------------------------------

    def send_informational(self, stream_id: int, status: int, headers: Headers) -> None:
        if stream_id in self.open:
            self.conn.send_headers(stream_id, response_fields(status, headers))

    def send_response(
        self, stream_id: int, status: int, headers: Headers, body: bytes, end: bool
    ) -> None:
        if stream_id not in self.open:
            return
        self.conn.send_headers(
            stream_id, response_fields(status, headers), end_stream=end and not body
        )
        if body or end:
            self.send_data(stream_id, body, end) if body else self._drop(stream_id)

    def send_data(self, stream_id: int, data: bytes, end: bool) -> None:
        """Callers size `data` with `sendable` first; frames are cut here."""
        if stream_id not in self.open:
            return
        if stream_id in self.head:
            data = b""
        size = self.conn.max_outbound_frame_size
        last = len(data) - size
        for start in range(0, len(data), size):
            self.conn.send_data(
                stream_id, data[start : start + size], end_stream=end and start >= last
            )
        if end:
            if not data:
                self.conn.end_stream(stream_id)
            self._drop(stream_id)

    def send_trailers(self, stream_id: int, headers: Headers) -> None:
        if stream_id in self.open:
            trailers = [(name.lower(), value) for name, value in headers]
            self.conn.send_headers(stream_id, trailers, end_stream=True)
            self._drop(stream_id)

    def sendable(self, stream_id: int) -> int:
        if stream_id not in self.open:
            return -1
        try:
            window: int = self.conn.local_flow_control_window(stream_id)
        except self.h2.exceptions.StreamClosedError:
            return -1
        if window > 0:
            self.stalled.pop(stream_id, None)
        elif stream_id not in self.stalled:
            self.stalled[stream_id] = 0  # a response waits for the peer's window
        return window

    def push(self, stream_id: int, fields: Headers) -> list[Event]:
        """A PUSH_PROMISE on `stream_id` for the GET in `fields` (RFC 9113 8.4), and that
        request as events; none where no push may be made: the client disabled push or is
        at its stream limit, the stream is itself pushed or done, or we are going away."""
        conn = self.conn
        if (
            stream_id not in self.open
            or not stream_id % 2
            or self.last_stream_id is not None
            or self.terminated
            or not conn.remote_settings.enable_push
            or self._pushing() >= conn.remote_settings.max_concurrent_streams
        ):
            return []
        promised = conn.get_next_available_stream_id()
        try:
            conn.push_stream(stream_id, promised, fields)
        except self.h2.exceptions.ProtocolError:
            return []
        request, _ = request_from_fields(promised, fields, "2")
        self.open.add(promised)
        return [request, EndBody(promised)]

    def _pushing(self) -> int:
        """Our pushed streams not yet finished, promised ones included: h2 counts only
        those already answered against the client's limit (reserved streams do not count,
        RFC 9113 5.1.2), so unanswered promises would let the answers overrun it."""
        return sum(1 for sid in self.open if not sid % 2)

    def reset(self, stream_id: int) -> None:
        if stream_id in self.open:
            self.conn.reset_stream(stream_id, self.h2.errors.ErrorCodes.INTERNAL_ERROR)
            self._drop(stream_id)

    def goaway(self, last_stream_id: int | None = None) -> None:
        if self.last_stream_id is not None or self.terminated:
            return
        if last_stream_id is None:
            last_stream_id = self.conn.highest_inbound_stream_id
        self.last_stream_id = last_stream_id
        # Not h2's close_connection(): that moves h2 to CLOSED, which refuses to finish
        # the streams a graceful GOAWAY promises to answer (RFC 9113 6.8).
        frame = self.h2.GoAwayFrame(0, last_stream_id=last_stream_id, error_code=0)
        self.extra += frame.serialize()

    def release(self) -> None:
        # h2's and jh2's H2Connection keeps a table of its own bound methods to dispatch
        # received frames: a cycle holding the whole connection (settings, HPACK tables,
        # streams) until a full gc. Only receive_data uses it, and no bytes come now.
        vars(self.conn).pop("_frame_dispatch_table", None)

    def _drop(self, stream_id: int) -> None:
        self.open.discard(stream_id)
        self.head.discard(stream_id)
        self.stalled.pop(stream_id, None)
        left = self.unacked.pop(stream_id, 0)
        if left:
            # Give the connection window back for data nobody will read.
            self.conn.acknowledge_received_data(left, stream_id)


def _error_code(exc: BaseException) -> int:
    """The RFC 9113 code for what h2 (or jh2) raised. Both name their own code where they
    know it; an HPACK failure underneath is a COMPRESSION_ERROR (RFC 7541 / RFC 9113
    4.3), and hyperframe's refusal of a SETTINGS ACK with a payload a FRAME_SIZE_ERROR
    (RFC 9113 6.5). The libraries only say PROTOCOL_ERROR for both."""
    code: int = int(getattr(exc, "error_code", 0) or 1)
    if code != 1:
        return code
    link: BaseException | None = exc
    while link is not None:
        if any(cls.__name__ == "HPACKError" for cls in type(link).__mro__):
            return COMPRESSION_ERROR
        if type(link).__name__ == "InvalidDataError" and str(link).startswith(
            "SETTINGS ack frame must not have payload"  # hyperframe's words, in both
        ):
            return FRAME_SIZE_ERROR
        link = link.__cause__ or link.__context__
    return code
