"""asyncio (and uvloop) backend: `serve(app, config)` as in Hypercorn."""

from .serve import serve

__all__ = ["serve"]
