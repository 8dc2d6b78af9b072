"""Soak: many requests per protocol against one edgecorn, and what it keeps afterwards.

    python bench/soak.py                         # 100k keep-alive requests per protocol
    python bench/soak.py --requests 1000000      # the full run (issue 14: 1M per protocol)
    python bench/soak.py --requests 20000 --new 2000 --protocols h1,h2 -k trio

One edgecorn process (`--workers 0`, so its PID is the one measured) serves this module's
app (`bench.soak:app`: bench/app.py's hello world plus `/_soak`, which reports the
server's live tasks and open file descriptors). For each protocol it runs `--requests`
requests on keep-alive connections and `--new` requests (default a tenth) on a new
connection each, in ten rounds that each do a tenth of every load, and samples the
server's RSS after every round. Printed: per load the requests that succeeded, the RSS
after 10% and after 100% and the growth between them, and the file descriptors and
tasks before the load and after it (once idle connections have timed out).

Load generators: h2load (h1 with --h1 over cleartext, h2 over TLS), ngtcp2's gtlsclient
(h3 keep-alive: one process per connection of 1000 requests) and curl_cffi (h3 on new
connections: a session per request). Every load is bounded in count and each client run by
a timeout. Not part of the test suite; results belong in the notes of the run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.app import app as hello_app  # noqa: E402
from bench.run import GTLSCLIENT, parse_gtlsclient  # noqa: E402

HOST = "127.0.0.1"
ROUNDS = 10
KEEP_ALIVE_TIMEOUT = 2  # seconds: idle connections are gone this long after the load
H2LOAD_CLIENTS = 8
H3_PER_CONNECTION = 1000  # keep-alive h3: requests per gtlsclient connection
NEW_BATCH = 100  # new-connection loads: connections per h2load / parallel gtlsclients
CLIENT_TIMEOUT = 600.0  # seconds any one client run may take


# --------------------------------------------------------------------------- the app


def _live_tasks() -> int:
    try:
        import sniffio

        library = sniffio.current_async_library()
    except Exception:
        library = "asyncio"
    if library == "trio":
        import trio

        count, todo = 0, [trio.lowlevel.current_root_task()]
        while todo:
            task = todo.pop()
            count += 1
            for nursery in task.child_nurseries:
                todo.extend(nursery.child_tasks)
        return count
    import asyncio

    return len(asyncio.all_tasks())


_SNAPSHOT: list[Any] = []  # the last tracemalloc snapshot /_soak took


def _grown(top: int) -> list[str]:
    """With PYTHONTRACEMALLOC set (soak.py --trace): the lines whose allocations grew
    most since the previous call (the first call only takes the baseline)."""
    import tracemalloc

    if not tracemalloc.is_tracing():
        return []
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    previous = _SNAPSHOT[:1]
    _SNAPSHOT[:] = [snapshot]
    if not previous:
        return []
    stats = snapshot.compare_to(previous[0], "traceback")
    return [
        f"{stat.size_diff:+d} B {stat.count_diff:+d} blocks: "
        + " <- ".join(f"{f.filename.rpartition('/')[2]}:{f.lineno}" for f in stat.traceback)
        for stat in stats[:top]
    ]


def _malloc_trim() -> bool:
    """glibc's malloc_trim(0): give the heap's free pages back to the system. What RSS
    drops by is memory that was free but held (fragmentation), not live."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.malloc_trim(0))
    except (OSError, AttributeError):
        return False  # not glibc


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/_soak":
        started = time.perf_counter()
        trimmed = scope["query_string"] == b"trim" and _malloc_trim()
        body = json.dumps(
            {
                "trimmed": trimmed,
                "trim_ms": round((time.perf_counter() - started) * 1000, 3),
                "tasks": _live_tasks(),
                "fds": len(os.listdir("/proc/self/fd")),
                "grown": _grown(12),
                # unreachable objects (connection cycles) gc had not yet freed; asked
                # after the RSS sample, so the sample includes them
                "garbage": gc.collect(),
            }
        ).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return
    await hello_app(scope, receive, send)


