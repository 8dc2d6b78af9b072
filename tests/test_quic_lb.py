"""QUIC-LB connection IDs (draft-ietf-quic-load-balancers, plaintext): our CIDs decoded
the way a CID-aware balancer does, the worker index where the BPF program reads it, and
every CID a real handshake hands the client (first SCID and NEW_CONNECTION_ID ones)."""

from __future__ import annotations

import os

import pytest
from aioquic.quic.configuration import QuicConfiguration

from edgecorn.config import Config, ConfigError
from edgecorn.quic import engine
from edgecorn.quic.configuration import quic_configuration
from edgecorn.quic.engine import EdgeQuicConnection
from edgecorn.quic.h3 import H3Adapter
from edgecorn.quic.lb import CID_LENGTH, LEGACY, CidFormat, cid_format, decode, worker_offset
from edgecorn.quic.routing import new_route
from edgecorn.reuseport import program, run_program
from tests.support.quic_peer import CLIENT, Peer, server_config

SERVER_ID = bytes.fromhex("a1b2c3")


def test_cid_length_matches_the_engine() -> None:
    assert CID_LENGTH == engine.CID_LENGTH


@pytest.mark.parametrize("config_id", [0, 3, 6])
@pytest.mark.parametrize("server_id", [b"\x07", b"\x01\x02", SERVER_ID])
def test_our_cids_decode_per_the_draft(config_id: int, server_id: bytes) -> None:
    fmt = CidFormat(config_id, server_id)
    seen = set()
    for worker in (None, 0, 5, 99):
        for _ in range(50):
            cid = fmt.new(worker)
            seen.add(cid)
            assert len(cid) == CID_LENGTH
            d = decode(cid, len(server_id))
            assert d.config_id == config_id  # first 3 bits: config rotation
            assert d.length == len(cid)  # low 5 bits: length - 1 (self-description)
            assert d.server_id == server_id
            assert len(d.nonce) >= 4
            if worker is not None:
                assert d.nonce[0] == worker
                assert cid[fmt.worker_offset] == worker == fmt.worker(cid)
    assert len(seen) == 4 * 50  # nonces differ: no two CIDs alike


def test_first_octet_bits() -> None:
    cid = CidFormat(5, b"\x42").new(1)
    assert cid[0] == 0b101_00111  # CR=5, length 8 - 1 = 7
    assert cid[1] == 0x42 and cid[2] == 1


def test_invalid_formats() -> None:
    with pytest.raises(ValueError):
        CidFormat(7, b"\x01")  # 0b111 is the unroutable codepoint
    with pytest.raises(ValueError):
        CidFormat(0, b"\x01\x02\x03\x04")  # 8 - 1 - 4 = 3 < the 4-byte nonce minimum
    with pytest.raises(ValueError):
        decode(bytes([0xE7]) + os.urandom(7), 1)  # unroutable
    with pytest.raises(ValueError):
        decode(bytes([0x05]) + os.urandom(7), 1)  # says 6 bytes, is 8


def test_config_keys() -> None:
    config = Config()
    assert cid_format(config.quic_lb_server_id, config.quic_lb_config_id) is LEGACY
    config.quic_lb_server_id = "A1B2C3"
    config.quic_lb_config_id = 2
    fmt = cid_format(config.quic_lb_server_id, config.quic_lb_config_id)
    assert fmt.server_id == SERVER_ID and fmt.config_id == 2
    assert worker_offset(config.quic_lb_server_id) == fmt.worker_offset == 4
    assert worker_offset(None) == LEGACY.worker_offset == 0
    for bad in ("a1b2c3d4", "xyz", ""):
        with pytest.raises(ConfigError):
            config.quic_lb_server_id = bad
    with pytest.raises(ConfigError):
        config.quic_lb_config_id = 7


def test_legacy_format_keeps_the_worker_first() -> None:
    assert LEGACY.new(3)[0] == 3 and len(LEGACY.new(None)) == CID_LENGTH


@pytest.mark.parametrize("live,accepting", [([0, 1], [0, 1]), ([0, 1, 2, 3], [1, 2, 3])])
def test_bpf_steers_quic_lb_cids_by_the_worker_byte(live: list[int], accepting: list[int]) -> None:
    fmt = CidFormat(1, SERVER_ID)
    insns = program(live, accepting, fmt.worker_offset)
    for worker in live:
        for _ in range(20):
            cid = fmt.new(worker)
            short = bytes([0x41]) + cid + os.urandom(40)
            assert run_program(insns, short) == worker
            long = bytes([0xE3]) + (1).to_bytes(4, "big") + bytes([8]) + cid + b"\x08" + b"\x22" * 8
            assert run_program(insns, long + os.urandom(100)) == worker
    # a client's random first-flight DCID is spread over the accepting workers
    targets = {run_program(insns, bytes([0x41]) + os.urandom(60)) for _ in range(200)}
    assert targets <= set(live) | set(accepting)


@pytest.fixture(scope="module")
def configuration(certs: tuple[str, str, str]) -> QuicConfiguration:
    return quic_configuration(server_config(certs))


@pytest.mark.parametrize("worker", [None, 2])
def test_handshake_hands_out_only_quic_lb_cids(
    configuration: QuicConfiguration, cafile: str, worker: int | None
) -> None:
    fmt = CidFormat(4, SERVER_ID)
    now = 1.0
    peer = Peer(cafile, now)
    first = peer.datagrams(now)
    route = new_route(first[0], CLIENT, None, False)
    assert route is not None and route.accept
    quic = EdgeQuicConnection(
        early_data=False,
        cid_tag=worker,
        cid_format=fmt,
        configuration=configuration,
        original_destination_connection_id=route.original_dcid,
    )
    h3 = H3Adapter(quic, max_requests=10, max_header_list_size=65536)
    for data in first:
        h3.receive_datagram(data, CLIENT, now)
    for _ in range(50):
        now += 0.001
        moved = False
        for data in peer.datagrams(now):
            h3.receive_datagram(data, CLIENT, now)
            moved = True
        for data, _ in h3.datagrams(now):
            peer.receive(data, now)
            moved = True
        if not moved:
            break
    assert peer.handshake_done()
    client = peer.quic
    given = [client._peer_cid.cid] + [c.cid for c in client._peer_cid_available]
    assert len(given) >= 2  # the handshake's SCID and NEW_CONNECTION_ID ones
    for cid in given:
        d = decode(cid, len(SERVER_ID))
        assert (d.config_id, d.server_id) == (4, SERVER_ID), cid.hex()
        if worker is not None:
            assert cid[fmt.worker_offset] == worker
