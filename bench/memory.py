"""Memory: per idle connection, per open stream, and RSS growth over many requests.

    python bench/memory.py                       # edgecorn, Hypercorn, Uvicorn; h1, h1s, h2, h3
    python bench/memory.py --servers edgecorn --protocols h2,h3 --idle 200 --json mem.json
    python bench/memory.py --requests 2000,20000 # a quick growth check

Each (server, protocol) cell gets a fresh server (one process: edgecorn `--workers 0`, Uvicorn;
Hypercorn `--workers 1` is a supervisor and a worker, their RSS is summed) serving this
module's app (bench/app.py's hello world plus `/sleep`, which waits before answering). RSS is
VmRSS from /proc/PID/status, summed over the server's process group. For each cell:

1. idle connections: RSS before, `--idle` connections opened (50 at a time, under any
   backlog), one request answered on each, then left open; RSS again; the delta / N.
   h1 = HTTP/1.1 keep-alive cleartext, h1s = the same over TLS, h2 = HTTP/2 over TLS,
   h3 = QUIC (aioquic clients in this process).
2. open streams (h2, h3): `--conns` connections, each after one request; RSS; then
   `--streams` requests to `/sleep` on each, all in flight at once (the app sleeps 15 s);
   RSS one second after the last request was sent; the delta / (conns x streams). Every
   request must then be answered (200 and the body), which shows none was refused.
3. growth: `--requests` (20000,200000) requests in total on keep-alive connections (h1: wrk
   with a count script, h2: h2load, h3: gtlsclient, 1000 requests a connection); RSS after
   the first total and after the last, growth in percent, against issue 12's 5% target.

All servers get keep-alive and QUIC idle timeouts of 120 s (their defaults, 5 s, would
close the idle connections being measured) and no per-connection request limit (h2load
and gtlsclient do not reconnect). Loopback only; every load is bounded in count and time;
every server is stopped with its whole process group.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import edge, soak  # noqa: E402
from bench import run as core  # noqa: E402
from bench.app import BODY  # noqa: E402
from bench.app import app as hello_app  # noqa: E402

HOST = core.HOST
IDLE_TIMEOUT = 120  # seconds: every server keeps an idle connection this long
SLEEP_MAX = 60.0  # seconds /sleep may be asked to wait
OPEN_BATCH = 50  # connections opened at once (edgecorn's backlog is 100)
SETTLE = 1.0  # seconds after the last request before RSS is read
CLIENT_TIMEOUT = 30.0  # seconds for any one client step (connect, answer)
LOAD_SECONDS = 600  # the bound on each growth load, whatever the count
GROWTH_TARGET = 5.0  # percent, issue 12
PROTOCOLS = ["h1", "h1s", "h2", "h3"]
SPEAKS = {
    "edgecorn": {"h1", "h1s", "h2", "h3"},
    "hypercorn": {"h1", "h1s", "h2", "h3"},
    "uvicorn": {"h1", "h1s"},
}


# --------------------------------------------------------------------------- the app


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """bench/app.py, plus `/sleep?s=N`: answer after N seconds (at most SLEEP_MAX)."""
    if scope["type"] == "http" and scope["path"] == "/sleep":
        query = scope.get("query_string", b"").decode()
        seconds = float(query[2:]) if query.startswith("s=") else 10.0
        await asyncio.sleep(min(seconds, SLEEP_MAX))
    await hello_app(scope, receive, send)


APP = "bench.memory:app"


# --------------------------------------------------------------------------- servers


@dataclass
class Setup:
    tmp: Path
    certfile: str
    keyfile: str
    cafile: str


def server_cmd(name: str, proto: str, port: int, setup: Setup) -> list[str]:
    tls = proto != "h1"
    if name == "edgecorn":
        config = setup.tmp / "edgecorn.yaml"
        config.write_text(
            f"keep_alive_timeout: {IDLE_TIMEOUT}\nquic_idle_timeout: {IDLE_TIMEOUT}\n"
            f"keep_alive_max_requests: {core.MAX_REQUESTS}\n"
        )
        argv = [sys.executable, "-m", "edgecorn", APP, "--workers", "0", "-c", str(config)]
        if tls:  # a TLS bind also serves QUIC on the same port number
            return argv + [
                "--bind",
                f"{HOST}:{port}",
                "--certfile",
                setup.certfile,
                "--keyfile",
                setup.keyfile,
            ]
        return argv + ["--insecure-bind", f"{HOST}:{port}", "--bind", f"{HOST}:{core.free_port()}"]
    if name == "hypercorn":
        config = setup.tmp / "hypercorn.toml"
        config.write_text(
            f"keep_alive_timeout = {IDLE_TIMEOUT}\nkeep_alive_max_requests = {core.MAX_REQUESTS}\n"
        )
        argv = core.hypercorn_argv(config, port, APP)
        if proto == "h3":
            argv += ["--quic-bind", f"{HOST}:{port}"]
        if tls:
            argv += ["--certfile", setup.certfile, "--keyfile", setup.keyfile]
        return argv
    argv = [
        *core.uvicorn_argv(port, APP),
        "--timeout-keep-alive",
        str(IDLE_TIMEOUT),
    ]
    if tls:
        argv += ["--ssl-certfile", setup.certfile, "--ssl-keyfile", setup.keyfile]
    return argv


def start(name: str, proto: str, setup: Setup) -> core.Server:
    port = core.free_port()
    server = core.Server(
        name, server_cmd(name, proto, port, setup), port, setup.tmp / f"{name}-{proto}.log"
    )
    server.start()
    try:
        server.wait_ready(core.START_TIMEOUT)
        time.sleep(1.0)  # QUIC listeners start after the TCP ones
    except BaseException:
        server.stop()
        raise
    return server


def rss(server: core.Server) -> int:
    return edge.group_rss_kib(server)


# --------------------------------------------------------------------------- clients


class Client:
    """One connection that has had one request answered; `streams` puts more in flight."""

    async def close(self) -> None:
        raise NotImplementedError

    async def streams(self, count: int) -> None:
        raise NotImplementedError

    async def drain(self) -> int:
        """Wait for the in-flight responses; the number answered 200 with the body."""
        raise NotImplementedError


def _tls(setup: Setup, alpn: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=setup.cafile)
    ctx.set_alpn_protocols([alpn])
    return ctx


class H1Client(Client):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, tls: ssl.SSLContext | None) -> H1Client:
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=tls, server_hostname="localhost" if tls else None
        )
        writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        body = await reader.readexactly(length)
        if not head.startswith(b"HTTP/1.1 200") or body != BODY:
            raise RuntimeError(f"h1 GET /: {head[:40]!r}")
        return cls(reader, writer)

    async def close(self) -> None:
        self.writer.close()


class H2Client(Client):
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import h2.config
        import h2.connection

        self.reader, self.writer = reader, writer
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.open_streams: set[int] = set()
        self.ok = 0
        self.bodies: dict[int, bytes] = {}
        self.statuses: dict[int, bytes] = {}

    @classmethod
    async def open(cls, port: int, tls: ssl.SSLContext) -> H2Client:
        reader, writer = await asyncio.open_connection(
            HOST, port, ssl=tls, server_hostname="localhost"
        )
        client = cls(reader, writer)
        client.conn.initiate_connection()
        client.conn.increment_flow_control_window(2**30)
        await client.request("/")
        await client.drain()
        if client.ok != 1:
            raise RuntimeError("h2 GET / not answered")
        client.ok = 0
        return client

    async def request(self, path: str) -> None:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            sid,
            [
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "localhost"),
                (":path", path),
            ],
            end_stream=True,
        )
        self.open_streams.add(sid)
        self.writer.write(self.conn.data_to_send())
        await self.writer.drain()

    async def streams(self, count: int) -> None:
        for _ in range(count):
            await self.request(f"/sleep?s={SLEEP_MAX / 4}")

    async def drain(self) -> int:
        import h2.events

        while self.open_streams:
            data = await asyncio.wait_for(self.reader.read(65536), SLEEP_MAX)
            if not data:
                raise RuntimeError("h2 connection closed")
            for event in self.conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    self.statuses[event.stream_id] = dict(event.headers).get(b":status", b"")
                elif isinstance(event, h2.events.DataReceived):
                    self.bodies[event.stream_id] = (
                        self.bodies.get(event.stream_id, b"") + event.data
                    )
                    self.conn.acknowledge_received_data(
                        event.flow_controlled_length, event.stream_id
                    )
                elif isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    sid = event.stream_id
                    self.open_streams.discard(sid)
                    self.ok += (
                        self.statuses.pop(sid, b"") == b"200" and self.bodies.pop(sid, b"") == BODY
                    )
            self.writer.write(self.conn.data_to_send())
        return self.ok

    async def close(self) -> None:
        self.writer.close()


class H3Client(Client):
    """aioquic's client connection with its HTTP/3 layer, driven from asyncio."""

    def __init__(self, protocol: Any, stack: Any) -> None:
        self.protocol, self.stack = protocol, stack

    @classmethod
    async def open(cls, port: int, setup: Setup) -> H3Client:
        from contextlib import AsyncExitStack

        from aioquic.asyncio.client import connect
        from aioquic.h3.connection import H3_ALPN
        from aioquic.quic.configuration import QuicConfiguration

        config = QuicConfiguration(
            is_client=True,
            alpn_protocols=H3_ALPN,
            server_name="localhost",
            idle_timeout=IDLE_TIMEOUT,
        )
        config.load_verify_locations(setup.cafile)
        stack = AsyncExitStack()
        protocol: Any = await stack.enter_async_context(
            connect(HOST, port, configuration=config, create_protocol=_H3Protocol)
        )
        client = cls(protocol, stack)
        protocol.request("/")
        if await client.drain() != 1:
            raise RuntimeError("h3 GET / not answered")
        protocol.ok = 0
        return client

    async def streams(self, count: int) -> None:
        for _ in range(count):
            self.protocol.request(f"/sleep?s={SLEEP_MAX / 4}")

    async def drain(self) -> int:
        ok: int = await asyncio.wait_for(self.protocol.drained(), SLEEP_MAX)
        return ok

    async def close(self) -> None:
        await self.stack.aclose()


