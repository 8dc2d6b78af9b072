"""Apps for the hardening tests: `drain` (tests/test_hardening_drain.py) and `read_body`
(tests/test_hardening_slow.py)."""

from __future__ import annotations

from typing import Any

import anyio

from tests.apps.common import query


async def drain(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/?s=SECONDS&n=BYTES&file=PATH`: note the start in PATH, sleep, answer n bytes."""
    if scope["type"] != "http":
        return
    params = query(scope)
    if "file" in params:
        with open(params["file"], "a") as fh:
            fh.write("started\n")
    await anyio.sleep(float(params.get("s", "0")))
    body = bytes(i % 251 for i in range(int(params.get("n", "10"))))
    headers = [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Reads the whole body, noting `disconnect` in `?file=` if the client goes away."""
    if scope["type"] != "http":
        return
    params = query(scope)
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if "file" in params:
                with open(params["file"], "a") as fh:
                    fh.write("disconnect\n")
            return
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            break
    body = b"read %d" % size
    headers = [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
