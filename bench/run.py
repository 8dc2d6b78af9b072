#!/usr/bin/env python3
"""Benchmark edgecorn against Hypercorn, Uvicorn and Granian in one run; print the ratios.

    python bench/run.py                  # 5 s per measurement
    python bench/run.py --repeat 3       # median and (min-max) of 3 interleaved rounds
    python bench/run.py --json run.json  # also record every run as JSON

Each server serves bench/app.py (a hello-world ASGI app) pinned to one core
(`taskset -c 0`); the load generator runs pinned to another (`taskset -c 1`):
wrk for HTTP/1.1 cleartext, h2load for HTTP/2 over TLS, and ngtcp2's example
client gtlsclient for HTTP/3 (requests/s, and MB/s of 1 MiB downloads). Servers
and load go to loopback only, every load run is bounded in time and count, and
every server is stopped (its whole process group) when its measurement ends, on
errors and on Ctrl-C.

Absolute numbers move a lot on a shared machine; compare the ratios of one run.
To add a protocol, add a `Protocol` to PROTOCOLS and teach the servers'
`command` functions how to serve it (return None for "not supported").
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APP = "bench.app:app"
BODY = b"Hello, world!"
BIG_BODY = bytes(i % 251 for i in range(1 << 20))  # bench/app.py's /1m, byte for byte
HOST = "127.0.0.1"  # loopback only
MAX_REQUESTS = 100_000_000  # h2load does not reconnect: no server may retire a connection
START_TIMEOUT = 30.0  # seconds for a server to accept connections
STOP_TIMEOUT = 5.0  # seconds for each of SIGINT and SIGTERM before SIGKILL
SLACK = 30.0  # seconds a load run may overrun its duration before it is killed
H3_MAX_PROCESSES = 2000  # gtlsclient processes one HTTP/3 load run may start, at most


# --------------------------------------------------------------------------- results


@dataclass
class Result:
    rps: float | None = None
    requests: int | None = None  # completed requests in the measurement
    seconds: float | None = None  # how long the load generator says it measured
    succeeded: int | None = None
    failed: int = 0  # requests that failed, errored, timed out or were not 2xx/3xx
    latency_ms: float | None = None  # mean latency
    server_cpu: float | None = None  # server CPU time / wall time (1.0 = one core busy)
    error: str | None = None  # the server or the load generator did not run
    notes: list[str] = field(default_factory=list)
    unsupported: bool = False

    @property
    def flagged(self) -> bool:
        if self.unsupported:
            return False
        return self.error is not None or self.failed > 0 or self.rps is None


# --------------------------------------------------------------------------- load generators


def _run_tool(argv: list[str], timeout: float) -> str:
    """Run a load generator to completion (bounded) and return its stdout+stderr."""
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"{argv[0] if argv[0] != 'taskset' else argv[2]} did not finish within {timeout:.0f} s"
        ) from exc
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = "\n".join(out.strip().splitlines()[-5:])
        raise RuntimeError(f"{Path(argv[0]).name} exited {proc.returncode}: {tail}")
    return out


def _size(value: str, unit: str) -> float:
    return float(value) * {"": 1, "k": 1e3, "M": 1e6, "G": 1e9}.get(unit, 1)


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def parse_wrk(out: str) -> Result:
    result = Result()
    if m := re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M):
        result.rps = float(m.group(1))
    if m := re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)\b", out, re.M):
        result.requests = int(m.group(1))
        result.seconds = _ms(m.group(2), m.group(3)) / 1e3
    if m := re.search(r"^\s*Latency\s+([\d.]+)(us|ms|s|m)\b", out, re.M):
        result.latency_ms = _ms(m.group(1), m.group(2))
    failed = 0
    if m := re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out):
        errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, m.groups()), strict=True)
        )
        if sum(errors.values()):
            failed += sum(errors.values())
            result.notes.append(
                "socket errors: " + ", ".join(f"{k} {v}" for k, v in errors.items() if v)
            )
    if m := re.search(r"Non-2xx or 3xx responses: (\d+)", out):
        failed += int(m.group(1))
        result.notes.append(f"{m.group(1)} non-2xx/3xx responses")
    result.failed = failed
    if result.requests is not None:
        result.succeeded = max(result.requests - failed, 0)
    if result.rps is None:
        result.error = "no 'Requests/sec:' in wrk's output"
    return result


def parse_h2load(out: str) -> Result:
    result = Result()
    if m := re.search(r"^finished in ([\d.]+)(us|ms|s|m), ([\d.]+) req/s", out, re.M):
        result.seconds = _ms(m.group(1), m.group(2)) / 1e3
        result.rps = float(m.group(3))
    if m := re.search(
        r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
        r"(\d+) failed, (\d+) errored, (\d+) timeout",
        out,
        re.M,
    ):
        _total, _started, done, ok, failed, errored, timeout = map(int, m.groups())
        result.requests, result.succeeded = done, ok
        result.failed = failed + errored + timeout
        if result.failed:
            result.notes.append(f"{failed} failed, {errored} errored, {timeout} timed out")
    if m := re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out, re.M):
        bad = int(m.group(3)) + int(m.group(4))
        if bad:
            result.notes.append(f"{bad} 4xx/5xx responses")
            result.failed = max(result.failed, bad)
    if m := re.search(r"^time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)\b", out, re.M):
        result.latency_ms = _ms(m.group(1), m.group(2))
    if m := re.search(r"^Application protocol: (\S+)", out, re.M):
        if m.group(1) != "h2":
            result.notes.append(f"negotiated {m.group(1)}, not h2")
            result.error = f"negotiated {m.group(1)}, not h2"
    elif "No protocol negotiated" in out:
        result.error = "no protocol negotiated (ALPN h2 refused?)"
    if result.rps is None and result.error is None:
        result.error = "no 'finished in ..., N req/s' in h2load's output"
    return result


# --------------------------------------------------------------------------- protocols


@dataclass
class Settings:
    duration: float
    warmup: float
    connections: int  # wrk
    h2_clients: int
    h2_streams: int
    h3_clients: int  # gtlsclient processes running at once
    h3_requests: int  # requests per gtlsclient process (one connection each)
    h3_downloads: int  # 1 MiB downloads per gtlsclient process
    client_cpu: str | None
    server_cpu: str | None
    h3_download_clients: int = 1  # gtlsclient processes downloading at once


def _pin(cpu: str | None, argv: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *argv] if cpu is not None else argv


def _cpus(spec: str) -> set[int]:
    """taskset's list syntax ("1", "0,2", "2-3") as a set of core numbers."""
    cpus: set[int] = set()
    for part in spec.split(","):
        first, _, last = part.partition("-")
        cpus.update(range(int(first), int(last or first) + 1))
    return cpus


