"""QUIC connections past max_connections are refused (issue 14).

They were counted toward `max_connections` but never refused: a worker at its limit took
every new QUIC connection. Now the new connection's first Initial gets an Initial with
CONNECTION_CLOSE (CONNECTION_REFUSED, RFC 9000 5.2.2), and the endpoint keeps no state
for it. In memory (the real endpoint, manager and app with a fake socket, and aioquic
clients), then end to end with ngtcp2's gtlsclient.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aioquic.h3.connection import H3_ALPN
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated
from aioquic.quic.packet import QuicErrorCode, QuicProtocolVersion

from edgecorn.quic.routing import new_route, refusal
from tests.support.h3 import gtls_start, gtlsclient, wait_quic
from tests.support.quic_peer import CLIENT
from tests.support.wait import wait_for_lines, wait_until
from tests.test_quic_endpoint import Harness, run


def _first_flight(harness: Any, peer: Any) -> list[bytes]:
    """What the listener sends back to a new peer's first datagrams (taken off the socket)."""
    for data in peer.datagrams(harness.loop.time()):
        harness.listener.datagram_received(data, CLIENT)
    replies = [data for data, _ in harness.sock.sent]
    harness.sock.sent.clear()
    return replies


def test_the_initial_past_max_connections_is_refused_without_state(
    certs: tuple[str, str, str],
) -> None:
    async def main() -> None:
        harness = Harness(certs, max_connections=2)
        listener: Any = harness.listener
        peers = [harness.peer() for _ in range(2)]
        for peer in peers:  # two connections that stay: the limit
            sid = peer.request("GET", "/held")
            await harness.exchange(peer, lambda: peer.response(sid)[2])  # noqa: B023
        assert len(harness.manager.connections) == 2
        routes = dict(listener.routes)

        third = harness.peer()
        third.request("GET", "/refused")
        replies = _first_flight(harness, third)
        assert len(replies) == 1 and replies[0][0] & 0xF0 == 0xC0  # one long-header Initial
        assert len(replies[0]) < 100  # far below the client's 1200: no amplification
        third.receive(replies[0], harness.loop.time())
        timer = third.quic.get_timer()  # aioquic tells the close when its draining ends
        assert timer is not None
        third.handle_timer(timer)
        closes = [e for e in third.quic_events if isinstance(e, ConnectionTerminated)]
        assert [c.error_code for c in closes] == [QuicErrorCode.CONNECTION_REFUSED], closes
        assert listener.routes == routes and len(harness.manager.connections) == 2

        # one connection goes: the next new one is taken
        for conn in list(harness.manager.connections)[:1]:
            conn._terminate()  # type: ignore[attr-defined]
        fourth = harness.peer()
        sid = fourth.request("GET", "/after")
        await harness.exchange(fourth, lambda: fourth.response(sid)[2])
        assert fourth.response(sid)[1] == b"3 https GET /after 0"

    run(main())


@pytest.mark.parametrize(
    "version", [QuicProtocolVersion.VERSION_1, QuicProtocolVersion.VERSION_2], ids=["v1", "v2"]
)
def test_a_refusal_is_understood_in_the_clients_version(version: int) -> None:
    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=H3_ALPN, server_name="localhost"
    )
    configuration.original_version = version
    client = QuicConnection(configuration=configuration)
    client.connect(("127.0.0.1", 4433), 0.0)
    (initial, _), *_ = client.datagrams_to_send(0.0)
    route = new_route(initial, CLIENT, None, False, no_room=True)
    assert route is not None and route.refuse and not route.accept
    client.receive_datagram(refusal(route), ("127.0.0.1", 4433), 0.1)
    timer = client.get_timer()
    assert timer is not None
    client.handle_timer(timer)
    events = []
    while (event := client.next_event()) is not None:
        events.append(event)
    closes = [e for e in events if isinstance(e, ConnectionTerminated)]
    assert [c.error_code for c in closes] == [QuicErrorCode.CONNECTION_REFUSED], events


def test_refusals_are_rate_limited_per_address(certs: tuple[str, str, str]) -> None:
    async def main() -> None:
        harness = Harness(certs, max_connections=1)
        listener: Any = harness.listener
        held = harness.peer()
        sid = held.request("GET", "/held")
        await harness.exchange(held, lambda: held.response(sid)[2])
        for _ in range(100):  # new connections from one address, as fast as it can
            for data in harness.peer().datagrams(harness.loop.time()):
                listener.datagram_received(data, CLIENT)
        assert 0 < len(harness.sock.sent) <= 20  # its burst (and what refilled meanwhile)
        assert len(harness.manager.connections) == 1

    run(main())


