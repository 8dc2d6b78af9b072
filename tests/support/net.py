"""Free loopback ports."""

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
