"""Free loopback ports, and reading a raw HTTP/1.1 answer."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1: a server may bind QUIC on its TCP port."""
    for _ in range(50):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free TCP+UDP port on 127.0.0.1 in 50 tries")


def head_status(sock: socket.socket) -> int:
    """The status of the next HTTP/1.1 response head on a raw socket (its body is left
    unread); bounded by the socket's timeout."""
    head = b""
    while b"\r\n\r\n" not in head:
        part = sock.recv(65536)
        if not part:
            raise AssertionError(f"closed after {head!r}")
        head += part
    return int(head.split(b" ", 2)[1])
