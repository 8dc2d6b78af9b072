"""Prometheus metrics, summed over all workers, on a listener of their own.

`metrics: {bind: "127.0.0.1:9100"}` turns them on. prometheus_client's multiprocess
mode fits our fork model: the supervisor points PROMETHEUS_MULTIPROC_DIR at a fresh
directory *before* prometheus_client is imported, every process (workers after fork
included: the library notices the new pid) writes its samples to its own mmap file,
and the supervisor's scrape endpoint (prometheus_client's own HTTP server, in a
thread) merges them, so one scrape sees the whole server and a dead worker's
counts stay counted. Nothing here is imported or done when both are off: every
hook elsewhere is `if metrics.recorder is not None`, and most sit on paths that run
once per connection or handshake, not per request.

`statsd_host` (edgecorn/statsd.py) plugs into the same hooks: `recorder` is the Prometheus
Recorder, the StatsD client, or a Tee of both, so the hot path still checks one global.

Open connections and streams are gauges *sampled* by each worker's once-a-second tick
(so they cost nothing per request); they are "livesum" gauges, summed over the live
workers only: the supervisor drops a dead worker's file when it reaps it.
"""

from __future__ import annotations

import glob
import logging
import os
import tempfile
from typing import Any

log = logging.getLogger("edgecorn.error")

ENV = "PROMETHEUS_MULTIPROC_DIR"
ROUTE_KEY = "edgecorn.route"  # the scope key the router sets (only while metrics are on)
_PROTOCOLS = {"1.0": "h1", "1.1": "h1", "2": "h2", "3": "h3", "0.9": "hq"}
_ADAPTERS = {"H11Adapter": "h1", "HttptoolsAdapter": "h1", "H2Adapter": "h2", "H3Adapter": "h3"}
# Every protocol a gauge sample sets, so a protocol whose last connection closed reads 0.
_GAUGE_PROTOCOLS = ("h1", "h2", "h3", "pending")
_QUIC_V2 = 0x6B3343CF


class Recorder:
    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter(
            "edgecorn_requests",
            "Responses by protocol, route and status",
            ["protocol", "route", "status"],
        )
        self.latency = Histogram(
            "edgecorn_request_duration_seconds",
            "Time from request to last response byte handed to the protocol",
            ["protocol", "route"],
        )
        self.bytes = Counter(
            "edgecorn_response_body_bytes", "Response body bytes sent", ["protocol"]
        )
        self.restarts = Counter("edgecorn_worker_restarts", "Workers that died and were replaced")
        self.connections = Gauge(
            "edgecorn_open_connections",
            "Open client connections by protocol (pending: TLS handshake or not yet sniffed),"
            " sampled once a second",
            ["protocol"],
            multiprocess_mode="livesum",
        )
        self.streams = Gauge(
            "edgecorn_open_streams",
            "Requests and WebSockets in flight by protocol, sampled once a second",
            ["protocol"],
            multiprocess_mode="livesum",
        )
        self.handshakes = Counter(
            "edgecorn_quic_handshakes",
            "QUIC handshakes by result (completed, failed)",
            ["result"],
        )
        self.retries = Counter("edgecorn_quic_retries", "QUIC Retry packets sent")
        self.early_data = Counter(
            "edgecorn_quic_early_data",
            "Handshakes whose client sent 0-RTT packets, by result (accepted, refused)",
            ["result"],
        )
        self.upstream_errors = Counter(
            "edgecorn_upstream_errors",
            "Failed upstream attempts of proxy routes (status: 502 refused/broken, 504 timeout)",
            ["route", "upstream", "status"],
        )

    # --- per response (HTTPStream) ---------------------------------------------------

    def request(self, scope: dict[str, Any], status: int, sent: int, duration: float) -> None:
        protocol = _PROTOCOLS.get(scope.get("http_version", ""), "h1")
        route = scope.get(ROUTE_KEY, "")
        self.requests.labels(protocol, route, str(status)).inc()
        self.latency.labels(protocol, route).observe(duration)
        if sent:
            self.bytes.labels(protocol).inc(sent)

    # --- once a second per worker ----------------------------------------------------

    def sample(self, connections: Any) -> None:
        conns = dict.fromkeys(_GAUGE_PROTOCOLS, 0)
        streams = dict.fromkeys(_GAUGE_PROTOCOLS, 0)
        for conn in list(connections):
            proto = getattr(conn, "proto", None)
            name = "pending" if proto is None else _ADAPTERS.get(type(proto).__name__, "h1")
            conns[name] += 1
            streams[name] += len(getattr(conn, "streams", ()))
        for name in _GAUGE_PROTOCOLS:
            self.connections.labels(name).set(conns[name])
            self.streams.labels(name).set(streams[name])

    # --- QUIC: per handshake, per Retry ----------------------------------------------

    def quic_reply(self, packet: bytes) -> None:
        """A stateless reply: a Retry (counted) or a Version Negotiation (not)."""
        if packet[1:5] != b"\0\0\0\0":
            self.retries.inc()

    def quic_datagram(self, conn: Any, data: bytes) -> None:
        """During the handshake: note whether the client sends 0-RTT packets."""
        if not getattr(conn, "edge_sent_0rtt", False) and has_0rtt(data):
            conn.edge_sent_0rtt = True

    def quic_handshake(self, conn: Any, completed: bool) -> None:
        self.handshakes.labels("completed" if completed else "failed").inc()
        if completed:
            tls = getattr(conn.quic, "tls", None)  # aioquic and qh3 both name it so
            if getattr(tls, "early_data_accepted", False):
                self.early_data.labels("accepted").inc()
            elif getattr(conn, "edge_sent_0rtt", False):
                self.early_data.labels("refused").inc()

    # --- upstreams ---------------------------------------------------------------------

    def upstream_error(self, route: Any, upstream: str, status: int) -> None:
        self.upstream_errors.labels(route_label(route), upstream, str(status)).inc()


