"""Python function calls per request in an in-process edgecorn server, under cProfile.

A count, not a time: it does not depend on how busy the machine is, so it compares two
checkouts of the hot path on a shared machine. Only the server's thread is profiled;
the client is a raw socket (h1 keep-alive), h2load (h2c, 10 streams at a time) or
ngtcp2's gtlsclient (h3, one connection). "edgecorn" counts calls of edgecorn's own
functions (steady across runs); "all" includes the event loop, whose turns per request
vary with timing.

    PYTHONPATH=CHECKOUT python bench/calls.py [--h2 | --h3 CERTDIR [--quic-engine E]] [-n N] [-v]

CERTDIR holds localhost.pem and localhost.key (`edgecorn certs` makes them).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable
from typing import Any

from edgecorn.asyncio import serve
from edgecorn.config import Config


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def h1_client(port: int, count: int) -> int:
    request = b"GET / HTTP/1.1\r\nhost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for _ in range(count):
            sock.sendall(request)
            data = b""
            while not data.endswith(b"\r\n\r\nok"):
                chunk = sock.recv(65536)
                if not chunk:
                    return 0
                data += chunk
    return count


def h2_client(port: int, count: int) -> int:
    command = ["h2load", "-n", str(count), "-c", "1", "-m", "10", f"http://127.0.0.1:{port}/"]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    line = next((line for line in out.splitlines() if line.startswith("status codes:")), "")
    return int(line.split()[2]) if line else 0


def h3_client(port: int, count: int) -> int:
    with tempfile.TemporaryDirectory() as where:
        urls = [f"https://localhost:{port}/{i}" for i in range(count)]
        command = ["gtlsclient", "--exit-on-all-streams-close", "--no-quic-dump"]
        command += ["--no-http-dump", "--handshake-timeout=5s", "--timeout=30s"]
        command += [f"--download={where}", "127.0.0.1", str(port), *urls]
        subprocess.run(command, capture_output=True, timeout=120)
        return len(os.listdir(where))  # gtlsclient exits 0 either way: count the files


async def main(args: argparse.Namespace) -> None:
    config = Config()
    config.accesslog = None
    config.keep_alive_max_requests = args.n + 10
    config.quic_engine = args.quic_engine
    port = free_port()
    client: Callable[[int, int], int] = h1_client
    if args.h2:
        client = h2_client
    if args.h3:
        client = h3_client
        port = free_port(socket.SOCK_DGRAM)
        config.quic_bind = [f"127.0.0.1:{port}"]
        config.certfile = os.path.join(args.h3, "localhost.pem")
        config.keyfile = os.path.join(args.h3, "localhost.key")
        config.bind = [f"127.0.0.1:{free_port()}"]
    else:
        config.bind = [f"127.0.0.1:{port}"]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    profile = cProfile.Profile()
    answered: list[int] = []

    def run_client() -> None:
        try:
            answered.append(client(port, args.n))
        finally:
            loop.call_soon_threadsafe(stop.set)

    def ready() -> None:
        profile.enable()
        threading.Thread(target=run_client, daemon=True).start()

    await serve(app, config, shutdown_trigger=stop.wait, on_ready=ready)
    profile.disable()
    count = answered[0] if answered else 0
    if not count:
        raise SystemExit("no request was answered")
    stats = pstats.Stats(profile)
    ours = sum(entry[1] for key, entry in stats.stats.items() if "/edgecorn/" in key[0])  # type: ignore[attr-defined]
    total = stats.total_calls  # type: ignore[attr-defined]
    print(f"requests {count}  calls/request: edgecorn {ours / count:.2f}  all {total / count:.1f}")
    if args.v:
        stats.sort_stats("ncalls").print_stats(40)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--h2", action="store_true", help="h2c through h2load")
    parser.add_argument("--h3", metavar="CERTDIR", help="h3 through gtlsclient")
    parser.add_argument("-n", type=int, default=None, help="requests (3000; h3: 300)")
    parser.add_argument("-v", action="store_true", help="the 40 most called functions")
    parser.add_argument(
        "--quic-engine",
        default="auto",
        choices=("auto", "aioquic", "qh3"),
        help="the QUIC engine for --h3 (default auto)",
    )
    options = parser.parse_args()
    if options.n is None:
        options.n = 300 if options.h3 else 3000
    asyncio.run(main(options))
