"""StatsD lines over UDP, as Hypercorn's `statsd_host` / `statsd_prefix` / `dogstatsd_tags`.

The metric names are Hypercorn's, so dashboards built for it keep working:
per response `hypercorn.requests` (counter), `hypercorn.request.duration` (timer, ms) and
`hypercorn.request.status.<code>` (counter); per error-log record `hypercorn.log.warning`,
`.error`, `.exception` (an error with a traceback) and `.critical`. Hypercorn sends one
datagram per metric; we send a response's three lines in one datagram (newline-separated,
which StatsD and the Datadog agent both read), so a response costs one `send`.

The socket is made in the supervisor before the workers fork and shared by them: a UDP
datagram is sent whole or not at all, so workers cannot interleave lines. A send that fails
(no listener: ECONNREFUSED, a full buffer) drops the lines, as StatsD over UDP always may.
"""

from __future__ import annotations

import logging
import socket
from typing import Any


class Statsd:
    def __init__(self, host: str, port: int, prefix: str = "", tags: str = "") -> None:
        if prefix and not prefix.endswith("."):
            prefix += "."  # as Hypercorn: "edge" and "edge." both give "edge.hypercorn..."
        self.prefix = prefix
        self.suffix = f"|#{tags}" if tags else ""
        # Resolved once: a name looked up per send would be a DNS query per response.
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.address = address

    def send(self, lines: list[str]) -> None:
        suffix = self.suffix
        data = "\n".join(f"{self.prefix}{line}{suffix}" for line in lines).encode("ascii")
        try:
            self.sock.sendto(data, self.address)
        except OSError:
            pass  # UDP metrics are best effort; a log line here would be one per request

    # --- the Recorder interface (edgecorn.metrics) --------------------------------------

    def request(self, scope: dict[str, Any], status: int, sent: int, duration: float) -> None:
        self.send(
            [
                f"hypercorn.request.duration:{duration * 1000:.3f}|ms",
                "hypercorn.requests:1|c|@1.0",
                f"hypercorn.request.status.{status}:1|c|@1.0",
            ]
        )

    def sample(self, connections: Any) -> None:
        pass  # Hypercorn sends no gauges; Prometheus has them

    def quic_reply(self, packet: bytes) -> None:
        pass

    def quic_datagram(self, conn: Any, data: bytes) -> None:
        pass

    def quic_handshake(self, conn: Any, completed: bool) -> None:
        pass

    def upstream_error(self, route: Any, upstream: str, status: int) -> None:
        pass


class LogCounter(logging.Handler):
    """Counts the error log's records by level, as Hypercorn's StatsdLogger does."""

    def __init__(self, statsd: Statsd) -> None:
        super().__init__(logging.WARNING)
        self.statsd = statsd

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.CRITICAL:
            name = "critical"
        elif record.levelno >= logging.ERROR:
            name = "exception" if record.exc_info else "error"
        else:
            name = "warning"
        self.statsd.send([f"hypercorn.log.{name}:1|c|@1.0"])


def start(config: Any) -> Statsd:
    host, _, port = config.statsd_host.rpartition(":")
    statsd = Statsd(host.strip("[]"), int(port), config.statsd_prefix, config.dogstatsd_tags)
    logging.getLogger("edgecorn.error").addHandler(LogCounter(statsd))
    return statsd