def _h3_protocol_class() -> type:
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.h3.connection import H3Connection
    from aioquic.h3.events import DataReceived, HeadersReceived
    from aioquic.quic.events import QuicEvent

    class Protocol(QuicConnectionProtocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.h3 = H3Connection(self._quic)
            self.open_streams: set[int] = set()
            self.status: dict[int, bytes] = {}
            self.bodies: dict[int, bytes] = {}
            self.ok = 0
            self.idle = asyncio.Event()

        def request(self, path: str) -> None:
            sid = self._quic.get_next_available_stream_id()
            self.h3.send_headers(
                sid,
                [
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b":authority", b"localhost"),
                    (b":path", path.encode()),
                ],
                end_stream=True,
            )
            self.open_streams.add(sid)
            self.idle.clear()
            self.transmit()

        async def drained(self) -> int:
            await self.idle.wait()
            return self.ok

        def quic_event_received(self, event: QuicEvent) -> None:
            for h3_event in self.h3.handle_event(event):
                sid = h3_event.stream_id  # type: ignore[attr-defined]
                if isinstance(h3_event, HeadersReceived):
                    self.status[sid] = dict(h3_event.headers).get(b":status", b"")
                elif isinstance(h3_event, DataReceived):
                    self.bodies[sid] = self.bodies.get(sid, b"") + h3_event.data
                else:
                    continue
                if h3_event.stream_ended:
                    self.open_streams.discard(sid)
                    self.ok += (
                        self.status.pop(sid, b"") == b"200" and self.bodies.pop(sid, b"") == BODY
                    )
                    if not self.open_streams:
                        self.idle.set()

    return Protocol


