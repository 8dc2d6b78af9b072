"""The QUIC interop endpoint (interop/run_endpoint.sh) against real clients through the
local runner's relay: a fast subset of `python -m interop` (the whole matrix, with the
long scenarios, is `python -m interop --all`), plus the endpoint's exit-127 contract and
the relay's header parser fed aioquic's own packets."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from interop import run as runner
from interop.relay import Scenario
from interop.trace import V1, V2, parse_datagram

KB, MB = runner.KB, runner.MB
ENDPOINT = Path(runner.__file__).resolve().parent / "run_endpoint.sh"

needs_gtlsclient = pytest.mark.skipif(
    shutil.which("gtlsclient") is None, reason="gtlsclient (ngtcp2-client) is not installed"
)

# Smaller than the runner's files (loopback is fast; 2 shared cores are not); h3 runs on
# gtlsclient, an independent QUIC stack; hq-interop runs on aioquic's client where only
# it can (HTTP/0.9 itself, QUIC v2 by compatible version negotiation).
FAST: dict[str, dict[str, Any]] = {
    "handshake": dict(clients=("h3", "hq")),
    "transfer": dict(sizes=[512 * KB, 1 * MB], clients=("h3", "hq")),
    "retry": dict(clients=("h3",)),
    "resumption": dict(clients=("h3",)),
    "zerortt": dict(clients=("h3",)),
    "http3": dict(sizes=[5 * KB, 300 * KB]),
    "chacha20": dict(sizes=[256 * KB], clients=("h3",)),
    "v2": dict(),
    # 300 streams against a limit of 50: MAX_STREAMS must be raised as streams finish.
    "multiplexing": dict(
        sizes=[32] * 300,
        clients=("h3",),
        server_env={"EDGECORN_H3_MAX_CONCURRENT_STREAMS": "50"},
    ),
    "transferloss": dict(
        sizes=[512 * KB], clients=("h3",), scenario=Scenario(delay=0.005, loss=0.03)
    ),
    "rebind-port": dict(
        sizes=[2 * MB],
        clients=("h3",),
        scenario=Scenario(delay=0.01, first_rebind=0.2, rebind_every=0.4),
    ),
    # Two drops instead of the runner's six: gtlsclient's backoff would take 14 s.
    "amplificationlimit": dict(
        clients=("h3",), scenario=Scenario(delay=0.015, drops_to_server=frozenset({2, 3}))
    ),
}


def fast_case(name: str) -> runner.Case:
    case = next(c for c in runner.cases() if c.name == name)
    return dataclasses.replace(case, **FAST[name])


@pytest.fixture(scope="session")
def aioquic_client() -> Path:
    return runner.aioquic_client()  # fetched from the sdist once, then cached


@needs_gtlsclient
@pytest.mark.parametrize("name", list(FAST))
def test_interop_case(name: str, tmp_path: Path, aioquic_client: Path) -> None:
    status, why = asyncio.run(runner.run_case(fast_case(name), tmp_path, timeout=30))
    assert (status, why) == (runner.PASS, ""), (tmp_path / "server.log").read_text()[-3000:]


@needs_gtlsclient
def test_checks_fail_when_the_server_misbehaves(tmp_path: Path) -> None:
    """The handshake case's check against a server that sends Retry: it must say so."""
    case = dataclasses.replace(fast_case("handshake"), server="retry", clients=("h3",))
    status, why = asyncio.run(runner.run_case(case, tmp_path, timeout=30))
    assert status == runner.FAIL and "a Retry was sent" in why


@needs_gtlsclient
def test_zero_rtt_check_fails_when_the_server_refuses_early_data(tmp_path: Path) -> None:
    case = dataclasses.replace(fast_case("zerortt"), server="resumption", clients=("h3",))
    status, why = asyncio.run(runner.run_case(case, tmp_path, timeout=30))
    assert status == runner.FAIL and "rejected early data" in why


@needs_gtlsclient
def test_missing_file_fails(tmp_path: Path) -> None:
    case = dataclasses.replace(fast_case("handshake"), sizes=[KB, KB], clients=("h3",))

    async def run() -> tuple[str, str]:
        original = runner.client_argv

        def asks_for_less(kind: str, run: Any, port: int, names: list[str], state: Path) -> Any:
            return original(kind, run, port, names[1:], state)  # a client that skips one

        runner.client_argv = asks_for_less  # type: ignore[assignment]
        try:
            return await runner.run_case(case, tmp_path, timeout=30)
        finally:
            runner.client_argv = original  # type: ignore[assignment]

    status, why = asyncio.run(run())
    assert status == runner.FAIL and "files missing" in why


@pytest.mark.parametrize(
    "env",
    [
        {"TESTCASE": "ecn"},
        {"TESTCASE": "connectionmigration"},
        {"TESTCASE": "no-such-case"},
        {"TESTCASE": ""},
        {"TESTCASE": "handshake", "ROLE": "client"},
    ],
)
def test_endpoint_exits_127_for_what_it_does_not_support(
    env: dict[str, str], tmp_path: Path
) -> None:
    full = dict(os.environ, WWW=str(tmp_path), CERTS=str(tmp_path), ROLE="server")
    full.update(env)
    result = subprocess.run(["bash", str(ENDPOINT)], env=full, capture_output=True, timeout=30)
    assert result.returncode == 127, result.stderr


def test_endpoint_needs_the_certificate(tmp_path: Path) -> None:
    full = dict(os.environ, WWW=str(tmp_path), CERTS=str(tmp_path), TESTCASE="handshake")
    result = subprocess.run(["bash", str(ENDPOINT)], env=full, capture_output=True, timeout=30)
    assert result.returncode == 1 and b"cert.pem" in result.stderr


@pytest.mark.parametrize("version", [V1, V2])
def test_trace_parses_a_real_client_initial(version: int) -> None:
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection

    configuration = QuicConfiguration(is_client=True, alpn_protocols=["hq-interop"])
    configuration.supported_versions = [version]
    client = QuicConnection(configuration=configuration)
    client.connect(("127.0.0.1", 443), now=0.0)
    datagrams = client.datagrams_to_send(now=0.0)
    packets = parse_datagram(datagrams[0][0])
    assert packets[0].kind == "initial" and packets[0].version == version
    assert packets[0].dcid == client.original_destination_connection_id
    assert packets[0].token == b""
    assert sum(p.size for p in packets) == len(datagrams[0][0])


def test_trace_parses_version_negotiation_and_short_headers() -> None:
    vn = bytes([0x80]) + bytes(4) + bytes([4]) + b"dcid" + bytes([4]) + b"scid" + bytes(8)
    assert [p.kind for p in parse_datagram(vn)] == ["version_negotiation"]
    assert [p.kind for p in parse_datagram(bytes([0x40]) + bytes(30))] == ["short"]