def route_label(route: Any) -> str:
    """`host/path` as the routes: file wrote it ('*' any host, '=' an exact path)."""
    return f"{route.host or '*'}{'=' if route.exact else ''}{route.path or '/'}"


def has_0rtt(data: bytes) -> bool:
    """Does this datagram hold a 0-RTT packet? Walks the coalesced long headers
    (RFC 9000 17.2; QUIC v2 numbers the types differently, RFC 9369 3.2)."""
    offset = 0
    while offset + 7 <= len(data) and data[offset] & 0x80:
        first = data[offset]
        version = int.from_bytes(data[offset + 1 : offset + 5], "big")
        kind = (first & 0x30) >> 4
        if version == _QUIC_V2:
            kind = (kind - 1) % 4  # v2: 1 Initial, 2 0-RTT, 3 Handshake, 0 Retry
        if kind == 1:
            return True
        if kind == 3 or version == 0:
            return False  # Retry or Version Negotiation: nothing follows
        at = offset + 5
        at += 1 + data[at]  # DCID
        if at >= len(data):
            return False
        at += 1 + data[at]  # SCID
        if kind == 0:  # Initial: a token
            token, at = _varint(data, at)
            at += token
        length, at = _varint(data, at)
        if at > len(data):
            return False
        offset = at + length
    return False


def _varint(data: bytes, at: int) -> tuple[int, int]:
    if at >= len(data):
        return 0, len(data) + 1
    size = 1 << (data[at] >> 6)
    value = data[at] & 0x3F
    for byte in data[at + 1 : at + size]:
        value = (value << 8) | byte
    return value, at + size


class Tee:
    """Prometheus and StatsD both on: every hook goes to each."""

    def __init__(self, *recorders: Any) -> None:
        self.recorders = recorders

    def __getattr__(self, name: str) -> Any:
        methods = [getattr(r, name) for r in self.recorders]

        def call(*args: Any, **kwargs: Any) -> None:
            for method in methods:
                method(*args, **kwargs)

        setattr(self, name, call)  # looked up once per name
        return call


# Set in every process while metrics or StatsD are on: what the hooks elsewhere call.
recorder: Any = None
prometheus: Recorder | None = None


def start(config: Any) -> None:
    """In the supervisor (or the single process), before any worker is forked."""
    global recorder, prometheus
    if recorder is not None:
        return
    if config.metrics:
        prometheus = _start_prometheus(config)
    client = None
    if getattr(config, "statsd_host", None):
        from . import statsd

        client = statsd.start(config)
        log.info("StatsD lines to %s (prefix %r)", config.statsd_host, config.statsd_prefix)
    if prometheus is not None and client is not None:
        recorder = Tee(prometheus, client)
    else:
        recorder = prometheus or client


def _start_prometheus(config: Any) -> Recorder:
    directory = os.environ.get(ENV)
    if directory:  # the operator's own directory: last run's files would add up
        for stale in glob.glob(os.path.join(directory, "*.db")):
            os.remove(stale)
    else:
        directory = tempfile.mkdtemp(prefix="edgecorn-metrics-")
        os.environ[ENV] = directory
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    made = Recorder()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    host, _, port = config.metrics["bind"].rpartition(":")
    start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0", registry=registry)
    log.info("Metrics on http://%s/metrics (Prometheus text)", config.metrics["bind"])
    return made


def worker_restarted() -> None:
    if prometheus is not None:
        prometheus.restarts.inc()


def worker_exited(pid: int) -> None:
    """In the supervisor, for every reaped worker: its open-connection gauges end with it."""
    if prometheus is not None:
        from prometheus_client.multiprocess import mark_process_dead

        mark_process_dead(pid)  # type: ignore[no-untyped-call]