@pytest.mark.parametrize("tag", [None, 1], ids=["alone", "one-of-several"])
def test_a_draining_worker_refuses_new_initials_only_when_alone(
    certs: tuple[str, str, str], tag: int | None
) -> None:
    """Draining, a worker alone on its port (workers: 0) refuses a new connection; one of
    a supervisor's workers (CID tag) stays silent: another worker may take the client's
    retransmitted Initial (a rolling restart's new one)."""

    async def main() -> None:
        harness = Harness(certs, cid_tag=tag)
        listener: Any = harness.listener
        held = harness.peer()
        sid = held.request("GET", "/held")
        await harness.exchange(held, lambda: held.response(sid)[2])
        harness.manager.shutdown()
        routes = dict(listener.routes)

        late = harness.peer()
        late.request("GET", "/late")
        replies = _first_flight(harness, late)
        assert listener.routes == routes  # no state for it either way
        if tag is not None:
            assert replies == []
            return
        assert len(replies) == 1 and replies[0][0] & 0xF0 == 0xC0  # one long-header Initial
        late.receive(replies[0], harness.loop.time())
        timer = late.quic.get_timer()
        assert timer is not None
        late.handle_timer(timer)
        closes = [e for e in late.quic_events if isinstance(e, ConnectionTerminated)]
        assert [c.error_code for c in closes] == [QuicErrorCode.CONNECTION_REFUSED], closes

    run(main())


def _refused(output: str) -> bool:
    """gtlsclient's log of a CONNECTION_CLOSE frame with CONNECTION_REFUSED (0x2)."""
    return bool(
        re.search(r"frm rx .*CONNECTION_CLOSE.*error_code=(CONNECTION_REFUSED|0x2)\b", output)
    )


@pytest.mark.timeout(90)
def test_gtlsclient_is_refused_past_max_connections(server_factory: Any, tmp_path: Path) -> None:
    server = server_factory.start(config="max_connections: 2\nkeep_alive_timeout: 60\n")
    wait_quic(server)
    url = f"https://127.0.0.1:{server.port}/"
    # Two connections that stay open for a while (their request waits), the worker's limit.
    holders = [
        gtls_start(server.port, url, download=tmp_path / f"held{i}", extra=["--delay-stream=8s"])
        for i in range(2)
    ]
    try:
        for holder in holders:
            assert wait_until(lambda: "QUIC handshake has completed" in holder.output(), 15)  # noqa: B023
        third = gtlsclient(server.port, url, download=tmp_path / "third")
        assert third.handshakes == 0 and _refused(third.output), third.summary()
        assert all(holder.proc.poll() is None for holder in holders)  # still held meanwhile
        for holder in holders:
            assert holder.wait(30).statuses() == [200]
        # their connections have gone: a new one is taken again
        after: list[Any] = []

        def served() -> bool:
            after.append(gtlsclient(server.port, url, download=tmp_path / f"after{len(after)}"))
            return after[-1].statuses() == [200]

        assert wait_until(served, 20, interval=0.5), after[-1].summary()
        assert "new QUIC connections are refused" in server.stderr()
    finally:
        for holder in holders:
            holder.kill()


@pytest.mark.timeout(90)
@pytest.mark.both_backends
def test_gtlsclient_is_refused_while_a_lone_worker_drains(
    server_factory: Any, tmp_path: Path
) -> None:
    """`workers: 0` (no other worker on the port): after SIGTERM, while a slow request
    keeps the drain going, a new QUIC client is refused at once (before: its Initials
    went unanswered until its handshake timeout); the slow request is still answered."""
    server = server_factory.start(config="graceful_timeout: 15\n")
    wait_quic(server)
    record = tmp_path / "slow.txt"
    slow = subprocess.Popen(
        ["curl", "-sS", "--max-time", "30", f"{server.http}/slow?s=4&file={record}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert "started" in wait_for_lines(record, "started")  # the drain has work to wait for
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait_stderr("Shutting down", 10), server.describe()
        late = gtlsclient(
            server.port, f"https://127.0.0.1:{server.port}/", download=tmp_path / "late"
        )
        assert late.handshakes == 0 and _refused(late.output), late.summary()
        out, err = slow.communicate(timeout=30)
        assert out == b"slow done", err
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait(5)
    assert server.proc.wait(20) == 0, server.describe()
    assert "new QUIC connections are refused" in server.stderr()
