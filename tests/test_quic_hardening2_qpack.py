"""QPACK decompression bombs (issue 14): a header block of one-byte references to a
4 KiB dynamic-table entry decodes to ~4 KiB per byte. pylsqpack expands a whole block
before anything can count it, so a 16 KiB block meant ~64 MiB for a moment. It is now
sized from the encoder stream before it is decoded (edgecorn/quic/qpack.py) and refused:
431 when it can be sized at once, QPACK_DECOMPRESSION_FAILED when it was blocked.

Sans-IO: an aioquic client in memory whose encoder stream and HEADERS frames are written
by hand; tracemalloc measures the server's peak while the bomb goes in."""

from __future__ import annotations

import tracemalloc

import pylsqpack
import pytest
from aioquic.h3.connection import ErrorCode
from aioquic.quic.configuration import QuicConfiguration

from edgecorn.quic.configuration import quic_configuration
from edgecorn.quic.qpack import Blocked, QpackSizes
from tests.support.quic_peer import server_config
from tests.test_quic_adapter import Pair, requests

LIMIT = 16384  # h3_max_header_list_size: HEADERS frames up to this are read
ENTRY_VALUE = 4000  # name "x" + this + 32 fits the 4096-byte table we advertise
REFERENCES = 15000  # one byte each: a block under LIMIT decoding to ~60 MiB


@pytest.fixture(scope="module")
def configuration(certs: tuple[str, str, str]) -> QuicConfiguration:
    return quic_configuration(server_config(certs))


def qpack_int(value: int, prefix: int, first: int = 0) -> bytes:
    """RFC 7541 5.1, with `first` the bits above the prefix."""
    mask = (1 << prefix) - 1
    if value < mask:
        return bytes([first | value])
    out = [first | mask]
    value -= mask
    while value >= 128:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def varint(value: int) -> bytes:
    if value < 64:
        return bytes([value])
    if value < 16384:
        return (value | 0x4000).to_bytes(2, "big")
    return (value | 0x80000000).to_bytes(4, "big")


# encoder stream: table capacity 4096, then one entry "x: aaaa..." (literal name, no Huffman)
INSERT = (
    qpack_int(4096, 5, 0x20)
    + qpack_int(1, 5, 0x40)
    + b"x"
    + qpack_int(ENTRY_VALUE, 7)
    + b"a" * ENTRY_VALUE
)
# :method GET, :scheme https, :path / (static entries), :authority (static name) localhost
PSEUDO = bytes([0xC0 | 17, 0xC0 | 23, 0xC0 | 1]) + qpack_int(0, 4, 0x50) + qpack_int(9, 7)
PSEUDO += b"localhost"


def bomb_block() -> bytes:
    """Required Insert Count 1 (encoded 2, RFC 9204 4.5.1.1), Base 1, then the pseudo
    headers and REFERENCES indexed field lines for dynamic entry 0 (relative index 0)."""
    return b"\x02\x00" + PSEUDO + b"\x80" * REFERENCES


def send_headers_frame(pair: Pair, block: bytes) -> int:
    peer = pair.peer
    sid = peer.quic.get_next_available_stream_id()
    peer.quic.send_stream_data(sid, b"\x01" + varint(len(block)) + block, end_stream=True)
    return sid


def send_encoder(pair: Pair, data: bytes) -> None:
    peer = pair.peer
    peer.quic.send_stream_data(peer.h3._local_encoder_stream_id, data)


def peak_while(pair: Pair) -> int:
    tracemalloc.start()
    try:
        pair.pump()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_bomb_is_refused_with_431_before_it_is_decoded(
    configuration: QuicConfiguration, cafile: str
) -> None:
    pair = Pair(configuration, cafile, max_header_list_size=LIMIT).start()
    send_encoder(pair, INSERT)
    pair.pump()
    block = bomb_block()
    assert len(block) < LIMIT
    sid = send_headers_frame(pair, block)
    peak = peak_while(pair)
    assert peak < 8 << 20, f"peak {peak >> 20} MiB while the bomb went in"
    assert requests(pair.events) == []  # no app saw it
    headers, body, ended = pair.peer.response(sid)
    assert headers[b":status"] == b"431" and ended
    # the connection carries on, and the entry is still usable within the limit
    other = pair.peer.request("GET", "/next")
    assert [r.stream_id for r in requests(pair.pump())] == [other]
    assert pair.peer.terminated() is None and not pair.h3.terminated


def test_a_blocked_bomb_is_refused_when_it_unblocks(
    configuration: QuicConfiguration, cafile: str
) -> None:
    pair = Pair(configuration, cafile, max_header_list_size=LIMIT).start()
    send_headers_frame(pair, bomb_block())  # refers to an entry not sent yet: blocks
    pair.pump()
    assert pair.peer.terminated() is None
    send_encoder(pair, INSERT)
    peak = peak_while(pair)
    assert peak < 8 << 20, f"peak {peak >> 20} MiB while the bomb unblocked"
    pair.run_timers(lambda: pair.peer.terminated() is not None)  # the client's drain
    terminated = pair.peer.terminated()
    assert terminated is not None
    assert terminated.error_code == ErrorCode.QPACK_DECOMPRESSION_FAILED
    assert requests(pair.events) == []


def test_sizes_bound_what_lsqpack_decodes() -> None:
    """For blocks pylsqpack's own encoder makes (dynamic entries, Huffman, post-base
    references), the size found is at least what the decoder produces."""
    encoder = pylsqpack.Encoder()
    decoder = pylsqpack.Decoder(4096, 16)
    sizes = QpackSizes(4096)
    data = encoder.apply_settings(4096, 16)
    sizes.feed_encoder(data)
    decoder.feed_encoder(data)
    for i in range(40):
        fields = [
            (b":method", b"GET"),
            (b":path", b"/p" * (i % 7 + 1)),
            (b"user-agent", b"agent/%d" % (i % 3)),
            (b"cookie", b"c" * (100 * (i % 5))),
            (b"x-%d" % (i % 4), bytes(range(i % 50))),
        ]
        encoded, block = encoder.encode(i * 4, fields)
        for start in range(0, len(encoded), 7):  # in pieces, as a stream delivers it
            sizes.feed_encoder(encoded[start : start + 7])
        decoder.feed_encoder(encoded)
        bound = sizes.expanded_size(block, 1 << 30)
        acks, decoded = decoder.feed_header(i * 4, block)
        encoder.feed_decoder(acks)
        actual = sum(len(name) + len(value) for name, value in decoded)
        assert bound is not None and actual <= bound <= 2 * actual + 80 * len(decoded)
    assert sizes.inserted > 0 and not sizes.broken
    with pytest.raises(Blocked):
        QpackSizes(4096).expanded_size(bomb_block(), 1 << 30)
