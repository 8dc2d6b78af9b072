"""Helpers for the process-model end-to-end tests (`test_e2e_process.py`).

- GOAWAY tolerance for the conftest HTTP/2 client;
- a steady request load over HTTP/1.1, HTTP/2 and HTTP/3 (a thread per protocol);
- `UdpRelay`: a UDP forwarder that changes its upstream source port mid-transfer
  (NAT rebinding, as the server sees it).

Every loop here is bounded in count and in time.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.apps.e2e import HELLO
from tests.support.h3 import cffi_h3

H2_REFUSED_STREAM = 7

# --------------------------------------------------------------------------- HTTP/2 GOAWAY


@dataclass
class GoAway:
    last_stream_id: int
    error_code: int


def tolerate_goaway(conn: Any) -> Any:
    """Let a conftest `H2Conn` read the responses that legitimately follow a GOAWAY.

    The `h2` package closes its state machine on receiving GOAWAY, so it rejects the
    answers to the streams the GOAWAY promises (RFC 9113 6.8). GOAWAY frames are taken out
    of the byte stream before `h2` sees it and recorded in `conn.goaway`.
    """
    h2c = conn.conn
    original = h2c.receive_data
    buf = bytearray()

    def receive_data(data: bytes) -> list[Any]:
        buf.extend(data)
        out = bytearray()
        while len(buf) >= 9:
            length = int.from_bytes(buf[0:3], "big")
            if len(buf) < 9 + length:
                break
            frame = bytes(buf[: 9 + length])
            del buf[: 9 + length]
            if frame[3] == 0x7:  # GOAWAY
                conn.goaway = GoAway(
                    int.from_bytes(frame[9:13], "big") & 0x7FFFFFFF,
                    int.from_bytes(frame[13:17], "big"),
                )
            else:
                out += frame
        return list(original(bytes(out))) if out else []

    h2c.receive_data = receive_data
    return conn


# --------------------------------------------------------------------------- request load


@dataclass
class Result:
    proto: str
    started: float
    ok: bool
    detail: str = ""
    retried: bool = False
    ended: float = 0.0


@dataclass
class Load:
    """Sequential requests over h1, h2 and h3 (a thread each) until `stop()`.

    `h1_connect` / `h2_connect` are the `h1` / `h2conn` fixtures. h1 and h3 open a new
    connection per request; h2 keeps its connection until the server sends GOAWAY, and
    retries (once, on a new connection) only a stream the GOAWAY says was not processed.
    """

    port: int
    cafile: str
    h1_connect: Any
    h2_connect: Any
    protos: tuple[str, ...] = ("h1", "h2", "h3")
    pause: float = 0.02
    max_seconds: float = 60.0
    max_requests: int = 3000
    results: list[Result] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(proto,), daemon=True) for proto in self.protos
        ]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 40.0) -> list[Result]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout)
        assert not any(t.is_alive() for t in self._threads), "load threads did not finish"
        assert not self.errors, self.errors
        return list(self.results)

    def count(self, proto: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.results if proto is None or r.proto == proto)

    def _record(self, result: Result) -> None:
        with self._lock:
            self.results.append(result)

    def _run(self, proto: str) -> None:
        deadline = time.monotonic() + self.max_seconds
        state: dict[str, Any] = {}
        try:
            for _ in range(self.max_requests):
                if self._stop.is_set() or time.monotonic() > deadline:
                    break
                started = time.monotonic()
                try:
                    ok, detail, retried = getattr(self, f"_{proto}")(state)
                except Exception as exc:  # noqa: BLE001 - any failure is a failed request
                    ok, detail, retried = False, f"{type(exc).__name__}: {exc}", False
                self._record(Result(proto, started, ok, detail, retried, time.monotonic()))
                time.sleep(self.pause)
        except BaseException as exc:  # noqa: BLE001
            self.errors.append(f"{proto} thread: {exc!r}")
        finally:
            conn = state.get("h2")
            if conn is not None:
                conn.close()

    def _h1(self, state: dict[str, Any]) -> tuple[bool, str, bool]:
        conn = self.h1_connect(self.port, tls=True, timeout=10.0)
        try:
            conn.request("GET", "/", headers=[("Connection", "close")])
            resp = conn.read_response()
        finally:
            conn.close()
        return resp.status == 200 and resp.body == HELLO, f"h1 {resp.status}", False

    def _h2_once(self, state: dict[str, Any]) -> tuple[bool, str, bool]:
        """(ok, detail, refused): `refused` when the server did not process the stream."""
        conn = state.get("h2")
        if conn is None or conn.goaway is not None or conn.closed:
            if conn is not None:
                conn.close()
            conn = state["h2"] = tolerate_goaway(self.h2_connect(self.port, timeout=10.0))
        sid = conn.request("GET", "/")
        try:
            resp = conn.response(sid)
        except (EOFError, OSError) as exc:
            goaway = conn.goaway
            state["h2"] = None
            conn.close()
            refused = goaway is not None and goaway.last_stream_id < sid
            return False, f"h2 stream {sid}: {exc!r}, goaway {goaway}", refused
        if resp.reset is not None:
            return False, f"h2 stream {sid} reset {resp.reset}", resp.reset == H2_REFUSED_STREAM
        ok = resp.status == 200 and resp.body == HELLO
        return ok, f"h2 {resp.status}", False

    def _h2(self, state: dict[str, Any]) -> tuple[bool, str, bool]:
        """A request the server did not process (GOAWAY, REFUSED_STREAM) may be retried
        (RFC 9113 8.7); browsers do it. Two retries: a new connection can land on a
        second worker that starts draining at that moment."""
        retried = False
        for _ in range(3):
            ok, detail, refused = self._h2_once(state)
            if ok or not refused:
                break
            state["h2"] = None
            retried = True
        return ok, detail, retried

    def _h3(self, state: dict[str, Any]) -> tuple[bool, str, bool]:
        resp = cffi_h3("GET", f"https://127.0.0.1:{self.port}/", self.cafile, timeout=10)
        return resp.status_code == 200 and resp.content == HELLO, f"h3 {resp.status_code}", False


def summary(results: list[Result], limit: int = 12) -> str:
    by_proto: dict[str, list[int]] = {}
    for r in results:
        counts = by_proto.setdefault(r.proto, [0, 0, 0])
        counts[0] += 1
        counts[1] += 0 if r.ok else 1
        counts[2] += 1 if r.retried else 0
    lines = [f"{p}: {c[0]} requests, {c[1]} failed, {c[2]} retried" for p, c in by_proto.items()]
    lines += [f"  FAIL {r.proto} at {r.started:.2f}: {r.detail}" for r in results if not r.ok]
    return "\n".join(lines[: limit + len(by_proto)])


# --------------------------------------------------------------------------- UDP relay


class UdpRelay:
    """Forwards one client's datagrams to `upstream` and the replies back.

    After `switch_after[i]` bytes have come back from the server, the relay opens a new
    upstream socket (a new source port: the new one is bound before the old is closed)
    and closes the old one, as a NAT that lost its mapping does.
    """

    def __init__(
        self, upstream: tuple[str, int], switch_after: list[int], max_seconds: float = 60.0
    ) -> None:
        self.upstream = upstream
        self.switch_after = sorted(switch_after)
        self.down = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.down.bind(("127.0.0.1", 0))
        self.down.setblocking(False)
        self.up = self._new_up()
        self.ports = [self.up.getsockname()[1]]
        self.client: tuple[str, int] | None = None
        self.bytes_down = 0
        self.datagrams = [0, 0]  # to the server, to the client
        self.max_seconds = max_seconds
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def port(self) -> int:
        return int(self.down.getsockname()[1])

    @property
    def switches(self) -> int:
        return len(self.ports) - 1

    def _new_up(self) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.setblocking(False)
        return sock

    def switch(self) -> None:
        new = self._new_up()
        old, self.up = self.up, new
        old.close()
        self.ports.append(new.getsockname()[1])

    def start(self) -> UdpRelay:
        self._thread.start()
        return self

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                readable, _, _ = select.select([self.down, self.up], [], [], 0.05)
                for sock in readable:
                    for _ in range(64):  # drain what is queued, bounded
                        try:
                            data, addr = sock.recvfrom(65536)
                        except (BlockingIOError, ConnectionRefusedError):
                            break
                        except OSError:
                            break
                        if sock is self.down:
                            self.client = addr
                            self.datagrams[0] += 1
                            self.up.sendto(data, self.upstream)
                        elif self.client is not None:
                            self.datagrams[1] += 1
                            self.bytes_down += len(data)
                            self.down.sendto(data, self.client)
                            if self.switch_after and self.bytes_down >= self.switch_after[0]:
                                self.switch_after.pop(0)
                                self.switch()
                                break  # `sock` is closed now
        except BaseException as exc:  # noqa: BLE001 - reported by close()
            self.error = exc

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.down.close()
        self.up.close()
        if self.error is not None:
            raise AssertionError(f"relay failed: {self.error!r}")