_H3Protocol: Any = None


async def open_clients(proto: str, port: int, setup: Setup, count: int) -> list[Client]:
    global _H3Protocol
    if proto == "h3" and _H3Protocol is None:
        _H3Protocol = _h3_protocol_class()

    async def one() -> Client:
        if proto == "h1":
            return await H1Client.open(port, None)
        if proto == "h1s":
            return await H1Client.open(port, _tls(setup, "http/1.1"))
        if proto == "h2":
            return await H2Client.open(port, _tls(setup, "h2"))
        return await H3Client.open(port, setup)

    clients: list[Client] = []
    try:
        for start_at in range(0, count, OPEN_BATCH):
            batch = min(OPEN_BATCH, count - start_at)
            clients += await asyncio.wait_for(
                asyncio.gather(*(one() for _ in range(batch))), CLIENT_TIMEOUT
            )
    except BaseException:
        await close_clients(clients)
        raise
    return clients


async def close_clients(clients: list[Client]) -> None:
    for client in clients:
        try:
            await asyncio.wait_for(client.close(), 5)
        except Exception:
            pass


# --------------------------------------------------------------------------- measurements


async def idle(server: core.Server, proto: str, setup: Setup, count: int) -> dict[str, Any]:
    before = rss(server)
    clients = await open_clients(proto, server.port, setup, count)
    try:
        await asyncio.sleep(SETTLE)
        after = rss(server)
        alive = server.proc is not None and server.proc.poll() is None
    finally:
        await close_clients(clients)
    return {
        "connections": count,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "per_connection_kib": (after - before) / count,
        "alive": alive,
    }


