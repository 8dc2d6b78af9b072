"""`quic_engine: auto | aioquic | qh3`: which engine a configuration gets, and why not qh3.

The HTTP/3 end-to-end suite itself runs on both engines (tests/conftest.py, QUIC_ENGINES).
"""

from __future__ import annotations

from typing import Any

import pytest
from qh3.h3.connection import FrameType, encode_frame

from edgecorn.config import Config, ConfigError
from edgecorn.quic import qh3_engine
from edgecorn.quic.worker import choose_engine


def test_auto_keeps_aioquic_while_qh3_has_a_known_defect() -> None:
    import qh3

    engine, why = choose_engine(Config())
    if qh3.__version__ in qh3_engine.KNOWN_DEFECTS:
        assert engine == "aioquic" and "Initial" in why
    else:
        assert (engine, why) == ("qh3", "")
    assert choose_engine(Config(quic_engine="qh3")) == ("qh3", "")
    assert choose_engine(Config(quic_engine="aioquic")) == ("aioquic", "")


@pytest.mark.parametrize(
    "options, words",
    [
        ({"workers": 4}, "NEW_CONNECTION_ID"),
        ({"quic_lb_server_id": "0a0b"}, "QUIC-LB"),
        ({"h3_max_concurrent_streams": 10}, "h3_max_concurrent_streams"),
    ],
)
def test_what_qh3_cannot_do(options: dict[str, object], words: str) -> None:
    engine, why = choose_engine(Config(**options))  # auto: falls back, saying why
    assert engine == "aioquic" and "qh3 not used" in why and words in why
    with pytest.raises(ConfigError) as info:  # explicit: refused, naming the key
        choose_engine(Config(quic_engine="qh3", **options))
    assert info.value.key == "quic_engine" and words in str(info.value)


def test_events_reach_the_adapter_as_aioquic_classes() -> None:
    from aioquic.quic import events as theirs
    from qh3.quic import events as ours

    for qh3_class, aioquic_class in qh3_engine._QUIC_EVENTS.items():
        assert getattr(ours, qh3_class.__name__) is qh3_class
        assert getattr(theirs, qh3_class.__name__) is aioquic_class
    assert qh3_engine.missing_hooks(qh3_engine.HOOKS) == []


# --- the request fast path (Qh3H3Connection._whole_request) against qh3's own path -----------


class FakeQuic:
    """What the HTTP/3 adapter and qh3's H3Connection use of a QUIC connection: events
    queued by the test, and a record of what the connection is told to do."""

    def __init__(self, fast: bool) -> None:
        from types import SimpleNamespace

        self.configuration = SimpleNamespace(is_client=False)
        self._quic_logger = None
        self.fast = fast
        self.taken: list[int] = []  # streams the fast path answered
        self.next_uni = 3
        self.events: list[object] = []
        self.calls: list[tuple[object, ...]] = []

    def edge_h3(self, max_field_section_size: int) -> Any:
        h3: Any = qh3_engine.Qh3H3Connection(self, max_field_section_size)  # type: ignore[arg-type]
        whole = h3._whole_request

        def whole_request(sid: int, data: bytes) -> Any:
            result = whole(sid, data) if self.fast else None
            if result is not None:
                self.taken.append(sid)
            return result

        h3._whole_request = whole_request
        return h3

    def handle_timer(self, now: float) -> None:
        pass

    def next_event(self) -> object:
        return self.events.pop(0) if self.events else None

    def get_next_available_stream_id(self, is_unidirectional: bool = False) -> int:
        self.next_uni += 4
        return self.next_uni - 4

    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self.calls.append(("send", stream_id, bytes(data), end_stream))

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        self.calls.append(("reset", stream_id, error_code))

    def stop_stream(self, stream_id: int, error_code: int) -> None:
        self.calls.append(("stop", stream_id, error_code))

    def close(self, error_code: int = 0, reason_phrase: str = "") -> None:
        self.calls.append(("close", error_code))


GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"example.com")]
GET += [(b":path", b"/"), (b"user-agent", b"x")]


