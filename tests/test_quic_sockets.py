"""QUIC sockets and what workers share: one UDP socket factory (a multi-worker socket
gets the same buffers as a single process's), and one Retry secret for all workers."""

from __future__ import annotations

import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from edgecorn.reuseport import reuseport_udp_socket
from edgecorn.sockets import Sockets, create_udp_socket
from tests.apps.e2e import HELLO
from tests.support.h3 import cffi_h3
from tests.support.procs import children, wait_workers


def test_worker_group_sockets_get_the_single_process_buffers() -> None:
    single = create_udp_socket("127.0.0.1:0")
    first = reuseport_udp_socket("127.0.0.1", 0)
    second = reuseport_udp_socket("127.0.0.1", first.getsockname()[1])
    try:
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            want = single.getsockopt(socket.SOL_SOCKET, opt)
            assert want >= 1024 * 1024  # the 4 MiB asked for (or the kernel's cap)
            assert first.getsockopt(socket.SOL_SOCKET, opt) == want
            assert second.getsockopt(socket.SOL_SOCKET, opt) == want
        assert first.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert not first.getblocking()
    finally:
        for sock in (single, first, second):
            sock.close()


def test_each_server_makes_its_own_retry_secret() -> None:
    """No import-time key: two servers (two Sockets) do not share one."""
    assert len(Sockets().quic_secret) == 32
    assert Sockets().quic_secret != Sockets().quic_secret


@pytest.mark.timeout(120)
def test_retry_tokens_validate_in_any_worker(server_factory: Any, cafile: str) -> None:
    """After a Retry the client's next Initial goes to the DCID we chose at random, which
    the steering spreads over the workers: the token must validate in whichever gets it
    (with a secret per worker about half of these connections would never complete)."""
    server = server_factory.start("--workers", "2", "--quic-retry", "on", insecure=False)
    wait_workers(server, 2)

    def one(i: int) -> tuple[int, bytes]:
        resp = cffi_h3("GET", f"https://127.0.0.1:{server.port}/?n={i}", cafile, timeout=10)
        return resp.status_code, resp.content

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, range(24)))
    assert results == [(200, HELLO)] * 24
    assert len(children(server.pid)) == 2
