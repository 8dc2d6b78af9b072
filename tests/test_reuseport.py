"""QUIC datagram steering (`edgecorn.reuseport`): the classic BPF program, run through its
Python interpreter, and once on the real kernel with an SO_REUSEPORT group.

Offsets: the program sees the UDP payload, so a short header (first byte 0x40..0x7f) has its
DCID at offset 1, and a long header (first byte >= 0x80) at offset 6 (flags, version, length).
"""

from __future__ import annotations

import os
import random
import socket
import struct
import time

import pytest

from edgecorn.reuseport import attach, program, reuseport_udp_socket, run_program


def short_header(dcid: bytes, size: int = 60) -> bytes:
    return bytes([0x40 | 0x01]) + dcid + os.urandom(max(0, size - 1 - len(dcid)))


def initial(dcid: bytes, scid: bytes = b"\x11" * 8, size: int = 1200) -> bytes:
    """A long-header Initial (v1) with the given DCID, padded to `size`."""
    head = bytes([0xC3]) + struct.pack("!I", 1) + bytes([len(dcid)]) + dcid
    head += bytes([len(scid)]) + scid
    return head + os.urandom(size - len(head))


def handshake(dcid: bytes, size: int = 200) -> bytes:
    """A long-header Handshake packet (type bits 10) with the given DCID."""
    head = bytes([0xE3]) + struct.pack("!I", 1) + bytes([len(dcid)]) + dcid + b"\x08" + b"\x22" * 8
    return head + os.urandom(size - len(head))


def random_dcid(rng: random.Random, avoid: set[int], length: int = 8) -> bytes:
    """A client-chosen DCID whose first byte is not one of the live tags."""
    while True:
        first = rng.randrange(256)
        if first not in avoid:
            return bytes([first]) + bytes(rng.randrange(256) for _ in range(length - 1))


@pytest.mark.parametrize(
    "live, accepting",
    [([0, 1], [0, 1]), ([0, 1, 2, 3], [0, 1, 2, 3]), ([0, 1, 2], [1, 2]), ([5, 7, 9], [7, 9])],
)
def test_short_header_goes_to_its_tagged_worker(live: list[int], accepting: list[int]) -> None:
    insns = program(live, accepting)
    for index in live:  # including draining (live but not accepting) ones
        for _ in range(20):
            dcid = bytes([index]) + os.urandom(7)
            assert run_program(insns, short_header(dcid)) == index, (live, accepting, index)
        # a long-header packet for an established connection (Handshake) too
        assert run_program(insns, handshake(bytes([index]) + os.urandom(7))) == index


def test_draining_worker_keeps_its_short_headers() -> None:
    insns = program(live=[0, 1], accepting=[1])
    for _ in range(50):
        assert run_program(insns, short_header(b"\x00" + os.urandom(7))) == 0
        assert run_program(insns, short_header(b"\x01" + os.urandom(7))) == 1


@pytest.mark.parametrize("accepting", [[0, 1], [0, 1, 2], [1, 3, 4, 6]])
def test_first_flight_sticks_to_one_accepting_worker(accepting: list[int]) -> None:
    live = sorted(set(accepting) | {0})
    insns = program(live, accepting)
    rng = random.Random(1234)
    for _ in range(200):
        dcid = random_dcid(rng, set(live), length=rng.choice([8, 16, 20]))
        target = run_program(insns, initial(dcid))
        assert target in accepting
        # every packet of that first flight (retransmits, padding sizes, 0-RTT) lands there too
        for size in (1200, 1252, 1350):
            assert run_program(insns, initial(dcid, scid=os.urandom(8), size=size)) == target
        zero_rtt = bytes([0xD3]) + initial(dcid)[1:]
        assert run_program(insns, zero_rtt) == target


@pytest.mark.parametrize("accepting", [[0, 1], [0, 1, 2], [2, 3], [1, 3, 4, 6, 8]])
def test_first_byte_values_spread_over_all_accepting(accepting: list[int]) -> None:
    live = sorted(set(accepting) | {0, 1})
    insns = program(live, accepting)
    counts = {index: 0 for index in accepting}
    for first in range(256):
        if first in live:
            continue  # a live tag: that worker's own CID
        target = run_program(insns, initial(bytes([first]) + b"\x00" * 7))
        assert target in accepting, (first, target)
        counts[target] += 1
    assert all(counts.values()), counts
    # byte % N: the shares differ by at most the handful of bytes taken by live tags
    assert max(counts.values()) - min(counts.values()) <= len(live) + 1, counts