def _adapters() -> tuple[Any, Any]:
    """Two HTTP/3 adapters on fake connections; only the first may take the fast path."""
    from aioquic.quic.events import ProtocolNegotiated

    from edgecorn.quic.h3 import H3Adapter

    adapters = []
    for fast in (True, False):
        quic = FakeQuic(fast)
        quic.events.append(ProtocolNegotiated(alpn_protocol="h3"))
        adapter = H3Adapter(quic, max_requests=1000, max_header_list_size=65536)  # type: ignore[arg-type]
        assert adapter.handle_timer(0.0) == [] and adapter.h3 is not None
        adapters.append(adapter)
    return adapters[0], adapters[1]


def _feed(adapter: Any, *events: object) -> object:
    """What the adapter emits for these QUIC events, and where it and the engine end."""
    adapter.quic.events.extend(events)
    out = adapter.handle_timer(0.0)
    h3 = adapter.h3
    return (
        out,
        sorted(adapter.open),
        {sid: dict(vars(stream)) for sid, stream in h3._stream.items()},
        sorted(h3._blocked_stream_map),
        h3.malformed,
        h3.oversized,
        sorted(h3.ignored),
        h3.expected,
        adapter.quic.calls,
    )


@pytest.mark.parametrize(
    "fields",
    [
        GET,
        [field for field in GET if field[0] != b":authority"] + [(b"host", b"example.com")],
        [(b":authority", b"") if name == b":authority" else (name, value) for name, value in GET],
        GET + [(b"content-length", b"3")],  # a body it does not have
        GET + [(b":method", b"GET")],  # a pseudo-header after a regular field
        GET[:1] + GET,  # a duplicate :method
        GET + [(b"User-Agent", b"x")],  # a name not in lower case
        GET + [(b":foo", b"x")],
        GET + [(b"connection", b"close")],  # refused by fields.parse_request alone
        [(b":method", b"CONNECT"), (b":authority", b"example.com:443")],
        [(b":method", b"GET"), (b":authority", b"example.com"), (b":path", b"/")],
        GET + [(b"x-long", b"v" * 300)],  # a two-byte frame length
    ],
)
def test_the_request_fast_path_ends_where_qh3s_own_path_does(
    fields: list[tuple[bytes, bytes]],
) -> None:
    """A GET whose HEADERS frame and FIN come in one piece skips qh3's frame parser and
    field check; the adapter's output and the engine's state must not tell the difference."""
    from aioquic.quic.events import StreamDataReceived
    from qh3._hazmat import QpackEncoder

    fast, slow = _adapters()
    _, block = QpackEncoder().encode(0, fields)  # static table only: never blocked
    data = encode_frame(FrameType.HEADERS, block)
    event = StreamDataReceived(data=data, end_stream=True, stream_id=0)
    assert _feed(fast, event) == _feed(slow, event)
    assert fast.quic.taken == [0] and slow.quic.taken == []


def test_a_qpack_blocked_request_reaches_the_adapter_once_released_on_both_paths() -> None:
    """The field section refers to a dynamic-table entry whose insert comes later on the
    peer's encoder stream: blocked, then decoded by qh3 when the insert arrives."""
    from aioquic.quic.events import StreamDataReceived
    from qh3._hazmat import QpackEncoder

    fast, slow = _adapters()
    encoder = QpackEncoder()
    setup = encoder.apply_settings(
        max_table_capacity=4096, dyn_table_capacity=4096, blocked_streams=16
    )
    encoder.encode(0, GET)
    inserts, block = encoder.encode(4, GET)  # the second use inserts into the table
    assert inserts and block[0] != 0  # a Required Insert Count: it can block
    request = encode_frame(FrameType.HEADERS, block)
    events = [
        StreamDataReceived(data=request, end_stream=True, stream_id=4),
        StreamDataReceived(data=b"\x02" + setup + inserts, end_stream=False, stream_id=2),
    ]
    states = [(_feed(fast, event), _feed(slow, event)) for event in events]
    assert all(mine == theirs for mine, theirs in states)
    assert fast.quic.taken == [4]
    # Held, then released by the inserts: the request reaches the adapter (it did not
    # before, as qh3's events from the encoder stream were passed on unconverted).
    assert states[0][0][0] == []  # type: ignore[index]
    request = states[1][0][0][0]  # type: ignore[index]
    assert (request.stream_id, request.method, request.authority) == (4, "GET", b"example.com")