def wrk_load(url: str, seconds: float, s: Settings) -> Result:
    secs = max(1, round(seconds))
    argv = _pin(
        s.client_cpu, ["wrk", "-t1", f"-c{s.connections}", f"-d{secs}s", "--timeout", "5s", url]
    )
    return parse_wrk(_run_tool(argv, secs + SLACK))


def h2load_load(url: str, seconds: float, s: Settings) -> Result:
    secs = max(1, round(seconds))
    argv = _pin(
        s.client_cpu,
        [
            "h2load",
            "-D",
            str(secs),
            "-c",
            str(s.h2_clients),
            "-m",
            str(s.h2_streams),
            "-t",
            "1",
            url,
        ],
    )
    return parse_h2load(_run_tool(argv, secs + SLACK))


def h1_smoke(port: int, timeout: float) -> None:
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
    finally:
        conn.close()
    if response.status != 200 or body != BODY:
        raise RuntimeError(f"GET / answered {response.status} {body[:60]!r}")


def h2_smoke(port: int, timeout: float) -> None:
    out = _run_tool(["h2load", "-n", "1", "-c", "1", f"https://{HOST}:{port}/"], timeout)
    result = parse_h2load(out)
    if result.error or result.succeeded != 1:
        raise RuntimeError(result.error or f"1 h2 request: {result.notes or out[-300:]}")


# HTTP/3: ngtcp2's example client (Debian's h2load has no QUIC). It exits 0 even
# when the handshake or the requests fail, so successes are counted from what it
# prints (one ":status" line and one "closed with error code 256" = H3_NO_ERROR
# line per complete response) or, for downloads, from the files it saved. Its
# -q would hide the response lines too, so its (verbose) log goes to a file. Its C
# stdio log lines go to an unbuffered stderr, one write(2) each, ~31 a request: stdbuf
# buffers them (a write per 64 KiB; the C++ ones still flush, ~7 a request): its CPU per
# request fell from ~65 to ~51 us (strace -c; 10 x -n 500 against edgecorn on qh3), so one
# load core keeps a fast server busier. (Only a run that fails anyway kills a client.)
GTLSCLIENT = [
    "stdbuf",
    "-e",
    "64K",
    "gtlsclient",
    "--exit-on-all-streams-close",
    "--no-quic-dump",
    "--no-http-dump",
    "--handshake-timeout=5s",
    "--timeout=30s",
]


@dataclass
class H3Count:
    ok: int = 0
    failed: int = 0
    statuses: dict[str, int] = field(default_factory=dict)  # non-200 statuses seen
    stream_errors: int = 0  # streams closed with an error other than H3_NO_ERROR
    no_h3: int = 0  # clients that did not complete a handshake with ALPN h3
    sample: str = ""  # the end of the first failing client's log, without the debug lines

    def add(self, other: H3Count) -> None:
        self.ok += other.ok
        self.failed += other.failed
        for k, v in other.statuses.items():
            self.statuses[k] = self.statuses.get(k, 0) + v
        self.stream_errors += other.stream_errors
        self.no_h3 += other.no_h3
        self.sample = self.sample or other.sample

    def notes(self) -> list[str]:
        notes = []
        if self.no_h3:
            notes.append(f"{self.no_h3} gtlsclient connection(s) without an h3 handshake")
        if self.statuses:
            notes.append("statuses " + ", ".join(f"{k}: {v}" for k, v in self.statuses.items()))
        if self.stream_errors:
            notes.append(f"{self.stream_errors} streams closed with an error")
        if self.sample:
            notes.append(f"a failing gtlsclient ended with: {self.sample}")
        return notes


def parse_gtlsclient(out: bytes, expected: int) -> H3Count:
    """Count the complete 200 responses in gtlsclient's log of `expected` requests."""
    count = H3Count()
    ok = out.count(b"[:status: 200]")
    for status in re.findall(rb"\[:status: (\d+)\]", out):
        if status != b"200":
            key = status.decode()
            count.statuses[key] = count.statuses.get(key, 0) + 1
    closed = re.findall(rb"^HTTP stream \d+ closed with error code (\d+)", out, re.M)
    count.stream_errors = sum(code != b"256" for code in closed)
    if b"Negotiated ALPN is h3" not in out:
        count.no_h3 = 1
    count.ok = min(ok, len(closed) - count.stream_errors)
    count.failed = expected - count.ok
    if count.failed or count.no_h3:
        lines = [
            line
            for line in out.decode(errors="replace").splitlines()
            if line.strip() and not re.match(r"I\d{8} ", line)
        ]
        count.sample = " | ".join(lines[-4:])[:400]
    return count


