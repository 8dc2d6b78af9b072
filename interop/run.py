"""`python -m interop`: the QUIC interop runner's server test cases on loopback, no Docker.

For each case: make the files and a certificate chain, start the endpoint through
run_endpoint.sh (the same script the container runs) with local paths, put the relay
between client and server, run real clients - ngtcp2's `gtlsclient` (h3, independent
of aioquic) and aioquic's example client (hq-interop, the one HTTP/0.9 client here;
it shares our QUIC engine, so it never runs alone where gtlsclient can) - and check
what the runner checks, from the relay's own trace, the server's qlog and key log.
Prints the matrix and exits 1 when any case fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .certs import make_chain
from .relay import Relay, Scenario
from .trace import V1, V2, Trace

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KB, MB = 1 << 10, 1 << 20
CACHE = Path(os.environ.get("EDGECORN_INTEROP_CACHE", Path.home() / ".cache" / "edgecorn-interop"))
CHACHA_GNUTLS = "NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305"

QLOG_WAIT = 5.0  # seconds
PASS, FAIL, UNSUPPORTED = "pass", "fail", "unsupported"


@dataclass
class Case:
    name: str
    server: str  # the endpoint's TESTCASE (the runner's server-side test name)
    sizes: list[int]
    clients: tuple[str, ...] = ("h3", "hq")  # h3: gtlsclient; hq: aioquic, hq-interop
    scenario: Scenario = field(default_factory=Scenario)
    chain: int = 1
    connections: str = "one"  # one | resume (first file, then the rest) | each
    long: bool = False  # only with --all
    server_env: dict[str, str] = field(default_factory=dict)
    check: Callable[[Run], str] | None = None  # extra check: "" or why it failed


@dataclass
class Run:
    case: Case
    work: Path
    files: list[str]
    relay: Relay
    outputs: list[str] = field(default_factory=list)
    qlogs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def trace(self) -> Trace:
        return self.relay.trace


# --- checks beyond files and handshakes -----------------------------------------------


def _no_retry(run: Run) -> str:
    return "a Retry was sent" if run.trace.retry_tokens() else ""


def _retry(run: Run) -> str:
    if not run.trace.retry_tokens():
        return "no Retry packet"
    return "" if run.trace.retry_token_used() else "no Initial carried the Retry token"


def _resumed(run: Run) -> str:
    sizes = run.trace.server_handshake_bytes()
    if len(sizes) != 2:
        return f"expected 2 connections with Handshake packets, saw {len(sizes)}"
    # A resumed handshake has no Certificate: a few hundred bytes against the full one.
    if not sizes[1] < min(sizes[0] / 2, 1000):
        return f"second handshake not resumed (server Handshake bytes {sizes})"
    return ""


def _zero_rtt(run: Run) -> str:
    problem = _resumed(run)
    if problem:
        return problem
    if run.trace.zero_rtt_bytes() == 0:
        return "the client sent no 0-RTT packets"
    if any("Early data was rejected" in out for out in run.outputs):
        return "the server rejected early data"
    # As the runner: the requests (40 paths of 250 bytes) went in 0-RTT, so what the
    # client sent in 1-RTT packets stays under half of them.
    one_rtt = sum(p.size for p in run.trace.packets(True, "short"))
    if one_rtt > 0.5 * 250 * 40:
        return f"the client sent {one_rtt} bytes in 1-RTT packets: requests not in 0-RTT"
    return ""


def _chacha(run: Run) -> str:
    for out in run.outputs:
        if "Negotiated cipher suite is" in out and "CHACHA20" not in out:
            return "a cipher other than ChaCha20 was negotiated"
    return ""


def _v2(run: Run) -> str:
    if V2 not in run.trace.server_versions():
        return f"server Initials not in v2 ({sorted(map(hex, run.trace.server_versions()))})"
    for to_server in (True, False):
        versions = run.trace.handshake_versions(to_server)
        if versions != {V2}:
            return f"Handshake packets in {sorted(map(hex, versions))}, expected only v2"
    return ""


def _stream_limit(run: Run) -> str:
    limits = [
        event["data"]["initial_max_streams_bidi"]
        for event in _qlog_events(run)
        if str(event.get("name", "")).endswith("parameters_set")
        and event.get("data", {}).get("owner") == "local"
        and "initial_max_streams_bidi" in event.get("data", {})
    ]
    if not limits:
        return "no initial_max_streams_bidi in the server's qlog"
    if max(limits) > 1000:
        return f"initial_max_streams_bidi {max(limits)} > 1000"
    return ""


def _amplification(run: Run) -> str:
    sent, received = run.trace.amplification()
    if received == 0:
        return "no client Initial reached the server"
    if sent > 3 * received:
        return f"server sent {sent} bytes before validation, over 3x {received}"
    return ""


def _path_validation(run: Run) -> str:
    rebinds = run.relay.counters.rebinds
    if rebinds == 0:
        return "the relay never rebound (transfer too short?)"
    addresses = {addr[0] for addr in run.relay.counters.client_addrs}
    if run.case.scenario.rebind_addr and len(addresses) < 2:
        return f"the server saw one client address only ({addresses})"
    challenges = 0
    for event in _qlog_events(run):
        if str(event.get("name", "")).endswith("packet_sent"):
            frames = event.get("data", {}).get("frames", [])
            challenges += sum(1 for f in frames if f.get("frame_type") == "path_challenge")
    if challenges < rebinds:
        return f"{rebinds} rebinds but {challenges} PATH_CHALLENGE frames in the server's qlog"
    return ""


def _qlog_events(run: Run) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for qlog in run.qlogs:
        for trace in qlog.get("traces", []):
            events.extend(trace.get("events", []))
    return events


QLOG_CHECKS = (_stream_limit, _path_validation)


# --- the cases ----------------------------------------------------------------------


def cases() -> list[Case]:
    return [
        Case("handshake", "handshake", [1 * KB], check=_no_retry),
        Case("transfer", "transfer", [2 * MB, 3 * MB, 5 * MB]),
        Case("chacha20", "chacha20", [3 * MB], check=_chacha),
        Case("multiplexing", "transfer", [32] * 1999, check=_stream_limit),
        Case("retry", "retry", [10 * KB], check=_retry),
        Case("resumption", "resumption", [5 * KB, 10 * KB], connections="resume", check=_resumed),
        Case("zerortt", "zerortt", [32] * 40, connections="resume", check=_zero_rtt),
        Case("http3", "http3", [5 * KB, 10 * KB, 500 * KB], clients=("h3",)),
        # gtlsclient 0.12 knows only QUIC v2's draft: aioquic's client negotiates v2.
        Case("v2", "v2", [1 * KB], clients=("hq",), check=_v2),
        Case("keyupdate", "transfer", [3 * MB], clients=("h3",)),
        Case(
            "amplificationlimit",
            "transfer",
            [5 * KB],
            chain=9,
            scenario=Scenario(delay=0.015, drops_to_server=frozenset(range(2, 8))),
            check=_amplification,
        ),
        Case(
            "rebind-port",
            "transfer",
            [3 * MB],
            scenario=Scenario(delay=0.015, first_rebind=0.3, rebind_every=0.5),
            check=_path_validation,
        ),
        Case(
            "rebind-addr",
            "transfer",
            [3 * MB],
            scenario=Scenario(delay=0.015, first_rebind=0.3, rebind_every=0.5, rebind_addr=True),
            check=_path_validation,
        ),
        Case("transferloss", "transfer", [2 * MB], scenario=Scenario(delay=0.015, loss=0.02)),
        Case(
            "transfercorruption",
            "transfer",
            [2 * MB],
            scenario=Scenario(delay=0.015, corrupt=0.02),
            long=True,
        ),
        Case(
            "handshakeloss",
            "multiconnect",
            [1 * KB] * 50,
            scenario=Scenario(delay=0.015, loss=0.3),
            connections="each",
            long=True,
        ),
        Case(
            "handshakecorruption",
            "multiconnect",
            [1 * KB] * 50,
            scenario=Scenario(delay=0.015, corrupt=0.3),
            connections="each",
            long=True,
        ),
        # The simulator's scenario as it is: a 10 Mbps link, 5 s on, 2 s off.
        Case(
            "blackhole",
            "transfer",
            [10 * MB],
            scenario=Scenario(delay=0.015, bandwidth=10e6, blackhole_on=5.0, blackhole_off=2.0),
            long=True,
        ),
        Case("ecn", "ecn", [], clients=()),
        Case("connectionmigration", "connectionmigration", [], clients=()),
    ]


# --- processes ----------------------------------------------------------------------


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def aioquic_client() -> Path:
    """aioquic's examples/http3_client.py, from the installed version's sdist (cached)."""
    import aioquic

    version = aioquic.__version__
    script = CACHE / f"aioquic-{version}" / "examples" / "http3_client.py"
    if script.exists():
        return script
    CACHE.mkdir(parents=True, exist_ok=True)
    sdist = CACHE / f"aioquic-{version}.tar.gz"
    if not sdist.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps"]
            + ["--no-build-isolation", f"aioquic=={version}", "-d", str(CACHE)],
            check=False,
            capture_output=True,
            timeout=300,
        )
        if not sdist.exists():  # pip may need build isolation to read the metadata
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-binary", ":all:"]
                + ["--no-deps", f"aioquic=={version}", "-d", str(CACHE)],
                check=True,
                capture_output=True,
                timeout=300,
            )
    with tarfile.open(sdist) as tar:
        member = f"aioquic-{version}/examples/http3_client.py"
        tar.extract(member, CACHE, filter="data")
    return script


class Endpoint:
    """run_endpoint.sh as the runner starts it, with local paths and a free port."""

    def __init__(self, case: Case, work: Path, port: int) -> None:
        self.case = case
        self.work = work
        self.port = port
        self.log = work / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            ROLE="server",
            TESTCASE=self.case.server,
            WWW=str(self.work / "www"),
            CERTS=str(self.work / "certs"),
            PORT=str(self.port),
            HOST4="127.0.0.1",
            HOST6="",
            SSLKEYLOGFILE=str(self.work / "logs" / "keys.log"),
            QLOGDIR=str(self.work / "logs" / "qlog"),
            PYTHON=sys.executable,
            PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])),
        )
        env.update(self.case.server_env)
        return env

    def start(self, timeout: float = 20.0) -> int | None:
        """None once listening; the exit status when the script ended instead."""
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                ["bash", str(HERE / "run_endpoint.sh")],
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: we end exactly what we started
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.proc.poll()
            if status is not None:
                return status
            if "Running on quic://" in self.log.read_text(errors="replace"):
                return None
            time.sleep(0.05)
        raise RuntimeError(f"endpoint did not start in {timeout} s: see {self.log}")

    def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)  # the script passes it on: a graceful stop
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


async def run_client(argv: list[str], log: Path, timeout: float) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except asyncio.TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, _ = await proc.communicate()
        out += f"\n[interop] client killed after {timeout} s\n".encode()
    text = out.decode(errors="replace")
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(argv[:12]) + (" ..." if len(argv) > 12 else "") + "\n" + text)
    return text


def client_argv(kind: str, run: Run, port: int, names: list[str], state: Path) -> list[str]:
    case = run.case
    urls = [f"https://127.0.0.1:{port}/{name}" for name in names]
    downloads = run.work / f"downloads-{kind}"
    if kind == "h3":
        argv = ["gtlsclient", "--exit-on-all-streams-close", "--no-quic-dump", "--no-http-dump"]
        # Idle and handshake timeouts as long as the runner's clients allow: under 30%
        # loss a handshake can take longer than gtlsclient's 10 s idle limit.
        argv += ["--handshake-timeout=30s", "--timeout=30s", f"--download={downloads}"]
        if case.connections == "resume":
            argv += [f"--session-file={state}.session", f"--tp-file={state}.tp"]
        if case.name == "transfer":  # small windows: the server must wait for updates
            argv += ["--max-data=1M", "--max-stream-data-bidi-local=256K"]
        if case.name == "chacha20":
            argv.append(f"--ciphers={CHACHA_GNUTLS}")
        if case.name == "keyupdate":
            argv.append("--key-update=20ms")
        if case.name == "resumption":
            argv.append("--disable-early-data")
        return argv + ["127.0.0.1", str(port)] + urls
    argv = [sys.executable, str(aioquic_client()), "--legacy-http"]
    argv += ["--ca-certs", str(run.work / "certs" / "ca.pem"), "--output-dir", str(downloads)]
    argv += ["-s", f"{state}.ticket"]
    if case.name == "transfer":
        argv += ["--max-data", str(1 * MB), "--max-stream-data", str(256 * KB)]
    if case.name == "chacha20":
        argv += ["--cipher-suites", "CHACHA20_POLY1305_SHA256"]
    if case.name == "zerortt":
        argv.append("--zero-rtt")
    if case.name == "v2":
        argv.append("--negotiate-v2")
    return argv + urls


async def run_case(case: Case, work: Path, timeout: float) -> tuple[str, str]:
    for kind in case.clients:
        (work / f"downloads-{kind}").mkdir(parents=True)
    (work / "www").mkdir()
    (work / "logs" / "qlog").mkdir(parents=True)
    files = []
    for index, size in enumerate(case.sizes):
        name = f"f{index:04d}-{size}" if case.name != "zerortt" else f"{index:02d}" + "z" * 248
        (work / "www" / name).write_bytes(os.urandom(size))
        files.append(name)
    make_chain(work / "certs", case.chain)
    server_port = free_udp_port()
    endpoint = Endpoint(case, work, server_port)
    status = endpoint.start()
    if status is not None:
        if status == 127:
            return UNSUPPORTED, "the endpoint exits 127 (see interop/README.md)"
        return FAIL, f"the endpoint exited with {status}: see {endpoint.log}"
    runs: list[tuple[str, Run]] = []
    try:
        for kind in case.clients:
            # Each client gets its own relay and trace, like one runner test.
            relay = Relay(("127.0.0.1", server_port), case.scenario)
            port = await relay.start()
            run = Run(case, work, files, relay)
            state = work / f"state-{kind}"
            log = work / f"client-{kind}.log"
            if case.connections == "one":
                groups = [files]
            elif case.connections == "resume":
                groups = [files[:1], files[1:]]
            else:
                groups = [[name] for name in files]
            try:
                for group in groups:
                    argv = client_argv(kind, run, port, group, state)
                    run.outputs.append(await run_client(argv, log, timeout))
                    if case.connections == "resume":
                        await asyncio.sleep(0.2)  # the ticket is saved as the client exits
            finally:
                # The client's last datagrams (its CONNECTION_CLOSE) may still be on
                # their delayed way: closing the relay now would make the server idle out.
                await asyncio.sleep(2 * case.scenario.delay + 0.05)
                relay.close()
                (work / f"trace-{kind}.txt").write_text(relay.trace.dump())
            runs.append((kind, run))
            # aioquic writes a connection's qlog when it ends (after the close's drain
            # period): wait for them, bounded, so qlog checks see every connection.
            deadline = time.monotonic() + (QLOG_WAIT if case.check in QLOG_CHECKS else 0)
            while len(_qlog_paths(run)) < run.trace.handshakes() and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
    finally:
        endpoint.stop()  # the server's qlog of a connection is written as it ends
    problems: list[str] = []
    for kind, run in runs:
        run.qlogs = _load_qlogs(run)
        problem = check(run, kind)
        if problem:
            problems.append(f"{kind}: {problem}")
    return (FAIL, "; ".join(problems)) if problems else (PASS, "")


def _load_qlogs(run: Run) -> list[dict[str, Any]]:
    """The server's qlogs of this run's connections: aioquic names each file by the
    connection's original DCID, or by the client's SCID when it has none."""
    qlogs = []
    for path in _qlog_paths(run):
        with contextlib.suppress(ValueError):
            qlogs.append(json.loads(path.read_text()))
    return qlogs


def _qlog_paths(run: Run) -> list[Path]:
    initials = run.trace.packets(True, "initial")
    cids = {p.dcid for p in initials} | {p.scid for p in initials}
    paths = [run.work / "logs" / "qlog" / f"{cid.hex()}.qlog" for cid in cids]
    return [path for path in paths if path.exists()]


def check(run: Run, kind: str) -> str:
    case, work = run.case, run.work
    downloads = work / f"downloads-{kind}"
    got = sorted(p.name for p in downloads.iterdir() if p.is_file())
    if got != sorted(run.files):
        missing = sorted(set(run.files) - set(got))
        return f"{len(missing)} of {len(run.files)} files missing (e.g. {missing[:2]})"
    for name in run.files:
        if (downloads / name).read_bytes() != (work / "www" / name).read_bytes():
            return f"{name} differs from the served file"
    expected = {"one": 1, "resume": 2, "each": len(run.files)}[case.connections]
    handshakes = run.trace.handshakes()
    if case.connections != "each" and handshakes != expected:
        return f"expected {expected} handshakes, saw {handshakes}"
    if case.name != "v2" and run.trace.server_versions() != {V1}:
        return f"server Initials in {sorted(map(hex, run.trace.server_versions()))}, not v1"
    keylog = work / "logs" / "keys.log"
    if not keylog.exists() or "CLIENT_HANDSHAKE_TRAFFIC_SECRET" not in keylog.read_text():
        return "no TLS key log at SSLKEYLOGFILE"
    if case.check is not None:
        return case.check(run)
    return ""


# --- the command ----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m interop", description=__doc__)
    parser.add_argument("cases", nargs="*", help="test cases to run (default: all but long)")
    parser.add_argument("--all", action="store_true", help="include the long scenarios")
    parser.add_argument("--keep", action="store_true", help="keep each case's directory")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per client run")
    parser.add_argument("--list", action="store_true", help="list the test cases")
    args = parser.parse_args(argv)
    table = cases()
    if args.list:
        for case in table:
            print(f"{case.name:22} server={case.server:14} {'(--all)' if case.long else ''}")
        return 0
    if args.cases:
        known = {case.name: case for case in table}
        unknown = [name for name in args.cases if name not in known]
        if unknown:
            parser.error(f"unknown test case(s): {', '.join(unknown)}")
        chosen = [known[name] for name in args.cases]
    else:
        chosen = [case for case in table if args.all or not case.long]
    if shutil.which("gtlsclient") is None and any("h3" in c.clients for c in chosen):
        parser.error("gtlsclient (Debian's ngtcp2-client) is needed")
    root = Path(tempfile.mkdtemp(prefix="edgecorn-interop-"))
    results: list[tuple[str, str, str, float]] = []
    for case in chosen:
        work = root / case.name
        work.mkdir()
        started = time.monotonic()
        try:
            status, why = asyncio.run(run_case(case, work, args.timeout))
        except Exception as exc:  # one broken case must not hide the others' results
            status, why = FAIL, f"runner error: {exc!r}"
        elapsed = time.monotonic() - started
        results.append((case.name, status, why, elapsed))
        print(f"{case.name:22} {status:12} {elapsed:5.1f}s  {why}", flush=True)
    print()
    print("| test case | result | clients | notes |")
    print("|---|---|---|---|")
    by_name = {case.name: case for case in chosen}
    for name, status, why, _ in results:
        clients = ", ".join(
            {"h3": "gtlsclient (h3)", "hq": "aioquic (hq-interop)"}[k]
            for k in by_name[name].clients
        )
        print(f"| {name} | {status} | {clients} | {why} |")
    failed = [name for name, status, _, _ in results if status == FAIL]
    if args.keep or failed:
        print(f"\nlogs: {root}")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0
