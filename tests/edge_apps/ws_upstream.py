"""A WebSocket upstream that is not edgecorn: the `websockets` package's server.

`python -m tests.edge_apps.ws_upstream PORT`. On connect it sends one text message, a JSON
report of the request path and headers it got; then it echoes every message, except the
text "close NNNN", which it answers by closing with code NNNN.
"""

from __future__ import annotations

import asyncio
import json
import sys

from websockets.asyncio.server import ServerConnection, serve


async def handler(ws: ServerConnection) -> None:
    request = ws.request
    assert request is not None
    await ws.send(
        json.dumps(
            {
                "path": request.path,
                "headers": [[k.lower(), v] for k, v in request.headers.raw_items()],
            }
        )
    )
    async for message in ws:
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