def _h3_target(url: str) -> tuple[str, str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.hostname or HOST, str(parts.port), parts.path or "/"


def _h3_pool(
    argv_for: Callable[[int, Path], tuple[list[str], int]],
    count: Callable[[bytes, int, Path], H3Count],
    seconds: float,
    s: Settings,
) -> tuple[H3Count, int, float, float]:
    """Keep s.h3_clients gtlsclient processes running until `seconds` have passed.

    A process that ends is counted and replaced until the deadline; the run then
    waits for the ones still going. Returns the counts, how many processes ran,
    the wall time from the first start to the last exit and the clients' CPU
    time / wall time.
    """
    total = H3Count()
    started = 0
    running: dict[int, tuple[subprocess.Popen[bytes], Path, int]] = {}
    work = Path(tempfile.mkdtemp(prefix="edgecorn-bench-h3-"))
    # Counting and replacing clients is work too: do it on the load generator's core.
    affinity = os.sched_getaffinity(0)
    if s.client_cpu is not None:
        os.sched_setaffinity(0, _cpus(s.client_cpu))
    usage0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    deadline, hard_deadline = t0 + seconds, t0 + seconds + SLACK

    def spawn(slot: int) -> None:
        nonlocal started
        run_dir = work / str(started)
        run_dir.mkdir()
        argv, expected = argv_for(started, run_dir)
        with open(run_dir / "log", "wb") as log:
            proc = subprocess.Popen(
                _pin(s.client_cpu, argv),
                cwd=run_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        running[slot] = (proc, run_dir, expected)
        started += 1

    def reap(slot: int) -> None:
        _proc, run_dir, expected = running.pop(slot)
        total.add(count((run_dir / "log").read_bytes(), expected, run_dir))
        shutil.rmtree(run_dir, ignore_errors=True)

    try:
        for slot in range(s.h3_clients):
            spawn(slot)
        while running:
            time.sleep(0.01)
            now = time.monotonic()
            if now > hard_deadline:
                raise RuntimeError(f"gtlsclient did not finish within {seconds + SLACK:.0f} s")
            for slot in [k for k, (p, _, _) in running.items() if p.poll() is not None]:
                reap(slot)
                if now < deadline and started < H3_MAX_PROCESSES:
                    spawn(slot)
        wall = time.monotonic() - t0
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = usage.ru_utime + usage.ru_stime - usage0.ru_utime - usage0.ru_stime
        return total, started, wall, cpu / wall
    finally:
        for proc, _, _ in running.values():
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)
        os.sched_setaffinity(0, affinity)


def _h3_result(
    total: H3Count,
    processes: int,
    wall: float,
    client_cpu: float,
    requests_per_process: int,
    unit_size: float,
) -> Result:
    result = Result(
        requests=total.ok + total.failed,
        succeeded=total.ok,
        failed=total.failed,
        seconds=wall,
        rps=total.ok * unit_size / wall if wall > 0 else None,
    )
    result.notes += total.notes()
    result.notes.append(
        f"{processes} gtlsclient connections of {requests_per_process} "
        f"requests, {wall:.2f} s wall, gtlsclient CPU {client_cpu:.0%} "
        "of a core"
    )
    if total.failed:
        result.notes.append(
            f"{total.failed} of {total.ok + total.failed} requests did not complete with 200"
        )
    if total.ok == 0:
        result.rps = None
        result.error = "no HTTP/3 request succeeded"
    return result


def h3_load(url: str, seconds: float, s: Settings) -> Result:
    host, port, path = _h3_target(url)
    argv = [*GTLSCLIENT, "-n", str(s.h3_requests), host, port, f"https://{host}:{port}{path}"]
    total, processes, wall, cpu = _h3_pool(
        lambda _i, _d: (argv, s.h3_requests),
        lambda out, expected, _d: parse_gtlsclient(out, expected),
        seconds,
        s,
    )
    return _h3_result(total, processes, wall, cpu, s.h3_requests, 1.0)


def _count_downloads(out: bytes, expected: int, run_dir: Path) -> H3Count:
    count = parse_gtlsclient(out, expected)
    saved = [f for f in (run_dir / "dl").iterdir()] if (run_dir / "dl").is_dir() else []
    good = sum(f.stat().st_size == len(BIG_BODY) and f.read_bytes() == BIG_BODY for f in saved)
    count.ok = min(count.ok, good)
    count.failed = expected - count.ok
    return count


def h3_download_load(url: str, seconds: float, s: Settings) -> Result:
    """MB/s of 1 MiB GETs: s.h3_downloads distinct URLs (/1m/0 ...) per connection.

    Each download goes to its own file (--download), checked byte for byte.
    """
    host, port, path = _h3_target(url)
    n = s.h3_downloads
    urls = [f"https://{host}:{port}{path.rstrip('/')}/{i}" for i in range(n)]

    def argv_for(_i: int, run_dir: Path) -> tuple[list[str], int]:
        (run_dir / "dl").mkdir()
        return [*GTLSCLIENT, f"--download={run_dir / 'dl'}", host, port, *urls], n

    pool = dataclasses.replace(s, h3_clients=s.h3_download_clients)
    total, processes, wall, cpu = _h3_pool(argv_for, _count_downloads, seconds, pool)
    return _h3_result(total, processes, wall, cpu, n, len(BIG_BODY) / 1e6)


def _h3_fetch(port: int, path: str, timeout: float) -> bytes:
    """One HTTP/3 GET with gtlsclient; the 200 body, or RuntimeError."""
    with tempfile.TemporaryDirectory(prefix="edgecorn-bench-h3-") as tmp:
        out = _run_tool(
            [*GTLSCLIENT, f"--download={tmp}", HOST, str(port), f"https://{HOST}:{port}{path}"],
            timeout,
        ).encode()
        count = parse_gtlsclient(out, 1)
        if count.no_h3 or count.ok != 1:
            tail = out.decode(errors="replace").strip().splitlines()[-3:]
            raise RuntimeError(f"1 h3 request: {count.notes() or 'no 200'}: {' | '.join(tail)}")
        name = path.rstrip("/").rpartition("/")[2] or "index.html"
        return (Path(tmp) / name).read_bytes()


def h3_smoke(port: int, timeout: float) -> None:
    body = _h3_fetch(port, "/", timeout)
    if body != BODY:
        raise RuntimeError(f"h3 GET / answered {body[:60]!r}")


def h3_download_smoke(port: int, timeout: float) -> None:
    body = _h3_fetch(port, "/1m", timeout)
    if body != BIG_BODY:
        raise RuntimeError(f"h3 GET /1m answered {len(body)} bytes, not the 1 MiB expected")


@dataclass
class Protocol:
    name: str  # key used by the servers' command functions and in --json
    label: str  # shown in the table
    tls: bool
    tool: str  # executable that must be on PATH
    load: Callable[[str, float, Settings], Result]
    smoke: Callable[[int, float], None]  # one real request: the server answers correctly
    serve: str = ""  # what the servers' command functions are asked for; default: name
    path: str = "/"
    unit: str = "req/s"  # what Result.rps holds for this protocol

    def __post_init__(self) -> None:
        self.serve = self.serve or self.name

    def url(self, port: int) -> str:
        return f"{'https' if self.tls else 'http'}://{HOST}:{port}{self.path}"


PROTOCOLS = [
    Protocol("h1", "HTTP/1.1 (wrk)", False, "wrk", wrk_load, h1_smoke),
    Protocol("h2", "HTTP/2 TLS (h2load)", True, "h2load", h2load_load, h2_smoke),
    Protocol("h3", "HTTP/3 (gtlsclient)", True, "gtlsclient", h3_load, h3_smoke),
    Protocol(
        "h3-1m",
        "HTTP/3 1 MiB, MB/s (gtlsclient)",
        True,
        "gtlsclient",
        h3_download_load,
        h3_download_smoke,
        serve="h3",
        path="/1m",
        unit="MB/s",
    ),
]


# --------------------------------------------------------------------------- servers


@dataclass
class Context:
    tmp: Path
    certfile: str
    keyfile: str
    extra: dict[str, list[str]]


def free_port() -> int:
    """A loopback port free for both TCP and UDP (HTTP/3 listens on the UDP one)."""
    for _ in range(100):
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind((HOST, port))
            except OSError:
                continue
        return port
    raise RuntimeError("no loopback port free for both TCP and UDP")


def edgecorn_cmd(proto: str, port: int, ctx: Context) -> list[str] | None:
    config = ctx.tmp / "edgecorn.yaml"
    config.write_text(f"keep_alive_max_requests: {MAX_REQUESTS}\n")
    # No -k: the default (auto) configuration is what a user gets; variants add flags.
    argv = [sys.executable, "-m", "edgecorn", APP, "--workers", "0", "-c", str(config)]
    if proto == "h1":
        # --bind defaults to 127.0.0.1:8000; keep it off that port, which may be in use.
        argv += ["--insecure-bind", f"{HOST}:{port}", "--bind", f"{HOST}:{free_port()}"]
    elif proto in ("h2", "h3"):
        # A TLS bind also listens for QUIC (HTTP/3) on the same port number, over UDP.
        argv += ["--bind", f"{HOST}:{port}", "--certfile", ctx.certfile, "--keyfile", ctx.keyfile]
    else:
        return None
    return argv + ctx.extra.get("edgecorn", [])


def hypercorn_argv(config: Path, port: int, app: str = APP) -> list[str]:
    """Hypercorn on uvloop, one worker, on `port` (bench/memory.py starts it the same way)."""
    return [sys.executable, "-m", "hypercorn", app, "-k", "uvloop", "--workers", "1",
            "--config", str(config), "--bind", f"{HOST}:{port}"]  # fmt: skip


def uvicorn_argv(port: int, app: str = APP) -> list[str]:
    """Uvicorn as its users run it fast (httptools, uvloop), on `port` (also bench/edge.py's
    upstream and bench/memory.py's peer)."""
    return [sys.executable, "-m", "uvicorn", app, "--http", "httptools", "--loop", "uvloop",
            "--no-access-log", "--host", HOST, "--port", str(port)]  # fmt: skip


def hypercorn_cmd(proto: str, port: int, ctx: Context) -> list[str] | None:
    config = ctx.tmp / "hypercorn.toml"
    config.write_text(f"keep_alive_max_requests = {MAX_REQUESTS}\n")
    argv = hypercorn_argv(config, port)
    if proto == "h2":
        argv += ["--certfile", ctx.certfile, "--keyfile", ctx.keyfile]
    elif proto == "h3":
        # HTTP/3 (aioquic) on UDP `port`; the TLS TCP bind on the same number is only
        # there so the readiness check has something to connect to.
        argv += [
            "--quic-bind",
            f"{HOST}:{port}",
            "--certfile",
            ctx.certfile,
            "--keyfile",
            ctx.keyfile,
        ]
    elif proto != "h1":
        return None
    return argv + ctx.extra.get("hypercorn", [])


def uvicorn_cmd(proto: str, port: int, ctx: Context) -> list[str] | None:
    if proto != "h1":
        return None  # Uvicorn serves HTTP/1.1 only
    return uvicorn_argv(port) + ctx.extra.get("uvicorn", [])


def granian_cmd(proto: str, port: int, ctx: Context) -> list[str] | None:
    """Granian (Rust, hyper): HTTP/1.1 and HTTP/2 over TLS (ALPN); no HTTP/3."""
    argv = [
        sys.executable,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--loop",
        "uvloop",
        "--workers",
        "1",
        "--runtime-threads",
        "1",
        "--no-access-log",
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    if proto == "h1":
        argv += ["--http", "1"]
    elif proto == "h2":
        argv += ["--http", "auto", "--ssl-certificate", ctx.certfile, "--ssl-keyfile", ctx.keyfile]
    else:
        return None
    return argv + [APP, *ctx.extra.get("granian", [])]


SERVERS: dict[str, Callable[[str, int, Context], list[str] | None]] = {
    "edgecorn": edgecorn_cmd,
    "hypercorn": hypercorn_cmd,
    "uvicorn": uvicorn_cmd,
    "granian": granian_cmd,
}
PEERS = ["hypercorn", "uvicorn", "granian"]


@dataclass(frozen=True)
class Variant:
    """One edgecorn configuration measured as its own row: an engine or loop choice."""

    name: str  # --engines key
    kind: str  # what it chooses: "loop", "http1", "http2" or "quic"
    protocols: tuple[str, ...]  # Protocol.serve values it applies to
    args: tuple[str, ...]


# Every choice a user has; the default row is measured once, and each choice that differs
# from what `auto` resolves to here gets a row of its own.
VARIANTS = [
    Variant("uvloop", "loop", ("h1", "h2", "h3"), ("-k", "uvloop")),
    Variant("asyncio", "loop", ("h1",), ("-k", "asyncio")),  # the loop matters most on h1
    Variant("httptools", "http1", ("h1",), ("--http1-parser", "httptools")),
    Variant("h11", "http1", ("h1",), ("--http1-parser", "h11")),
    Variant("h2", "http2", ("h2",), ("--http2-engine", "h2")),
    Variant("jh2", "http2", ("h2",), ("--http2-engine", "jh2")),
    # `auto` stays on aioquic (qh3 2.1 cannot answer aioquic clients' Initials), so the fast
    # engine is measured as its own row: issue 12's h3 targets are for it.
    Variant("aioquic", "quic", ("h3",), ("--quic-engine", "aioquic")),
    Variant("qh3", "quic", ("h3",), ("--quic-engine", "qh3")),
]
DEFAULT_VARIANTS = "asyncio,h11,h2,jh2,aioquic,qh3"  # what --engines measures unless told


def defaults() -> dict[str, str]:
    """What `auto` picks on this machine, as edgecorn itself decides it."""
    sys.path.insert(0, str(ROOT))
    from edgecorn.protocol.engines import installed, resolve_h2, resolve_worker_class

    return {
        "loop": resolve_worker_class("auto"),
        "http2": resolve_h2("auto"),
        "http1": "httptools" if installed("httptools") else "h11",
        "quic": "aioquic",
    }


def runners(
    proto: Protocol, servers: list[str], variants: list[Variant], auto: dict[str, str], ctx: Context
) -> list[str]:
    """Who is measured for one protocol: edgecorn, its variants (edgecorn:NAME), peers."""
    out = []
    for name in servers:
        if SERVERS[name](proto.serve, 0, ctx) is None:
            continue
        out.append(name)
        if name == "edgecorn":
            out += [
                f"edgecorn:{v.name}"
                for v in variants
                if proto.serve in v.protocols and auto.get(v.kind) != v.name
            ]
    return out


def command(runner: str, proto: str, port: int, ctx: Context) -> list[str] | None:
    name, _, variant = runner.partition(":")
    argv = SERVERS[name](proto, port, ctx)
    if argv is not None and variant:
        argv += next(v.args for v in VARIANTS if v.name == variant)
    return argv


class Server:
    """A server process in its own session, so the whole group can be stopped."""

    def __init__(self, name: str, argv: list[str], port: int, log: Path) -> None:
        self.name, self.argv, self.port, self.log = name, argv, port, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        )
        env.pop("PYTHONDEVMODE", None)
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited {self.proc.returncode} on start: {self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.5):
                return
            time.sleep(0.1)
        raise RuntimeError(
            f"not accepting on port {self.port} after {timeout:.0f} s: {self.log_tail()}"
        )

    def log_tail(self, lines: int = 6) -> str:
        try:
            text = self.log.read_text(errors="replace").strip()
        except OSError:
            return ""
        return " | ".join(text.splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """user+system CPU of every live process in the server's process group."""
        if self.proc is None:
            return 0.0
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue
            if int(fields[2]) == self.proc.pid:  # pgrp
                total += int(fields[11]) + int(fields[12])  # utime + stime
        return total / tick

    def stop(self) -> None:
        if self.proc is None:
            return
        for sig, wait in (
            (signal.SIGINT, STOP_TIMEOUT),
            (signal.SIGTERM, STOP_TIMEOUT),
            (signal.SIGKILL, STOP_TIMEOUT),
        ):
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(wait)
        # Workers that outlived their parent are in the same group: end them too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc = None


def measure(name: str, proto: Protocol, ctx: Context, s: Settings) -> Result:
    port = free_port()
    argv = command(name, proto.serve, port, ctx)
    if argv is None:
        return Result(unsupported=True)
    log = ctx.tmp / f"{name.replace(':', '-')}-{proto.name}.log"
    server = Server(name, _pin(s.server_cpu, argv), port, log)
    try:
        server.start()
        server.wait_ready(START_TIMEOUT)
        proto.smoke(port, 10.0)
        if s.warmup > 0:
            proto.load(proto.url(port), s.warmup, s)
        if server.proc is None or server.proc.poll() is not None:
            raise RuntimeError(f"died during warm-up: {server.log_tail()}")
        cpu0, t0 = server.cpu_seconds(), time.monotonic()
        result = proto.load(proto.url(port), s.duration, s)
        if result.seconds is not None and abs(result.seconds - s.duration) > 0.1 * s.duration:
            result.notes.append(f"measured {result.seconds:.2f} s, not {s.duration:g} s")
        result.server_cpu = (server.cpu_seconds() - cpu0) / (time.monotonic() - t0)
        if result.server_cpu < 0.7:
            result.notes.append(
                "server core not saturated: other load on the machine, "
                "or the load generator was the limit"
            )
        if server.proc.poll() is not None:
            result.notes.append(f"server exited during the run: {server.log_tail()}")
            result.error = result.error or "server exited during the run"
        with contextlib.suppress(OSError):  # edgecorn says what `auto` picked
            if m := re.search(r"Worker \d+: (.*)", server.log.read_text(errors="replace")):
                result.notes.append(m.group(1))
        return result
    except (RuntimeError, OSError) as exc:
        return Result(error=f"{exc}")
    finally:
        server.stop()


# --------------------------------------------------------------------------- report


@dataclass
class Row:
    """Every run of one server (or edgecorn variant) on one protocol, in round order."""

    runs: list[Result]

    @property
    def values(self) -> list[float]:
        return [r.rps for r in self.runs if r.rps is not None]

    @property
    def median(self) -> Result:
        """The median run (by req/s; the lower middle one for an even count), so its
        details belong to one real run; failures and notes of every run are kept."""
        if len(self.runs) == 1:
            return self.runs[0]
        good = [r for r in self.runs if r.rps is not None]
        if not good:
            return self.runs[0]
        median = statistics.median_low(r.rps for r in good if r.rps is not None)
        chosen = next(r for r in good if r.rps == median)
        merged = Result(**{**asdict(chosen), "notes": []})
        merged.failed = sum(r.failed for r in self.runs)
        merged.notes = list(dict.fromkeys(n for r in self.runs for n in r.notes))
        errors = [r.error for r in self.runs if r.error]
        merged.error = chosen.error or (errors[0] if errors else None)
        return merged

    @property
    def spread(self) -> tuple[float, float] | None:
        values = self.values
        return (min(values), max(values)) if len(values) > 1 else None


def ratio(a: Result, b: Result) -> float | None:
    if a.rps is None or b.rps is None or b.rps == 0:
        return None
    return a.rps / b.rps


def round_ratios(a: Row, b: Row) -> list[float]:
    """edgecorn/peer per round: the two ran back to back, so drift mostly cancels."""
    pairs = zip(a.runs, b.runs, strict=False)
    return [r for x, y in pairs if (r := ratio(x, y)) is not None]


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"  # MB/s are small


def cell(row: Row | None) -> str:
    if row is None:
        return "-"
    result = row.median
    if result.unsupported:
        return "n/a"
    if result.rps is None:
        return "error"
    text = _num(result.rps) + ("*" if result.flagged else "")
    if spread := row.spread:
        text += f" ({_num(spread[0])}-{_num(spread[1])})"
    return text


def ratio_cell(a: Row, b: Row | None) -> str:
    if b is None:
        return "n/a"
    r = ratio(a.median, b.median)
    if r is None:
        return "n/a"
    rounds = round_ratios(a, b)
    return f"{r:.2f}x" + (f" ({min(rounds):.2f}-{max(rounds):.2f})" if len(rounds) > 1 else "")


def label(runner: str, auto: dict[str, str], proto: str) -> str:
    if runner == "edgecorn":  # the defaults, named as `auto` resolved them
        engine = {"h1": auto["http1"], "h2": auto["http2"]}.get(proto)
        return f"edgecorn defaults ({auto['loop']}{', ' + engine if engine else ''})"
    variant = runner.partition(":")[2]
    return "edgecorn " + " ".join(next(v.args for v in VARIANTS if v.name == variant))


Table = dict[str, dict[str, Row]]  # protocol -> runner -> runs


def print_table(
    table: Table, servers: list[str], protocols: list[Protocol], auto: dict[str, str]
) -> None:
    """One row per edgecorn configuration; the peers' numbers are on each protocol's
    first row, the ratios on every row."""
    peers = [p for p in PEERS if p in servers]
    head = ["protocol", "edgecorn", *peers, *(f"edgecorn/{p}" for p in peers), "/defaults"]
    rows = []
    for proto in protocols:
        row = table[proto.name]
        mine = [r for r in row if r.startswith("edgecorn")]
        for i, runner in enumerate(mine):
            cells = [f"{proto.label}: {label(runner, auto, proto.serve)}", cell(row[runner])]
            cells += [cell(row.get(p)) if i == 0 else "" for p in peers]
            cells += [ratio_cell(row[runner], row.get(p)) for p in peers]
            # an engine or loop choice against the default configuration, round by round
            cells.append(ratio_cell(row[runner], row.get("edgecorn")) if i else "")
            rows.append(cells)
        if not mine:
            rows.append(
                [proto.label, "-", *(cell(row.get(p)) for p in peers), *("n/a" for _ in peers), ""]
            )
    print_markdown(head, rows)


def print_markdown(head: list[str], rows: list[list[str]]) -> None:
    """A Markdown table, columns padded; the first left-aligned, numbers right (edge.py too)."""
    widths = [max(len(x) for x in col) for col in zip(head, *rows, strict=True)]

    def line(cells: list[str]) -> str:
        padded = (
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )
        return "| " + " | ".join(padded) + " |"

    print(line(head))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for cells in rows:
        print(line(cells))


def print_details(table: Table, protocols: list[Protocol]) -> None:
    flagged = False
    print()
    for proto in protocols:
        for name, row in table[proto.name].items():
            r = row.median
            if r.unsupported:
                continue
            bits = []
            if r.requests is not None:
                bits.append(f"{r.requests:,} requests")
            if r.latency_ms is not None:
                bits.append(f"mean latency {r.latency_ms:.2f} ms")
            if r.server_cpu is not None:
                bits.append(f"server CPU {r.server_cpu:.0%} of a core")
                if r.rps:  # what a run bound by its load generator still compares
                    per = "MB" if proto.unit == "MB/s" else "response"
                    bits.append(f"{r.server_cpu / r.rps * 1e6:,.0f} µs server CPU per {per}")
            if r.failed:
                bits.append(f"{r.failed:,} FAILED")
            if r.error:
                bits.append(f"ERROR: {r.error}")
            if len(row.runs) > 1:
                bits.append(
                    "runs: "
                    + ", ".join(_num(x.rps) if x.rps is not None else "error" for x in row.runs)
                )
            bits += r.notes
            flagged |= r.flagged
            print(f"  {proto.name:5} {name:18} " + "; ".join(b for b in bits if b))
    if flagged:
        print("\n* flagged: the run had failed requests or errors; its number is not comparable.")


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for dist in (
        "hypercorn",
        "uvicorn",
        "granian",
        "h2",
        "jh2",
        "aioquic",
        "qh3",
        "uvloop",
        "httptools",
        "h11",
    ):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out["edgecorn_commit"] = (
            subprocess.run(
                ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            ).stdout.strip()
            or None
        )
    return out


def record(
    table: Table,
    settings: Settings,
    args: argparse.Namespace,
    pin: bool,
    protocols: list[Protocol],
    auto: dict[str, str],
    started: float,
    load_before: tuple[float, float, float],
) -> dict[str, Any]:
    """Everything a later comparison needs: every run, medians, spreads, per-round ratios,
    what `auto` picked, the versions and how busy the machine was."""
    rows, ratios = [], []
    for proto in protocols:
        row = table[proto.name]
        for runner, runs in row.items():
            median = runs.median
            mine = runner.startswith("edgecorn")
            rows.append(
                {
                    "protocol": proto.name,
                    "unit": proto.unit,
                    "runner": runner,
                    "label": label(runner, auto, proto.serve) if mine else runner,
                    "median": median.rps,
                    "min": runs.spread[0] if runs.spread else median.rps,
                    "max": runs.spread[1] if runs.spread else median.rps,
                    "runs": [r.rps for r in runs.runs],
                    "flagged": median.flagged,
                    "details": asdict(median),
                }
            )
            if not mine:
                continue
            for peer in PEERS:
                if peer in row and not row[peer].median.unsupported:
                    rounds = round_ratios(runs, row[peer])
                    ratios.append(
                        {
                            "protocol": proto.name,
                            "runner": runner,
                            "peer": peer,
                            "median_ratio": ratio(median, row[peer].median),
                            "min": min(rounds, default=None),
                            "max": max(rounds, default=None),
                            "per_round": rounds,
                        }
                    )
    return {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "argv": sys.argv[1:],
        "settings": asdict(settings) | {"repeat": args.repeat, "pinned": pin},
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "auto": auto,
        "versions": _versions(),
        "rows": rows,
        "ratios": ratios,
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--duration", type=int, default=5, help="seconds per measurement")
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="seconds of load before each measurement (default 1)",
    )
    p.add_argument("--quick", action="store_true", help="2 s measurements, 1 s warm-up")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure each server N times, interleaved; report the median and the spread (min-max)",
    )
    p.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"comma-separated subset of {','.join(SERVERS)}",
    )
    p.add_argument(
        "--engines",
        default=DEFAULT_VARIANTS,
        help="edgecorn choices measured as rows of their own, besides the default "
        f"one ('' for none): a subset of {','.join(v.name for v in VARIANTS)}; "
        "a choice equal to the default is not measured twice",
    )
    p.add_argument(
        "--protocols",
        default=",".join(pr.name for pr in PROTOCOLS),
        help=f"comma-separated subset of {','.join(pr.name for pr in PROTOCOLS)} "
        "(h3 includes h3-1m)",
    )
    p.add_argument("--connections", type=int, default=64, help="wrk connections (-c)")
    p.add_argument("--h2-clients", type=int, default=16, help="h2load clients (-c)")
    p.add_argument("--h2-streams", type=int, default=10, help="h2load streams per client (-m)")
    p.add_argument(
        "--h3-clients",
        type=int,
        default=4,
        help="gtlsclient processes (one QUIC connection each) at once",
    )
    p.add_argument(
        "--h3-requests",
        type=int,
        default=500,
        help="requests per gtlsclient connection (-n) for h3",
    )
    # One connection at a time, as issue 12 defines the download target: many short
    # connections would measure handshakes and process starts rather than the data path.
    p.add_argument(
        "--h3-downloads",
        type=int,
        default=16,
        help="1 MiB downloads per gtlsclient connection for h3-1m",
    )
    p.add_argument(
        "--h3-download-clients",
        type=int,
        default=1,
        help="gtlsclient processes downloading at once for h3-1m",
    )
    p.add_argument("--server-cpu", default="0", help="core for the server (taskset -c)")
    p.add_argument("--client-cpu", default="1", help="core for the load generator")
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    for name in SERVERS:
        p.add_argument(
            f"--{name}-args",
            default="",
            metavar="ARGS",
            help=f"extra command-line arguments for {name}, one string: "
            f"--{name}-args='--flag value'",
        )
    p.add_argument(
        "--json",
        metavar="FILE",
        default=None,
        help="also write the whole record (every run) as JSON to FILE; "
        "'-' prints it instead of the table",
    )
    args = p.parse_args(argv)
    if args.quick:
        args.duration = 2
    if args.warmup is None:
        args.warmup = 1
    if args.duration <= 0 or args.warmup < 0 or args.repeat < 1:
        p.error("--duration must be > 0, --warmup >= 0, --repeat >= 1")
    if args.duration > 60 or args.repeat > 10:
        p.error("--duration is at most 60 s and --repeat at most 10: keep each run bounded")
    if min(args.h3_clients, args.h3_requests, args.h3_downloads, args.h3_download_clients) < 1:
        p.error("--h3-clients, --h3-requests and --h3-downloads must be >= 1")
    args.servers = [x for x in args.servers.split(",") if x]
    args.protocols = [x for x in args.protocols.split(",") if x]
    names = {v.name: v for v in VARIANTS}
    args.engines = [x for x in args.engines.split(",") if x]
    for x in args.engines:
        if x not in names:
            p.error(f"unknown engine choice {x!r}")
    args.engines = [names[x] for x in args.engines]
    for x in args.servers:
        if x not in SERVERS:
            p.error(f"unknown server {x!r}")
    known = {pr.name for pr in PROTOCOLS}
    for x in args.protocols:
        if x not in known:
            p.error(f"unknown protocol {x!r}")
    # A protocol's name also selects its variants: h3 is h3 and h3-1m.
    args.protocols = [
        pr.name
        for pr in PROTOCOLS
        if any(pr.name == x or pr.name.startswith(x + "-") for x in args.protocols)
    ]
    return args


