"""edgecorn: an HTTP/3-first ASGI edge server."""

__version__ = "0.1.0"
