"""uvloop's TLS and glibc's heap, without edgecorn: RSS over many new TLS connections.

    python bench/tlsheap.py                          # uvloop, then asyncio, then uvloop + fix
    python bench/tlsheap.py --loops uvloop --connections 40000
    python bench/tlsheap.py --alloc                  # what fixing the threshold would cost

The server is ~20 lines of plain asyncio (a Protocol that answers one HTTP/1.1 response
and closes), run in a child process on uvloop or on asyncio's own loop, with TLS from
`loop.create_server(ssl=...)`. h2load (`--h1`, one request per connection, 100 connections
at a time) opens `--connections` new TLS connections in ten rounds; the server's RSS is
read after every round, and after the last round again once glibc's `malloc_trim(0)` has
run in the server.

What it shows (issue 14, bench/README.md): every uvloop SSLProtocol allocates a 256 KiB
read buffer with PyMem_RawMalloc (uvloop/sslproto.pyx, SSL_READ_MAX_SIZE), freed when the
connection goes. glibc serves blocks of 128 KiB and more with mmap until the first such
block is freed; then its dynamic threshold rises above 256 KiB and every later buffer
comes from the main heap, between small long-lived objects. The freed buffers' touched
pages stay resident in the middle of the heap, where glibc only returns the top: RSS
creeps up with the number of connections, and malloc_trim(0) gives it all back (free,
not live: no leak). `fixed` is the same uvloop server with M_MMAP_THRESHOLD set once to
glibc's default (128 KiB) at start, which turns the dynamic threshold off: the buffers
stay in mmap'd blocks that go back to the system at free. asyncio's loop (whose SSL
buffer is a bytearray owned by Python) creeps less, but holds more.

`--alloc` times, in fresh processes, allocating, copying and freeing a bytes object of
64 KiB, 256 KiB and 1 MiB with the dynamic threshold and with it fixed at 128 KiB: the fix
makes every large block a new mapping whose pages fault in again, the cost that made
edgecorn trim the heap now and then (edgecorn/heap.py) instead.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"
ROUNDS = 10
BATCH = 100  # connections per h2load run
M_MMAP_THRESHOLD = -3  # glibc <malloc.h>
CLIENT_TIMEOUT = 120.0


ALLOC_ROUNDS = 5000


def alloc_cost(fixed: bool) -> None:
    if fixed:
        libc().mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    data = bytes(1 << 20)
    for size in (64 << 10, 256 << 10, 1 << 20):
        chunk = data[:size]
        warm = chunk + b"x"  # a first block freed: glibc's dynamic threshold rises
        del warm
        started = time.perf_counter()
        for _ in range(ALLOC_ROUNDS):
            block = chunk + b"x"  # a new object of size + 1 bytes, copied
            del block
        seconds = time.perf_counter() - started
        threshold = "fixed at 128 KiB" if fixed else "dynamic"
        print(
            f"{size >> 10:>5} KiB, threshold {threshold:<16}:"
            f" {seconds / ALLOC_ROUNDS * 1e6:7.1f} us per allocation, copy and free"
        )


def libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def serve(loop_name: str, port: int, certfile: str, keyfile: str, fixed: bool) -> None:
    import asyncio
    import ssl

    if fixed:
        libc().mallopt(M_MMAP_THRESHOLD, 128 * 1024)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certfile, keyfile)
    context.set_alpn_protocols(["http/1.1"])

    class Hello(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            if b"GET /_trim " in data:
                libc().malloc_trim(0)
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
            self.transport.close()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_server(Hello, HOST, port, ssl=context, backlog=1024)
        print("ready", flush=True)
        await asyncio.Event().wait()

    if loop_name == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def h2load(url: str, count: int) -> int:
    out = subprocess.run(
        ["h2load", "--h1", "-n", str(count), "-c", str(count), url],
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT,
    ).stdout
    match = re.search(r"status codes: (\d+) 2xx", out)
    return int(match.group(1)) if match else 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def measure(variant: str, connections: int, certfile: str, keyfile: str) -> None:
    loop_name = "uvloop" if variant in ("uvloop", "fixed") else "asyncio"
    port = free_port()
    argv = [sys.executable, __file__, "--serve", loop_name, str(port), certfile, keyfile]
    if variant == "fixed":
        argv.append("fixed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        url = f"https://{HOST}:{port}/"
        h2load(url, BATCH)  # warm up
        rss, ok = [], 0
        for round_ in range(ROUNDS):
            share = connections * (round_ + 1) // ROUNDS - connections * round_ // ROUNDS
            for start in range(0, share, BATCH):
                ok += h2load(url, min(BATCH, share - start))
            time.sleep(0.5)
            rss.append(rss_kib(proc.pid))
        h2load(f"https://{HOST}:{port}/_trim", 1)
        time.sleep(0.5)
        trimmed = rss_kib(proc.pid)
        growth = (rss[-1] - rss[1]) / rss[1] * 100
        print(
            f"{variant:<8} {ok}/{connections} ok; RSS (KiB) per round: {', '.join(map(str, rss))};"
            f" round 2 -> 10: {growth:+.1f}% ({(rss[-1] - rss[1]) * 1024 // max(1, ok * 9 // 10)}"
            f" B/connection); after malloc_trim(0): {trimmed}"
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def main() -> None:
    if sys.argv[1:2] == ["--alloc-child"]:
        alloc_cost(sys.argv[2:] == ["fixed"])
        return
    if sys.argv[1:2] == ["--serve"]:
        loop_name, port, certfile, keyfile, *rest = sys.argv[2:]
        serve(loop_name, int(port), certfile, keyfile, rest == ["fixed"])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=20_000)
    parser.add_argument("--loops", default="uvloop,asyncio,fixed")
    parser.add_argument(
        "--alloc", action="store_true", help="time large allocations instead (see above)"
    )
    args = parser.parse_args()
    if args.alloc:
        for variant in ([], ["fixed"]):
            subprocess.run([sys.executable, __file__, "--alloc-child", *variant], check=True)
        return
    if not 0 < args.connections <= 1_000_000:
        parser.error("--connections: 1..1000000")
    # The dev certificate (any certificate will do; this one is generated, not secret).
    root = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(root))
    from edgecorn.certs import ensure_dev_certs

    certfile, keyfile, _ = ensure_dev_certs(Path(os.environ.get("TMPDIR", "/tmp")) / "tlsheap")
    for variant in args.loops.split(","):
        measure(variant, args.connections, str(certfile), str(keyfile))


if __name__ == "__main__":
    main()