def check_tools(protocols: list[Protocol], pin: bool) -> list[str]:
    missing = []
    needed = {pr.tool: pr for pr in protocols}
    packages = {
        "wrk": "wrk",
        "h2load": "nghttp2-client",
        "gtlsclient": "ngtcp2-client",
        "taskset": "util-linux",
    }
    for tool in [*needed, *(["taskset"] if pin else [])]:
        if shutil.which(tool) is None:
            missing.append(f"{tool} (apt-get install {packages.get(tool, tool)})")
    return missing


def _raise_interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    protocols = [pr for pr in PROTOCOLS if pr.name in args.protocols]
    pin = not args.no_pin
    if pin and (os.cpu_count() or 1) < 2:
        print("warning: fewer than 2 cores; not pinning", file=sys.stderr)
        pin = False
    missing = check_tools(protocols, pin)
    if missing:
        print("missing: " + "; ".join(missing), file=sys.stderr)
        return 2
    settings = Settings(
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        h2_clients=args.h2_clients,
        h2_streams=args.h2_streams,
        h3_clients=args.h3_clients,
        h3_requests=args.h3_requests,
        h3_downloads=args.h3_downloads,
        h3_download_clients=args.h3_download_clients,
        client_cpu=args.client_cpu if pin else None,
        server_cpu=args.server_cpu if pin else None,
    )
    signal.signal(signal.SIGTERM, _raise_interrupt)  # run the finally blocks on kill too
    auto = defaults()
    started, load_before = time.time(), os.getloadavg()

    table: Table = {pr.name: {} for pr in protocols}
    with tempfile.TemporaryDirectory(prefix="edgecorn-bench-") as tmp:
        ctx = Context(
            Path(tmp), "", "", {name: getattr(args, f"{name}_args").split() for name in SERVERS}
        )
        if any(pr.tls for pr in protocols):
            sys.path.insert(0, str(ROOT))
            from edgecorn.certs import ensure_dev_certs

            ctx.certfile, ctx.keyfile, _ = ensure_dev_certs(Path(tmp) / "certs")
        plan = {pr.name: runners(pr, args.servers, args.engines, auto, ctx) for pr in protocols}
        total = args.repeat * sum(len(v) for v in plan.values())
        bound = total * (settings.duration + settings.warmup + 3)
        print(f"{total} measurements, about {bound / 60:.0f} min", file=sys.stderr)
        done = 0
        try:
            for proto in protocols:
                serving = plan[proto.name]
                for name in args.servers:
                    if name not in serving:
                        table[proto.name][name] = Row([Result(unsupported=True)])
                for name in serving:
                    table[proto.name][name] = Row([])
                for round_ in range(args.repeat):
                    # Alternate the order between rounds so drift hits every server alike.
                    order = serving if round_ % 2 == 0 else serving[::-1]
                    for name in order:
                        done += 1
                        print(
                            f"[{done}/{total}] {proto.name} {name} ...",
                            end=" ",
                            file=sys.stderr,
                            flush=True,
                        )
                        result = measure(name, proto, ctx, settings)
                        table[proto.name][name].runs.append(result)
                        print(
                            f"{result.rps:,.0f} {proto.unit}"
                            if result.rps is not None
                            else f"error: {result.error}",
                            file=sys.stderr,
                            flush=True,
                        )
        except KeyboardInterrupt:
            print("\ninterrupted", file=sys.stderr)
            return 130

    out = record(table, settings, args, pin, protocols, auto, started, load_before)
    if args.json is not None:
        text = json.dumps(out, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    if args.json != "-":
        print(
            f"\nreq/s (MB/s where the row says so), median of {args.repeat} run(s)"
            f"{' (min-max)' if args.repeat > 1 else ''}; {settings.duration:g} s per "
            f"measurement after {settings.warmup:g} s warm-up; server on core "
            f"{settings.server_cpu}, load on core {settings.client_cpu}; wrk "
            f"-c{settings.connections}, h2load -c{settings.h2_clients} "
            f"-m{settings.h2_streams}, gtlsclient {settings.h3_clients} at once x -n "
            f"{settings.h3_requests} (1 MiB: {settings.h3_download_clients} at once x "
            f"{settings.h3_downloads}); load average "
            f"{load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after\n"
        )
        print_table(table, args.servers, protocols, auto)
        print_details(table, protocols)
    failed = any(
        r.median.flagged for row in table.values() for r in row.values() if not r.median.unsupported
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
