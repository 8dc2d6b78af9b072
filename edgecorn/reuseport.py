"""Steer QUIC datagrams to the worker that owns the connection.

Every worker reads its own UDP socket; all of them are bound to one port with
SO_REUSEPORT and form a group in which each socket has a fixed index. A
classic BPF program attached with SO_ATTACH_REUSEPORT_CBPF picks the index for
each datagram from the first byte of its destination connection ID (DCID):

- a worker's own CIDs start with its socket index, so packets for a live
  worker's connection reach it whatever the client's address is now (NAT
  rebinding, migration), also while it drains during a rolling restart;
- any other first byte (a client's random first-flight DCID) is spread over
  the workers that accept new connections with `byte % N`, the same worker for
  every packet of that first flight.

Sockets are not closed while the server runs, so indexes stay put: a worker
that is replaced takes over its index, a rolling restart moves to free ones.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct

from .sockets import udp_socket

log = logging.getLogger("edgecorn.error")

SO_ATTACH_REUSEPORT_CBPF = 51

# Classic BPF opcodes (linux/filter.h)
_LDB_ABS = 0x30  # BPF_LD | BPF_B | BPF_ABS: A = payload[k]
_JA = 0x05  # BPF_JMP | BPF_JA: skip k
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_MOD_K = 0x94  # BPF_ALU | BPF_MOD | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
# Offset 0 is the first byte of the UDP payload: a short header's DCID starts at
# 1; a long header's at 6 (flags, 4-byte version, DCID length).
_SHORT_DCID = 1
_LONG_DCID = 6

Insn = tuple[int, int, int, int]


def program(live: list[int], accepting: list[int], offset: int = 0) -> list[Insn]:
    """`live`: indexes of running workers; `accepting`: those taking new connections;
    `offset`: where in the DCID the worker index is (quic/lb.py: 0, or after the
    QUIC-LB first octet and server ID)."""
    if not accepting or len(live) + len(accepting) > 200:
        raise ValueError("between 1 and 100 workers can be steered")
    insns: list[Insn] = [
        (_LDB_ABS, 0, 0, 0),
        (_JSET_K, 2, 0, 0x80),  # long header: to 4
        (_LDB_ABS, 0, 0, _SHORT_DCID + offset),
        (_JA, 0, 0, 1),  # to 5
        (_LDB_ABS, 0, 0, _LONG_DCID + offset),
    ]
    exact_at = len(insns)
    rets_at = exact_at + len(live) + 1 + len(accepting) + 1
    for i, index in enumerate(live):  # a live worker's own tag: its socket
        at = exact_at + i
        insns.append((_JEQ_K, rets_at + i - at - 1, 0, index))
    insns.append((_MOD_K, 0, 0, len(accepting)))
    spread_at = len(insns)
    for j in range(len(accepting)):  # anything else: byte % N among accepting workers
        at = spread_at + j
        insns.append((_JEQ_K, rets_at + len(live) + j - at - 1, 0, j))
    insns.append((_RET_K, 0, 0, accepting[0]))
    assert len(insns) == rets_at
    insns.extend((_RET_K, 0, 0, index) for index in live)
    insns.extend((_RET_K, 0, 0, index) for index in accepting)
    return insns


def run_program(insns: list[Insn], payload: bytes) -> int:
    """Interpret the program on a datagram, as the kernel would (for tests)."""
    a = pc = 0
    while True:
        code, jt, jf, k = insns[pc]
        pc += 1
        if code == _LDB_ABS:
            if k >= len(payload):
                return 0  # the kernel drops to the default (hash) for a short packet
            a = payload[k]
        elif code == _JA:
            pc += k
        elif code == _JSET_K:
            pc += jt if a & k else jf
        elif code == _JEQ_K:
            pc += jt if a == k else jf
        elif code == _MOD_K:
            a %= k
        elif code == _RET_K:
            return k
        else:
            raise ValueError(f"opcode {code:#x}")


def attach(sock: socket.socket, live: list[int], accepting: list[int], offset: int = 0) -> bool:
    """Attach (or replace) the steering program for the group; False if refused."""
    insns = program(live, accepting, offset)
    blob = b"".join(struct.pack("HBBI", *insn) for insn in insns)
    buffer = ctypes.create_string_buffer(blob, len(blob))
    fprog = struct.pack("HL", len(insns), ctypes.addressof(buffer))  # struct sock_fprog
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, fprog)
    except OSError as exc:
        log.warning(
            "QUIC worker steering unavailable (%s): the kernel's hash picks the worker, so "
            "a client whose address changes may lose its connection",
            exc,
        )
        return False
    return True


def reuseport_udp_socket(host: str, port: int) -> socket.socket:
    """One socket of a worker group: the same socket (buffers too) as a single process's."""
    return udp_socket(host, port, reuseport=True)
