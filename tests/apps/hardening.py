"""Apps for the hardening tests: `drain` (tests/test_hardening_drain.py), `read_body`
(tests/test_hardening_slow.py and test_hardening_slow_h2h3.py) and `held`
(tests/test_hardening_limits_listen.py)."""

from __future__ import annotations

from pathlib import Path
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
    """Reads the whole body (noting `disconnect` in `?file=` if the client goes away),
    sleeps `?sleep=` seconds, answers how much it read."""
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
    if "sleep" in params:
        await anyio.sleep(float(params["sleep"]))  # asyncio or trio
    body = b"read %d" % size
    headers = [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def held(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/?started=PATH&release=PATH`: create `started`, wait (bounded) for `release`."""
    if scope["type"] != "http":
        return
    params = query(scope)
    Path(params["started"]).touch()
    release = Path(params["release"])
    for _ in range(600):  # at most 30 s
        if release.exists():
            break
        await anyio.sleep(0.05)
    body = b"answered"
    headers = [(b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