async def streams(
    server: core.Server, proto: str, setup: Setup, conns: int, per_conn: int
) -> dict[str, Any]:
    clients = await open_clients(proto, server.port, setup, conns)
    try:
        await asyncio.sleep(SETTLE)
        before = rss(server)
        for client in clients:
            await client.streams(per_conn)
        await asyncio.sleep(SETTLE)  # /sleep waits SLEEP_MAX / 4: all are still in flight
        after = rss(server)
        answered = sum(await asyncio.gather(*(c.drain() for c in clients)))
    finally:
        await close_clients(clients)
    total = conns * per_conn
    return {
        "connections": conns,
        "streams": total,
        "answered": answered,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "per_stream_kib": (after - before) / total,
    }


def _load(proto: str, port: int, count: int, setup: Setup) -> tuple[int, int]:
    """`count` keep-alive requests; (succeeded, failed)."""
    if proto == "h1":
        script = setup.tmp / "count.lua"
        script.write_text(edge.WRK_COUNT)
        settings = core.Settings(
            duration=0,
            warmup=0,
            connections=64,
            h2_clients=8,
            h2_streams=10,
            h3_clients=1,
            h3_requests=1,
            h3_downloads=1,
            client_cpu=None,
            server_cpu=None,
        )
        result = edge.wrk_count(f"http://{HOST}:{port}/", count, settings, script)
        done = result.requests or 0
        return done, result.failed + max(0, count - done - 64)  # a few in flight may be lost
    if proto == "h2":
        return soak._h2load(
            ["-n", str(count), "-c", "8", "-m", "10", "-t", "1", f"https://{HOST}:{port}/"]
        )
    chunks = [1000] * (count // 1000) + ([count % 1000] if count % 1000 else [])
    ok = failed = 0
    deadline = time.monotonic() + LOAD_SECONDS
    for i in range(0, len(chunks), 2):  # two gtlsclient processes at a time
        if time.monotonic() > deadline:
            failed += sum(chunks[i:])
            break
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            for got in pool.map(
                lambda n: soak._gtls(port, n[1], setup.tmp / f"h3-{n[0]}"),
                enumerate(chunks[i : i + 2]),
            ):
                ok, failed = ok + got[0], failed + got[1]
    return ok, failed


def growth(server: core.Server, proto: str, setup: Setup, totals: list[int]) -> dict[str, Any]:
    samples: list[dict[str, Any]] = []
    done = failed = 0
    for total in totals:
        ok, bad = _load(proto, server.port, total - done, setup)
        done, failed = done + ok + bad, failed + bad
        samples.append({"requests": done, "failed": failed, "rss_kib": rss(server)})
        print(
            f"    after {done:,} requests ({failed} failed): RSS {samples[-1]['rss_kib']:,} KiB",
            file=sys.stderr,
            flush=True,
        )
    first, last = samples[0]["rss_kib"], samples[-1]["rss_kib"]
    return {
        "samples": samples,
        "failed": failed,
        "growth_kib": last - first,
        "growth_percent": 100.0 * (last - first) / first,
    }


@dataclass
class Cell:
    server: str
    proto: str
    idle: dict[str, Any] | None = None
    streams: dict[str, Any] | None = None
    growth: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)


def measure(name: str, proto: str, setup: Setup, args: argparse.Namespace) -> Cell:
    cell = Cell(name, proto)
    steps: list[tuple[str, Callable[[core.Server], Any]]] = [
        ("idle", lambda s: asyncio.run(idle(s, proto, setup, args.idle))),
    ]
    if proto in ("h2", "h3"):
        steps.append(
            ("streams", lambda s: asyncio.run(streams(s, proto, setup, args.conns, args.streams)))
        )
    if proto != "h1s" and args.requests:
        steps.append(("growth", lambda s: growth(s, proto, setup, args.requests)))
    for step, run_step in steps:  # a fresh server for each step: no step sees another's memory
        print(f"  {name} {proto} {step}", file=sys.stderr, flush=True)
        try:
            server = start(name, proto, setup)
        except Exception as exc:
            cell.errors.append(f"{step}: start: {exc}")
            continue
        try:
            warm_clients = asyncio.run(_warm(server, proto, setup))
            if warm_clients:
                cell.errors.append(f"{step}: warm-up: {warm_clients}")
            setattr(cell, step, run_step(server))
        except Exception as exc:
            cell.errors.append(f"{step}: {type(exc).__name__}: {exc}"[:300])
        finally:
            server.stop()
    return cell


async def _warm(server: core.Server, proto: str, setup: Setup) -> str:
    """A few connections first, so imports and first-use caches are not counted per connection."""
    try:
        await close_clients(await open_clients(proto, server.port, setup, 20))
        await asyncio.sleep(0.2)
        return ""
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"


# --------------------------------------------------------------------------- report


