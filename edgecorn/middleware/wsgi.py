"""AsyncioWSGIMiddleware / TrioWSGIMiddleware(wsgi_app, max_body_size=65536).

Hypercorn's two classes differ only in how they reach a thread; edgecorn's WSGI adapter
finds the running event loop itself, so both are the adapter with Hypercorn's signature
(and Hypercorn's default body limit: a larger request body gets 413).
"""

from __future__ import annotations

from ..asgi.wsgi import WSGIAdapter, WSGIApp

MAX_BODY_SIZE = 2**16


class AsyncioWSGIMiddleware(WSGIAdapter):
    def __init__(self, wsgi_app: WSGIApp, max_body_size: int = MAX_BODY_SIZE) -> None:
        super().__init__(wsgi_app, max_body_size)


class TrioWSGIMiddleware(WSGIAdapter):
    def __init__(self, wsgi_app: WSGIApp, max_body_size: int = MAX_BODY_SIZE) -> None:
        super().__init__(wsgi_app, max_body_size)
