"""HTTP/2 connection errors carry the code RFC 9113 / RFC 7541 name (issue 14).

Sans-IO: raw frames built with struct and hpack go into the adapter, the GOAWAY it
answers with is read back from its bytes. Each case runs on both h2 engines (h2, jh2).
One end-to-end case: a preface with no SETTINGS after it is closed with a GOAWAY.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest

from edgecorn.protocol.engines import h2_engine, installed
from edgecorn.protocol.events import ProtocolError, Request
from edgecorn.protocol.h2 import COMPRESSION_ERROR, FRAME_SIZE_ERROR, SETTINGS_TIMEOUT, H2Adapter

MAGIC = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ENGINES = ["h2"] + (["jh2"] if installed("jh2") else [])
PROTOCOL_ERROR = 0x1


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream_id)
        + payload
    )


SETTINGS = frame(0x4, 0, 0, b"")
# :method GET, :scheme https, :path / (static indexes 2, 7, 4), :authority x (literal)
GOOD_FIELDS = b"\x82\x87\x84\x41\x01x"


def headers(block: bytes, stream_id: int = 1) -> bytes:
    return frame(0x1, 0x5, stream_id, block)  # END_STREAM | END_HEADERS


def adapter(engine: str) -> H2Adapter:
    proto = H2Adapter(
        max_concurrent_streams=100,
        max_header_list_size=65536,
        max_inbound_frame_size=16384,
        max_requests=1000,
        engine=h2_engine(engine),
    )
    proto.initiate()
    proto.data_to_send()
    return proto


def goaway_codes(data: bytes) -> list[int]:
    codes = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        if data[3] == 0x7:
            codes.append(int.from_bytes(data[13:17], "big"))
        data = data[9 + length :]
    return codes


def feed(engine: str, data: bytes) -> tuple[list[Any], list[int]]:
    proto = adapter(engine)
    events = proto.receive_data(MAGIC + SETTINGS + data)
    return events, goaway_codes(proto.data_to_send())


@pytest.mark.parametrize("engine", ENGINES)
def test_good_request_is_no_error(engine: str) -> None:
    events, codes = feed(engine, headers(GOOD_FIELDS))
    assert isinstance(events[0], Request) and codes == []


@pytest.mark.parametrize("engine", ENGINES)
def test_settings_ack_with_payload_is_frame_size_error(engine: str) -> None:
    events, codes = feed(engine, frame(0x4, 0x1, 0, b"\x00\x01\x00\x00\x10\x00"))
    assert codes == [FRAME_SIZE_ERROR] and isinstance(events[0], ProtocolError)


HPACK_FAILURES = {
    "index 0": b"\x80",
    "index beyond both tables": b"\xff\x7f",  # 127 + 127
    "table size update above the setting": b"\x3f\xe1\x7f" + GOOD_FIELDS,  # 16384 > 4096
    "Huffman string with EOS": b"\x82\x87\x84\x41\x84\xff\xff\xff\xff",
}
# What only h2's decoder enforces; jh2's accepts these blocks (and then fails or serves
# the request on other grounds), so only h2 is held to the code.
H2_ONLY_HPACK_FAILURES = {
    "table size update after a field": b"\x82\x20\x87\x84\x41\x01x",
    "Huffman padding of zeros": b"\x82\x87\x84\x41\x81\x00",  # 8 zero bits
}


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("case", sorted(HPACK_FAILURES))
def test_hpack_failure_is_compression_error(engine: str, case: str) -> None:
    events, codes = feed(engine, headers(HPACK_FAILURES[case]))
    assert codes == [COMPRESSION_ERROR], (case, events)


@pytest.mark.parametrize("case", sorted(H2_ONLY_HPACK_FAILURES))
def test_stricter_hpack_failure_is_compression_error(case: str) -> None:
    events, codes = feed("h2", headers(H2_ONLY_HPACK_FAILURES[case]))
    assert codes == [COMPRESSION_ERROR], (case, events)


@pytest.mark.parametrize("engine", ENGINES)
def test_other_violations_keep_their_code(engine: str) -> None:
    # DATA on stream 0: PROTOCOL_ERROR; a PING of 7 bytes: FRAME_SIZE_ERROR (h2's own).
    assert feed(engine, frame(0x0, 0, 0, b"x"))[1] == [PROTOCOL_ERROR]
    assert feed(engine, frame(0x6, 0, 0, b"\x00" * 7))[1] == [FRAME_SIZE_ERROR]


@pytest.mark.parametrize("engine", ENGINES)
def test_preface_without_settings_times_out(engine: str) -> None:
    proto = adapter(engine)
    assert proto.receive_data(MAGIC) == [] and proto.settings_pending
    events = proto.time_out()  # what the connection's tick does after header_timeout
    assert goaway_codes(proto.data_to_send()) == [SETTINGS_TIMEOUT] and proto.closing
    assert isinstance(events[0], ProtocolError)
    settled = adapter(engine)
    settled.receive_data(MAGIC + SETTINGS)
    assert not settled.settings_pending


def test_preface_without_settings_gets_goaway_end_to_end(server_factory: Any) -> None:
    server = server_factory.start(config="header_timeout: 1\n")
    with socket.create_connection(("127.0.0.1", server.insecure_port), timeout=10) as sock:
        sock.sendall(MAGIC)
        data = b""
        while len(data) < 1 << 16:
            part = sock.recv(65536)  # bounded by the socket timeout
            if not part:
                break
            data += part
    assert goaway_codes(data) == [SETTINGS_TIMEOUT], data
