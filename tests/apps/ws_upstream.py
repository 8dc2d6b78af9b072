"""A WebSocket upstream that is not edgecorn: the `websockets` package's server.

`python -m tests.apps.ws_upstream PORT`. It echoes every message, except two texts:
"hello?", answered with a JSON report of the request path and headers it got, and
"close NNNN", answered by closing with code NNNN. (It never speaks first: a frame sent with
the 101 is tested on its own, with a raw upstream, in test_e2e_edge_proxy.py.)
"""

from __future__ import annotations

import asyncio
import json
import sys

from websockets.asyncio.server import ServerConnection, serve


async def handler(ws: ServerConnection) -> None:
    request = ws.request
    assert request is not None
    async for message in ws:
        if message == "hello?":
            report = {
                "path": request.path,
                "headers": [[k.lower(), v] for k, v in request.headers.raw_items()],
            }
            await ws.send(json.dumps(report))
            continue
        if isinstance(message, str) and message.startswith("close "):
            await ws.close(int(message.split()[1]), "asked to")
            return
        await ws.send(message)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, max_size=None) as server:
        print(f"ws upstream on {port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
