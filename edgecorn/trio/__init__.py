"""trio backend: `serve(app, config)` as in Hypercorn (`from edgecorn.trio import serve`)."""

from .serve import serve

__all__ = ["serve"]
