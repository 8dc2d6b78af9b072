"""Helpers for the HTTP/3 end-to-end tests: ngtcp2's `gtlsclient`, curl_cffi, a raw aioquic
client that can stall or vanish, and raw UDP probes.

Every wait here is bounded in count and in time.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated

QUIC_V1 = 0x00000001
QUIC_V2 = 0x6B3343CF  # RFC 9369
GTLS_TIMEOUT = 30.0

# --------------------------------------------------------------------------- misc


def wait_quic(server: Any, timeout: float = 10.0) -> None:
    """Wait for the server to log its QUIC listener (it starts after the TCP ones)."""
    deadline = time.monotonic() + timeout
    while "Running on quic://" not in server.stderr():
        if not server.alive() or time.monotonic() > deadline:
            raise AssertionError(f"QUIC listener not up\n{server.describe()}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- gtlsclient


def gtls_exe() -> str:
    exe = shutil.which("gtlsclient")
    if exe is None:
        raise RuntimeError("gtlsclient missing: apt-get install -y ngtcp2-client")
    return exe


def _gtls_cmd(port: int, urls: Sequence[str], download: Path, extra: Sequence[str]) -> list[str]:
    return [
        gtls_exe(),
        "--exit-on-all-streams-close",
        "--no-quic-dump",
        "--no-http-dump",
        "--handshake-timeout=5s",
        "--timeout=10s",
        f"--download={download}",
        *extra,
        "127.0.0.1",
        str(port),
        *urls,
    ]


_NOISE = re.compile(r"^(I\d{8} |Set timer|Received packet|Sent packet|Timer has already)")


@dataclass
class GtlsRun:
    """One gtlsclient run. It exits 0 even when the handshake fails: read its output."""

    cmd: list[str]
    returncode: int | None
    output: str
    download: Path

    def statuses(self) -> list[int]:
        return [int(s) for s in re.findall(r"\[:status: (\d+)\]", self.output)]

    @property
    def alpn(self) -> str | None:
        m = re.search(r"^Negotiated ALPN is (\S+)", self.output, re.M)
        return m.group(1) if m else None

    @property
    def cipher(self) -> str | None:
        m = re.search(r"^Negotiated cipher suite is (\S+)", self.output, re.M)
        return m.group(1) if m else None

    @property
    def handshakes(self) -> int:
        return self.output.count("QUIC handshake has completed")

    @property
    def early_data_rejected(self) -> bool:
        return "Early data was rejected by server" in self.output

    def sent_0rtt_stream_data(self) -> bool:
        return bool(re.search(r"frm tx \d+ 0RTT STREAM", self.output))

    def received(self, packet_type: str) -> bool:
        return bool(re.search(rf"pkt rx .* type={packet_type}\b", self.output))

    def handshake_crypto_received(self) -> int:
        """Bytes of Handshake-level CRYPTO received: the server's certificate makes a full
        handshake ~1 KiB bigger than a resumed (PSK) one."""
        sizes = re.findall(r"frm rx \d+ Handshake CRYPTO\(0x06\) offset=\d+ len=(\d+)", self.output)
        return sum(int(s) for s in sizes)

    def file(self, name: str) -> Path:
        return self.download / name

    def summary(self, limit: int = 4000) -> str:
        lines = [line for line in self.output.splitlines() if not _NOISE.match(line)]
        text = "\n".join(lines)
        return f"$ {' '.join(self.cmd)}\n(rc {self.returncode})\n{text[-limit:]}"


def gtlsclient(
    port: int,
    *urls: str,
    download: Path,
    extra: Sequence[str] = (),
    timeout: float = GTLS_TIMEOUT,
) -> GtlsRun:
    """Run gtlsclient to completion (bounded); its verbose output goes to a file."""
    download.mkdir(parents=True, exist_ok=True)
    cmd = _gtls_cmd(port, urls, download, extra)
    log = download.parent / f"{download.name}.gtls.log"
    with open(log, "wb") as out:
        try:
            proc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, timeout=timeout
            )
            rc: int | None = proc.returncode
        except subprocess.TimeoutExpired:
            rc = None
    return GtlsRun(cmd, rc, log.read_text(errors="replace"), download)


@dataclass
class GtlsProc:
    """A gtlsclient running in the background (to kill it, or to signal the server)."""

    cmd: list[str]
    proc: subprocess.Popen[bytes]
    log: Path
    download: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = GTLS_TIMEOUT) -> GtlsRun:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        return GtlsRun(self.cmd, self.proc.returncode, self.output(), self.download)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)


def gtls_start(port: int, *urls: str, download: Path, extra: Sequence[str] = ()) -> GtlsProc:
    download.mkdir(parents=True, exist_ok=True)
    cmd = _gtls_cmd(port, urls, download, extra)
    log = download.parent / f"{download.name}.gtls.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    return GtlsProc(cmd, proc, log, download)


# --------------------------------------------------------------------------- curl_cffi


def cffi_h3(method: str, url: str, cafile: str, **kwargs: Any) -> Any:
    """One HTTP/3-only request with curl_cffi (libcurl + ngtcp2 + BoringSSL)."""
    from curl_cffi import CurlHttpVersion, requests

    kwargs.setdefault("timeout", 30)
    return requests.request(
        method, url, http_version=CurlHttpVersion.V3ONLY, verify=cafile, **kwargs
    )


# --------------------------------------------------------------------------- raw aioquic client


class _FrozenWindows(QuicConnection):
    """A client that never raises MAX_DATA / MAX_STREAM_DATA: a peer that stops reading."""

    def _write_connection_limits(self, builder: Any, space: Any) -> None:
        pass

    def _write_stream_limits(self, builder: Any, space: Any, stream: Any) -> None:
        pass


@dataclass
class RawResponse:
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    received: int = 0
    ended: bool = False

    @property
    def status(self) -> int | None:
        for name, value in self.headers:
            if name == b":status":
                return int(value)
        return None


class RawH3Client:
    """A synchronous aioquic HTTP/3 client over a plain UDP socket.

    It exists to misbehave on purpose: `freeze_windows` never grants more flow-control
    credit, `stop_reading()` leaves datagrams unread in the kernel, and `vanish()` closes
    the socket without sending CONNECTION_CLOSE.
    """

    def __init__(
        self, port: int, cafile: str, *, freeze_windows: bool = False, window: int = 1 << 20
    ) -> None:
        config = QuicConfiguration(
            is_client=True,
            alpn_protocols=H3_ALPN,
            server_name="localhost",
            max_data=window,
            max_stream_data=window,
        )
        config.load_verify_locations(cafile)
        cls = _FrozenWindows if freeze_windows else QuicConnection
        self.quic = cls(configuration=config)
        self.h3 = H3Connection(self.quic)
        self.addr = ("127.0.0.1", port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.responses: dict[int, RawResponse] = {}
        self.terminated = False
        self.reading = True
        self.quic.connect(self.addr, time.monotonic())
        self._flush()

    def _flush(self) -> None:
        for data, addr in self.quic.datagrams_to_send(time.monotonic()):
            self.sock.sendto(data, addr)

    def request(self, path: str, method: str = "GET") -> int:
        sid = self.quic.get_next_available_stream_id()
        self.h3.send_headers(
            sid,
            [
                (b":method", method.encode()),
                (b":scheme", b"https"),
                (b":authority", f"localhost:{self.addr[1]}".encode()),
                (b":path", path.encode()),
            ],
            end_stream=True,
        )
        self.responses[sid] = RawResponse()
        self._flush()
        return sid

    def pump(self, duration: float) -> None:
        """Process datagrams and timers for `duration` seconds."""
        deadline = time.monotonic() + duration
        while not self.terminated:
            now = time.monotonic()
            if now >= deadline:
                return
            timer = self.quic.get_timer()
            wait = deadline - now if timer is None else min(deadline - now, max(timer - now, 0))
            self.sock.settimeout(max(wait, 0.001))
            try:
                data, addr = self.sock.recvfrom(65536)
            except TimeoutError:
                data = b""
            now = time.monotonic()
            if data:
                self.quic.receive_datagram(data, addr, now)
            timer = self.quic.get_timer()
            if timer is not None and timer <= now:
                self.quic.handle_timer(now)
            self._events()
            self._flush()

    def pump_until(self, predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.terminated or time.monotonic() > deadline:
                return bool(predicate())
            self.pump(0.05)
        return True

    def _events(self) -> None:
        while (event := self.quic.next_event()) is not None:
            if isinstance(event, ConnectionTerminated):
                self.terminated = True
            for h3_event in self.h3.handle_event(event):
                resp = self.responses.get(getattr(h3_event, "stream_id", -1))
                if resp is None:
                    continue
                if isinstance(h3_event, HeadersReceived):
                    resp.headers.extend(h3_event.headers)
                    resp.ended = resp.ended or h3_event.stream_ended
                elif isinstance(h3_event, DataReceived):
                    resp.received += len(h3_event.data)
                    resp.ended = resp.ended or h3_event.stream_ended

    def stop_reading(self, seconds: float) -> None:
        """Leave the socket unread (the kernel drops what overflows) for `seconds`."""
        time.sleep(seconds)

    def vanish(self) -> None:
        """Gone without CONNECTION_CLOSE: the server only learns it from its idle timeout."""
        self.sock.close()
        self.terminated = True

    def close(self) -> None:
        if not self.terminated:
            self.quic.close()
            self._flush()
            self.terminated = True
        self.sock.close()


# --------------------------------------------------------------------------- raw UDP


def client_initial(port: int, cafile: str) -> bytes:
    """A genuine, padded QUIC v1 client Initial (what a real client sends first)."""
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN, server_name="localhost")
    config.load_verify_locations(cafile)
    quic = QuicConnection(configuration=config)
    quic.connect(("127.0.0.1", port), time.monotonic())
    return quic.datagrams_to_send(time.monotonic())[0][0]


def long_header(
    version: int, dcid: bytes, scid: bytes, size: int = 1200, v1_layout: bool = False
) -> bytes:
    """A long-header packet (Initial type bits) for `version`, padded with junk to `size`.

    Past the CIDs, a version's packet is opaque (RFC 8999): by default junk follows them;
    `v1_layout` adds a v1 Initial's token and length fields (as real clients do when they
    grease the version).
    """
    head = bytes([0xC0]) + struct.pack("!I", version)
    head += bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
    if v1_layout:
        rest = max(0, size - len(head) - 3)
        head += b"\x00" + struct.pack("!H", 0x4000 | rest)  # token length 0, length (varint)
    return head + os.urandom(max(0, size - len(head)))


def parse_version_negotiation(data: bytes) -> tuple[bytes, bytes, list[int]]:
    """(dcid, scid, versions) of a Version Negotiation packet (RFC 9000 17.2.1)."""
    assert data[0] & 0x80, "not a long header"
    assert data[1:5] == b"\x00\x00\x00\x00", f"version field {data[1:5].hex()} is not 0"
    pos = 5
    dcid = data[pos + 1 : pos + 1 + data[pos]]
    pos += 1 + data[pos]
    scid = data[pos + 1 : pos + 1 + data[pos]]
    pos += 1 + data[pos]
    rest = data[pos:]
    versions = [struct.unpack("!I", rest[i : i + 4])[0] for i in range(0, len(rest) - 3, 4)]
    return dcid, scid, versions


def udp_exchange(port: int, datagrams: Sequence[bytes], wait: float = 0.5) -> list[bytes]:
    """Send datagrams from one socket; collect whatever comes back within `wait` seconds."""
    replies: list[bytes] = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("127.0.0.1", port))
        for data in datagrams:
            sock.send(data)
        deadline = time.monotonic() + wait
        while len(replies) < 100:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                replies.append(sock.recv(65536))
            except TimeoutError:
                break
            except ConnectionRefusedError:
                replies.append(b"<refused>")
                break
    return replies
