"""The app of tests/test_memory_cycles.py: the server process runs with the cyclic
gc off, so what a closed connection leaves in reference cycles stays until `/_gc` asks.

`/_gc` collects once (DEBUG_SAVEALL keeps what it found in gc.garbage instead of freeing
it), answers with the count per type name, then frees it. `/_live` answers how many
connection objects exist (the one asking included), without collecting. Every other
path: a small response; WebSockets: an echo until the client closes.
"""

from __future__ import annotations

import gc
import json
from collections import Counter
from typing import Any

from edgecorn.connection import Connection

gc.disable()  # only /_gc collects
gc.set_debug(gc.DEBUG_SAVEALL)


def _garbage() -> dict[str, int]:
    gc.collect()
    counts = Counter(type(obj).__qualname__ for obj in gc.garbage)
    gc.garbage.clear()
    gc.set_debug(0)  # now free them, or the next collection finds them again
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    return dict(counts)


def _live() -> list[str]:
    """The connection objects that exist, with their state (for a failing test's message)."""
    return [
        f"{type(obj).__name__} closed={obj.closed} proto={type(obj.proto).__name__}"
        f" streams={len(obj.streams)} client={obj.client}"
        for obj in gc.get_objects()
        if isinstance(obj, Connection)
    ]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"].replace("lifespan.", "")
            await send({"type": f"lifespan.{kind}.complete"})
            if kind == "shutdown":
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": message.get("text") or ""})
    path = scope["path"]
    if path == "/_gc":
        body = json.dumps(_garbage()).encode()
    elif path == "/_live":
        body = json.dumps(_live()).encode()
    else:
        body = b"ok"
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
