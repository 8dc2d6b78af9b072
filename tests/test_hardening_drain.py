"""Nothing accepted is lost at a graceful stop (issue 14).

HTTP/2: every stream up to GOAWAY's last_stream_id is answered in full before the
connection closes, even when the peer reads slowly (the server's write buffer still
holds responses when the last stream finishes) and keeps sending WINDOW_UPDATEs while
the server closes. Repeated, on both worker classes, because these races show up one
run in several.

Real `python -m edgecorn` processes on loopback; the conftest raw HTTP/2 client (`h2`
package). No timing asserts: sleeps only shape the race, byte counts decide.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import anyio
import pytest

from tests.procutil import tolerate_goaway, wait_until

pytestmark = pytest.mark.timeout(180)

APP = "tests.test_hardening_drain:app"
STREAMS = 20


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/?s=SECONDS&n=BYTES&file=PATH`: note the start in PATH, sleep, answer n bytes."""
    if scope["type"] != "http":
        return
    query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if "file" in query:
        with open(query["file"], "a") as fh:
            fh.write("started\n")
    await anyio.sleep(float(query.get("s", "0")))
    body = bytes(i % 251 for i in range(int(query.get("n", "10"))))
    headers = [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _one_run(
    server_factory: Any, h2conn: Any, tmp_path: Path, run: int, size: int, tls: bool
) -> int:
    server = server_factory.start("--graceful-timeout", "15", app=APP)
    marker = tmp_path / f"started{run}.txt"
    port = server.port if tls else server.insecure_port
    # A big window: the server may hand the whole answer to its transport at once.
    conn = tolerate_goaway(h2conn(port, tls=tls, settings={4: 2**24}, timeout=20))
    conn.conn.increment_flow_control_window(2**30)
    conn.flush()
    path = f"/?s=0.3&n={size}&file={marker}"
    sids = [conn.request("GET", path) for _ in range(STREAMS)]

    def started() -> int:
        return marker.read_text().count("started") if marker.exists() else 0

    assert wait_until(lambda: started() == STREAMS, 15), server.describe()
    server.proc.send_signal(signal.SIGTERM)
    # Read late: the answers pile up in the server's buffers while it decides to close.
    time.sleep(0.8)
    answered = 0
    try:
        for sid in sids:
            resp = conn.response(sid)
            if resp.reset is None and resp.status == 200 and len(resp.body) == size:
                answered += 1
    except EOFError:
        pass
    conn.close()
    assert server.proc.wait(20) == 0, server.describe()
    assert conn.goaway is not None and conn.goaway.last_stream_id >= max(sids)
    return answered


@pytest.mark.parametrize("worker_class", ["asyncio", "trio"], indirect=True)
def test_graceful_stop_answers_every_h2_stream(
    server_factory: Any, h2conn: Any, tmp_path: Path, worker_class: str
) -> None:
    # Small answers (all in one write) and big ones (still buffered at the close),
    # over TLS and cleartext h2c.
    cases = [(100, True), (300_000, True), (150_000, False), (30_000, True)] * 2
    results = []
    for run, (size, tls) in enumerate(cases):
        results.append((size, tls, _one_run(server_factory, h2conn, tmp_path, run, size, tls)))
        server_factory.stop_all()
    assert all(answered == STREAMS for _, _, answered in results), results
