"""The Hypercorn quickstart, with only the module name changed to edgecorn.

PORT=8000 python examples/quickstart.py
curl http://127.0.0.1:8000/
"""

import asyncio
import os

from edgecorn.asyncio import serve
from edgecorn.config import Config


async def app(scope, receive, send):
    if scope["type"] != "http":
        raise Exception("Only the HTTP protocol is supported")

    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain"),
                (b"content-length", b"5"),
            ],
        }
    )
    await send(
        {
            "type": "http.response.body",
            "body": b"hello",
        }
    )


config = Config()
config.bind = [f"127.0.0.1:{os.environ.get('PORT', '8000')}"]
asyncio.run(serve(app, config))