# --------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    tls_port: int
    plain_port: int

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))

    def rss_map(self) -> dict[str, int]:
        """RSS (KiB) by kind of mapping, from /proc/PID/smaps: the brk heap (glibc's main
        arena), other anonymous memory (mmap'd blocks, other arenas, thread stacks) and
        file-backed (code, libraries)."""
        kinds = {"heap": 0, "anon": 0, "file": 0}
        kind = "anon"
        with open(f"/proc/{self.proc.pid}/smaps") as fh:
            for line in fh:
                head = line.split()
                if not head[0].endswith(":"):  # a mapping's first line: range perms ... path
                    path = head[5] if len(head) > 5 else ""
                    kind = (
                        "heap" if path == "[heap]" else "file" if path.startswith("/") else "anon"
                    )
                elif head[0] == "Rss:":
                    kinds[kind] += int(head[1])
        return kinds

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stats(self, trim: bool = False) -> dict[str, Any]:
        """The app's view (tasks, fds), less the one connection that asks. With `trim`
        the server calls malloc_trim(0) first."""
        target = b"/_soak?trim" if trim else b"/_soak"
        with socket.create_connection((HOST, self.plain_port), timeout=60) as sock:
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n" % target)
            data = b""
            while len(data) < 65536:
                part = sock.recv(65536)
                if not part:
                    break
                data += part
        stats: dict[str, Any] = json.loads(data.partition(b"\r\n\r\n")[2])
        stats["tasks"] -= 1  # the /_soak request's own task
        stats["fds"] -= 1  # ... and its socket
        return stats

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def start_server(worker_class: str, certdir: Path, trace: int = 0) -> Server:
    from edgecorn.certs import ensure_dev_certs

    certfile, keyfile, _ = ensure_dev_certs(certdir)
    tls_port, plain_port = free_port(), free_port()
    config = certdir / "soak.yaml"
    config.write_text(
        f"keep_alive_timeout: {KEEP_ALIVE_TIMEOUT}\n"
        "keep_alive_max_requests: 1000000000\n"  # h2load and gtlsclient never reconnect
        "loglevel: WARNING\n"
    )
    argv = [
        sys.executable,
        "-m",
        "edgecorn",
        "bench.soak:app",
        "--workers",
        "0",
        "-k",
        worker_class,
        "--bind",
        f"{HOST}:{tls_port}",
        "--certfile",
        str(certfile),
        "--keyfile",
        str(keyfile),
        "--insecure-bind",
        f"{HOST}:{plain_port}",
        "-c",
        str(config),
    ]
    log = open(certdir / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    env = dict(os.environ)
    if trace:
        env["PYTHONTRACEMALLOC"] = str(trace)  # frames per traceback for /_soak's "grown"
    proc = subprocess.Popen(
        argv, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
    )
    server = Server(proc, tls_port, plain_port)
    deadline = time.monotonic() + (120 if trace else 30)
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"edgecorn exited: {(certdir / 'server.log').read_text()[-2000:]}")
        try:
            server.stats()
            time.sleep(1.0)  # the QUIC listener starts after the TCP ones
            return server
        except (OSError, ValueError):
            time.sleep(0.1)
    server.stop()
    raise SystemExit("edgecorn did not start in 30 s")


# --------------------------------------------------------------------------- loads


@dataclass
class Load:
    protocol: str
    keep_alive: bool
    total: int
    ok: int = 0
    failed: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.protocol} {'keep-alive' if self.keep_alive else 'new conns'}"


def _h2load(argv: list[str]) -> tuple[int, int]:
    out = subprocess.run(
        ["h2load", *argv], capture_output=True, text=True, timeout=CLIENT_TIMEOUT
    ).stdout
    match = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded", out)
    status = re.search(r"status codes: (\d+) 2xx", out)
    if match is None or status is None:
        return 0, 0
    total, succeeded = int(match.group(1)), int(status.group(1))
    return succeeded, total - succeeded


