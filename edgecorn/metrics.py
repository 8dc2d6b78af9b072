"""Prometheus metrics, summed over all workers, on a listener of their own.

`metrics: {bind: "127.0.0.1:9100"}` turns them on. prometheus_client's multiprocess
mode fits our fork model: the supervisor points PROMETHEUS_MULTIPROC_DIR at a fresh
directory *before* prometheus_client is imported, every process (workers after fork
included: the library notices the new pid) writes its samples to its own mmap file,
and the supervisor's scrape endpoint (prometheus_client's own HTTP server, in a
thread) merges them, so one scrape sees the whole server and a dead worker's
counts stay counted. Nothing here is imported or done when metrics are off; when on,
the hot path is a few counter increments per finished response.
"""

from __future__ import annotations

import glob
import logging
import os
import tempfile
from typing import Any

log = logging.getLogger("edgecorn.error")

ENV = "PROMETHEUS_MULTIPROC_DIR"
_PROTOCOLS = {"1.0": "h1", "1.1": "h1", "2": "h2", "3": "h3", "0.9": "hq"}


class Recorder:
    def __init__(self) -> None:
        from prometheus_client import Counter, Histogram

        self.requests = Counter(
            "edgecorn_requests", "Responses by protocol and status", ["protocol", "status"]
        )
        self.latency = Histogram(
            "edgecorn_request_duration_seconds",
            "Time from request to last response byte handed to the protocol",
            ["protocol"],
        )
        self.bytes = Counter(
            "edgecorn_response_body_bytes", "Response body bytes sent", ["protocol"]
        )
        self.restarts = Counter("edgecorn_worker_restarts", "Workers that died and were replaced")

    def request(self, scope: dict[str, Any], status: int, sent: int, duration: float) -> None:
        protocol = _PROTOCOLS.get(scope.get("http_version", ""), "h1")
        self.requests.labels(protocol, str(status)).inc()
        self.latency.labels(protocol).observe(duration)
        if sent:
            self.bytes.labels(protocol).inc(sent)


recorder: Recorder | None = None  # set in every process while metrics are on


def start(config: Any) -> None:
    """In the supervisor (or the single process), before any worker is forked."""
    global recorder
    if not config.metrics or recorder is not None:
        return
    directory = os.environ.get(ENV)
    if directory:  # the operator's own directory: last run's files would add up
        for stale in glob.glob(os.path.join(directory, "*.db")):
            os.remove(stale)
    else:
        directory = tempfile.mkdtemp(prefix="edgecorn-metrics-")
        os.environ[ENV] = directory
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    recorder = Recorder()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    host, _, port = config.metrics["bind"].rpartition(":")
    start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0", registry=registry)
    log.info("Metrics on http://%s/metrics (Prometheus text)", config.metrics["bind"])


def worker_restarted() -> None:
    if recorder is not None:
        recorder.restarts.inc()