def test_after_restart_new_connections_avoid_old_workers() -> None:
    """The rolling-restart state: 0 and 1 drain, 2 and 3 are the new workers."""
    insns = program(live=[0, 1, 2, 3], accepting=[2, 3])
    seen = set()
    for first in range(256):
        for length in (8, 20):
            dcid = bytes([first]) + os.urandom(length - 1)
            target = run_program(insns, initial(dcid))
            if first in (0, 1, 2, 3):
                assert target == first  # a live tag (a Handshake/Initial to that worker's CID)
            else:
                assert target in (2, 3), (first, target)
                seen.add(target)
    assert seen == {2, 3}
    for _ in range(50):
        assert run_program(insns, short_header(b"\x00" + os.urandom(7))) == 0
        assert run_program(insns, short_header(b"\x01" + os.urandom(7))) == 1
        assert run_program(insns, short_header(b"\x02" + os.urandom(7))) == 2
        assert run_program(insns, short_header(b"\x03" + os.urandom(7))) == 3


def test_program_limits() -> None:
    with pytest.raises(ValueError):
        program([0], [])
    assert run_program(program([0, 1], [0, 1]), b"") == 0  # too short: the kernel's default


# --------------------------------------------------------------------------- the real kernel


def _recv_all(socks: list[socket.socket], expected: int, timeout: float) -> dict[int, list[bytes]]:
    got: dict[int, list[bytes]] = {i: [] for i in range(len(socks))}
    deadline = time.monotonic() + timeout
    while sum(len(v) for v in got.values()) < expected and time.monotonic() < deadline:
        for i, sock in enumerate(socks):
            for _ in range(100):
                try:
                    got[i].append(sock.recv(2048))
                except BlockingIOError:
                    break
        time.sleep(0.01)
    return got


def test_kernel_steers_by_dcid_byte() -> None:
    socks = [reuseport_udp_socket("127.0.0.1", 0)]
    port = socks[0].getsockname()[1]
    socks.append(reuseport_udp_socket("127.0.0.1", port))
    senders: list[socket.socket] = []
    try:
        assert attach(socks[0], [0, 1], [0, 1]), "SO_ATTACH_REUSEPORT_CBPF refused"
        sent = 0
        for _ in range(8):  # several source ports: the 4-tuple hash would scatter them
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            senders.append(sender)
            sender.bind(("127.0.0.1", 0))
            for tag in (0, 1):
                for n in range(3):
                    marker = f"{tag}:{sender.getsockname()[1]}:{n}".encode()
                    payload = bytes([0x40, tag]) + os.urandom(7) + marker
                    sender.sendto(payload, ("127.0.0.1", port))
                    sent += 1
        got = _recv_all(socks, sent, timeout=5.0)
        assert sum(len(v) for v in got.values()) == sent, got
        for index, datagrams in got.items():
            for data in datagrams:
                assert data[0] == 0x40 and data[1] == index, (index, data[:2].hex())
        assert got[0] and got[1]
    finally:
        for sock in socks + senders:
            sock.close()


def test_kernel_steers_first_flight_to_accepting() -> None:
    """With worker 0 draining (live, not accepting), random first flights all reach 1."""
    socks = [reuseport_udp_socket("127.0.0.1", 0)]
    port = socks[0].getsockname()[1]
    socks.append(reuseport_udp_socket("127.0.0.1", port))
    senders: list[socket.socket] = []
    try:
        assert attach(socks[0], [0, 1], [1])
        rng = random.Random(7)
        sent = 0
        for _ in range(8):
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            senders.append(sender)
            sender.bind(("127.0.0.1", 0))
            for _ in range(3):
                sender.sendto(initial(random_dcid(rng, {0, 1}), size=200), ("127.0.0.1", port))
                sent += 1
            sender.sendto(short_header(b"\x00" + os.urandom(7)), ("127.0.0.1", port))
            sent += 1
        got = _recv_all(socks, sent, timeout=5.0)
        assert sum(len(v) for v in got.values()) == sent
        assert all(d[0] == 0x41 for d in got[0]) and len(got[0]) == 8, [d[:2] for d in got[0]]
        assert all(d[0] & 0x80 for d in got[1]) and len(got[1]) == 24
    finally:
        for sock in socks + senders:
            sock.close()
