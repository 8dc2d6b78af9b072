"""The lingering close's wait for the peer's acks (edgecorn.tcp.FlushWait), fed numbers:
both backends ask it, so its decisions are tested once, here."""

from __future__ import annotations

import socket

from edgecorn.tcp import TCP_CLOSE, Flush, FlushWait, unacked_bytes
from tests.support.wait import wait_until


def test_nothing_unacked_is_done_at_once() -> None:
    assert FlushWait(100.0, timeout=10.0).decide(0, 100.0) is Flush.DONE


def test_a_peer_that_acks_nothing_gets_one_timeout() -> None:
    wait = FlushWait(100.0, timeout=10.0)
    assert wait.decide(5000, 100.0) is Flush.WAIT
    assert wait.decide(5000, 109.9) is Flush.WAIT
    assert wait.decide(5000, 110.0) is Flush.GIVE_UP


def test_progress_restarts_the_timeout() -> None:
    wait = FlushWait(100.0, timeout=10.0)
    assert wait.decide(5000, 100.0) is Flush.WAIT
    assert wait.decide(4000, 109.0) is Flush.WAIT  # progress: 10 s more from here
    assert wait.decide(4000, 118.9) is Flush.WAIT
    assert wait.decide(4000, 119.0) is Flush.GIVE_UP


def test_more_unacked_is_no_progress() -> None:
    # The count can grow (the last writes reach the kernel): only less counts as progress.
    wait = FlushWait(100.0, timeout=10.0)
    assert wait.decide(4000, 100.0) is Flush.WAIT
    assert wait.decide(6000, 105.0) is Flush.WAIT
    assert wait.decide(6000, 110.0) is Flush.GIVE_UP


def test_done_once_everything_is_acked_even_late() -> None:
    wait = FlushWait(100.0, timeout=10.0)
    assert wait.decide(5000, 100.0) is Flush.WAIT
    assert wait.decide(0, 200.0) is Flush.DONE


def test_a_reset_connection_has_nothing_left_to_ack() -> None:
    """A peer that closed, then got bytes, answers RST; the kernel keeps counting those
    bytes as unacknowledged, so the wait must not ask for acks that never come."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        server, _ = listener.accept()
        with server:
            client.close()  # FIN: the peer is gone
            server.sendall(b"\0\0\0\x04\x01\0\0\0\0")  # an h2 SETTINGS ack: answered by RST
            reset = wait_until(
                lambda: server.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] == TCP_CLOSE,
                5.0,
            )
            assert reset
            assert unacked_bytes(server) == 0


def test_a_unix_socket_counts_what_its_peer_has_not_read() -> None:
    """Unix sockets (`--bind unix:...`) have no TCP state to ask: their count stands."""
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"x" * 1000)
        assert unacked_bytes(a) > 0
        b.recv(1000)
        assert wait_until(lambda: unacked_bytes(a) == 0, 5.0)