def _kib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def print_table(cells: list[Cell], totals: list[int]) -> None:
    first_at = f"RSS@{totals[0]:,}" if totals else "RSS@first"
    last_at = f"RSS@{totals[-1]:,}" if totals else "RSS@last"
    head = (
        f"{'server':<10} {'proto':<5} {'KiB/idle conn':>13} {'KiB/stream':>11} "
        f"{first_at:>13} {last_at:>14} {'growth':>8}"
    )
    print(head)
    for c in cells:
        idle_kib = c.idle["per_connection_kib"] if c.idle else None
        stream_kib = c.streams["per_stream_kib"] if c.streams else None
        if c.growth:
            samples = c.growth["samples"]
            first, last = f"{samples[0]['rss_kib']:,}", f"{samples[-1]['rss_kib']:,}"
            pct = f"{c.growth['growth_percent']:+.1f}%"
            if c.growth["failed"]:
                pct += "*"
        else:
            first = last = pct = "-"
        print(
            f"{c.server:<10} {c.proto:<5} {_kib(idle_kib):>13} {_kib(stream_kib):>11} "
            f"{first:>13} {last:>14} {pct:>8}"
        )
    print(
        f"\nRSS in KiB (VmRSS of the server's process group). Growth target (issue 12): "
        f"within {GROWTH_TARGET:.0f}%; * = some requests failed. h1s has no growth row "
        "(same server path as h1 plus TLS)."
    )
    for c in cells:
        if c.streams:
            print(
                f"{c.server} {c.proto} streams: {c.streams['streams']} in flight on "
                f"{c.streams['connections']} connections, {c.streams['answered']} answered"
            )
        if c.growth and c.growth["growth_percent"] > GROWTH_TARGET:
            print(
                f"{c.server} {c.proto}: RSS GREW {c.growth['growth_percent']:+.1f}% "
                f"({c.growth['growth_kib']:+,} KiB) past the {GROWTH_TARGET:.0f}% target"
            )
        for error in c.errors:
            print(f"{c.server} {c.proto}: {error}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--servers", default="edgecorn,hypercorn,uvicorn")
    parser.add_argument("--protocols", default=",".join(PROTOCOLS))
    parser.add_argument("--idle", type=int, default=500, help="idle connections (default 500)")
    parser.add_argument(
        "--conns", type=int, default=10, help="connections for the open-streams step (default 10)"
    )
    parser.add_argument(
        "--streams",
        type=int,
        default=100,
        help="requests in flight per connection (default 100, the servers' max concurrent streams)",
    )
    parser.add_argument(
        "--requests",
        default="20000,200000",
        help="RSS sampled after these totals ('' skips the growth step)",
    )
    parser.add_argument("--json", help="also write every number to this file")
    args = parser.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s]
    args.protocols = [p for p in args.protocols.split(",") if p]
    args.requests = [int(n) for n in args.requests.split(",") if n]
    if set(args.servers) - set(SPEAKS) or set(args.protocols) - set(PROTOCOLS):
        parser.error(f"--servers: {', '.join(SPEAKS)}; --protocols: {', '.join(PROTOCOLS)}")
    if not 1 <= args.idle <= 5000 or not 1 <= args.conns <= 100 or not 1 <= args.streams <= 100:
        parser.error("--idle 1..5000, --conns 1..100, --streams 1..100")
    if args.requests != sorted(args.requests) or any(not 0 < n <= 2_000_000 for n in args.requests):
        parser.error("--requests: increasing totals, each 1..2000000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from edgecorn.certs import ensure_dev_certs

    tmp = Path(tempfile.mkdtemp(prefix="edgecorn-memory-"))
    setup = Setup(tmp, *ensure_dev_certs(tmp / "certs"))
    cells: list[Cell] = []
    started = time.time()

    def write_json() -> None:  # after every cell, so a run cut short keeps what it measured
        record = {
            "settings": {k: v for k, v in vars(args).items() if k != "json"},
            "started": started,
            "seconds": time.time() - started,
            "versions": core._versions(),
            "cells": [asdict(c) for c in cells],
        }
        Path(args.json).write_text(json.dumps(record, indent=2))

    for proto in args.protocols:
        for name in args.servers:
            if proto in SPEAKS[name]:
                cells.append(measure(name, proto, setup, args))
                if args.json:
                    write_json()
    print_table(cells, args.requests)
    bad = any(
        c.errors
        or (c.growth and (c.growth["failed"] or c.growth["growth_percent"] > GROWTH_TARGET))
        for c in cells
    )
    if any(c.errors for c in cells):
        print(f"server logs kept in {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