def _gtls(port: int, requests: int, work: Path) -> tuple[int, int]:
    argv = [*GTLSCLIENT, "-n", str(requests), HOST, str(port), f"https://{HOST}:{port}/"]
    work.mkdir(parents=True, exist_ok=True)
    log = work / "log"
    with open(log, "wb") as out:
        subprocess.run(
            argv,
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=CLIENT_TIMEOUT,
        )
    count = parse_gtlsclient(log.read_bytes(), requests)
    log.unlink()
    return count.ok, count.failed


def _h3_new(port: int, work: Path) -> bool:
    from curl_cffi import CurlHttpVersion, requests

    try:
        with requests.Session() as session:
            response = session.get(
                f"https://{HOST}:{port}/",
                http_version=CurlHttpVersion.V3ONLY,
                verify=str(work / "ca.pem"),
                timeout=30,
            )
        return bool(response.status_code == 200 and response.content == b"Hello, world!")
    except Exception:
        return False


def run_slice(load: Load, server: Server, count: int, work: Path) -> None:
    """`count` requests of this load."""
    if count <= 0:
        return
    started = time.monotonic()
    ok = failed = 0
    if load.protocol in ("h1", "h2"):
        url = (
            f"http://{HOST}:{server.plain_port}/"
            if load.protocol == "h1"
            else f"https://{HOST}:{server.tls_port}/"
        )
        h1 = ["--h1"] if load.protocol == "h1" else []
        if load.keep_alive:
            clients = min(H2LOAD_CLIENTS, count)
            ok, failed = _h2load([*h1, "-n", str(count), "-c", str(clients), "-m", "10", url])
        else:
            for start in range(0, count, NEW_BATCH):  # one request per connection
                batch = min(NEW_BATCH, count - start)
                got = _h2load([*h1, "-n", str(batch), "-c", str(batch), url])
                ok, failed = ok + got[0], failed + got[1]
    elif load.keep_alive:
        chunks = [H3_PER_CONNECTION] * (count // H3_PER_CONNECTION)
        if count % H3_PER_CONNECTION:
            chunks.append(count % H3_PER_CONNECTION)
        with ThreadPoolExecutor(2) as pool:
            for got in pool.map(
                lambda ic: _gtls(server.tls_port, ic[1], work / f"ka{ic[0]}"), enumerate(chunks)
            ):
                ok, failed = ok + got[0], failed + got[1]
    else:
        # A process per connection costs more than the connection: curl_cffi (libcurl,
        # ngtcp2) in this process, a new session, so a new QUIC connection, per request.
        with ThreadPoolExecutor(2) as pool:
            for good in pool.map(lambda _: _h3_new(server.tls_port, work), range(count)):
                ok, failed = ok + good, failed + (not good)
    load.ok += ok
    load.failed += failed
    load.seconds += time.monotonic() - started


# --------------------------------------------------------------------------- the run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--requests",
        type=int,
        default=100_000,
        help="keep-alive requests per protocol (default 100000)",
    )
    parser.add_argument(
        "--new",
        type=int,
        default=None,
        help="requests on new connections per protocol (default requests/10)",
    )
    parser.add_argument("--protocols", default="h1,h2,h3")
    parser.add_argument("-k", "--worker-class", default="auto")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--trace",
        type=int,
        default=0,
        metavar="FRAMES",
        help="run the server under tracemalloc and print what grew most",
    )
    parser.add_argument(
        "--trim",
        action="store_true",
        help="after each round's RSS sample, also print the RSS by mapping kind"
        " (/proc/PID/smaps) and after glibc's malloc_trim(0) in the server: what"
        " the trim gives back was free but held (fragmentation), the rest is live",
    )
    args = parser.parse_args(argv)
    if not 0 < args.requests <= 10_000_000:
        parser.error("--requests: 1..10000000")
    new = args.requests // 10 if args.new is None else args.new
    if not 0 <= new <= 1_000_000:
        parser.error("--new: 0..1000000")
    protocols = [p for p in args.protocols.split(",") if p]
    if set(protocols) - {"h1", "h2", "h3"}:
        parser.error("--protocols: h1, h2, h3")
    loads = [Load(p, True, args.requests) for p in protocols]
    loads += [Load(p, False, new) for p in protocols if new]

    work = Path(tempfile.mkdtemp(prefix="edgecorn-soak-"))
    server = start_server(args.worker_class, work, args.trace)
    try:
        warm = [Load(p, True, 2000) for p in protocols]
        for load in warm:  # imports, caches and pools settle before the baseline
            run_slice(load, server, load.total, work)
        time.sleep(KEEP_ALIVE_TIMEOUT + 2)
        before = {"rss_kib": server.rss_kib(), "proc_fds": server.fds(), **server.stats()}
        before.pop("grown")
        before.pop("garbage")
        print(
            f"edgecorn pid {server.proc.pid}, -k {args.worker_class}; before: {before}",
            file=sys.stderr,
        )
        rss: list[int] = []
        for round_ in range(ROUNDS):
            for load in loads:
                share = load.total * (round_ + 1) // ROUNDS - load.total * round_ // ROUNDS
                run_slice(load, server, share, work)
            rss.append(server.rss_kib())
            done = sum(load.ok + load.failed for load in loads)
            print(
                f"round {round_ + 1}/{ROUNDS}: {done} requests, RSS {rss[-1]} KiB", file=sys.stderr
            )
            if args.trim:
                kinds = server.rss_map()
                took = server.stats(trim=True)["trim_ms"]
                print(
                    f"  by mapping (KiB): {kinds}; after malloc_trim(0) ({took} ms): RSS"
                    f" {server.rss_kib()} KiB, {server.rss_map()}",
                    file=sys.stderr,
                )
        time.sleep(KEEP_ALIVE_TIMEOUT + 3)  # idle keep-alive connections time out
        after = {"rss_kib": server.rss_kib(), "proc_fds": server.fds(), **server.stats()}
        alive = server.proc.poll() is None
    finally:
        server.stop()

    growth = (rss[-1] - rss[0]) / rss[0] * 100
    print(f"{'load':<18} {'requests':>10} {'ok':>10} {'failed':>7} {'req/s':>8}")
    for load in loads:
        rate = load.ok / load.seconds if load.seconds else 0.0
        print(f"{load.name:<18} {load.total:>10} {load.ok:>10} {load.failed:>7} {rate:>8.0f}")
    print(
        f"RSS after 10%: {rss[0]} KiB, after 100%: {rss[-1]} KiB, growth {growth:+.1f}%"
        f" (per round: {', '.join(str(r) for r in rss)})"
    )
    print(
        f"file descriptors: {before['fds']} before, {after['fds']} after (from outside, "
        f"/proc/PID/fd: {before['proc_fds']}, {after['proc_fds']}); "
        f"tasks: {before['tasks']} before, {after['tasks']} after; "
        f"uncollected garbage at the end: {after['garbage']} objects"
    )
    print(f"server alive at the end: {alive}")
    for line in after.get("grown", []):
        print(f"grew: {line}")
    if args.json:
        record = {
            "requests": args.requests,
            "new": new,
            "worker_class": args.worker_class,
            "loads": [load.__dict__ | {"name": load.name} for load in loads],
            "rss_kib": rss,
            "rss_growth_percent": growth,
            "before": before,
            "after": after,
        }
        Path(args.json).write_text(json.dumps(record, indent=2))
    failed = sum(load.failed for load in loads) or not alive
    leaked = after["fds"] > before["fds"] or after["tasks"] > before["tasks"]
    return 1 if failed or leaked else 0


if __name__ == "__main__":
    sys.exit(main())
