"""Hypercorn's ASGI middleware, with Hypercorn's names and signatures, so that
`from hypercorn.middleware import X` becomes `from edgecorn.middleware import X`.

Each one is plain ASGI and runs on the asyncio and the trio workers alike.
"""

from __future__ import annotations

from .dispatcher import AsyncioDispatcherMiddleware, DispatcherMiddleware, TrioDispatcherMiddleware
from .http_to_https import HTTPToHTTPSRedirectMiddleware
from .proxy_fix import ProxyFixMiddleware
from .wsgi import AsyncioWSGIMiddleware, TrioWSGIMiddleware

__all__ = (
    "AsyncioDispatcherMiddleware",
    "AsyncioWSGIMiddleware",
    "DispatcherMiddleware",
    "HTTPToHTTPSRedirectMiddleware",
    "ProxyFixMiddleware",
    "TrioDispatcherMiddleware",
    "TrioWSGIMiddleware",
)
