"""ProxyFixMiddleware(app, mode="legacy", trusted_hops=1): believe a proxy's headers.

`legacy` reads X-Forwarded-For/-Proto/-Host, `modern` the Forwarded header (RFC 7239).
With `trusted_hops` N the value N entries from the right is taken, as in Hypercorn (the
entries further left were written by parties we do not trust). `trusted_proxies` (ours) is
a list of addresses or CIDRs: the headers count only when the direct peer is one of them,
so a client that reaches the server past the proxy cannot forge its address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from typing import Literal

from ..asgi.types import ASGIApp, Receive, Scope, Send

Headers = list[tuple[bytes, bytes]]


class ProxyFixMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        mode: Literal["legacy", "modern"] = "legacy",
        trusted_hops: int = 1,
        *,
        trusted_proxies: Iterable[str] | None = None,
    ) -> None:
        if mode not in ("legacy", "modern"):
            raise ValueError(f"mode must be 'legacy' or 'modern', not {mode!r}")
        self.app = app
        self.mode = mode
        self.trusted_hops = trusted_hops
        self.trusted_proxies = (
            None
            if trusted_proxies is None
            else [ipaddress.ip_network(net, strict=False) for net in trusted_proxies]
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self._peer_trusted(scope):
            scope = self._fixed(scope)
        await self.app(scope, receive, send)

    def _peer_trusted(self, scope: Scope) -> bool:
        if self.trusted_proxies is None:
            return True
        client = scope.get("client")
        try:
            address = ipaddress.ip_address(client[0]) if client else None
        except ValueError:  # a unix socket peer has no address
            return False
        return address is not None and any(address in net for net in self.trusted_proxies)

    def _fixed(self, scope: Scope) -> Scope:
        headers: Headers = scope["headers"]
        client = scheme = host = None
        forwarded = self.mode == "modern" and _trusted(b"forwarded", headers, self.trusted_hops)
        if forwarded:
            for part in forwarded.split(";"):
                name, _, value = part.strip().partition("=")
                value = value.strip().strip('"')
                if name.lower() == "for":
                    client = value
                elif name.lower() == "proto":
                    scheme = value
                elif name.lower() == "host":
                    host = value
        elif self.mode == "legacy":
            client = _trusted(b"x-forwarded-for", headers, self.trusted_hops)
            scheme = _trusted(b"x-forwarded-proto", headers, self.trusted_hops)
            host = _trusted(b"x-forwarded-host", headers, self.trusted_hops)
        if client is None and scheme is None and host is None:
            return scope
        scope = dict(scope)
        if client is not None:
            scope["client"] = (client, 0)
        if scheme is not None:
            scope["scheme"] = scheme
        if host is not None:
            scope["headers"] = [(k, v) for k, v in headers if k != b"host"] + [
                (b"host", host.encode("latin-1"))
            ]
        return scope


def _trusted(name: bytes, headers: Headers, hops: int) -> str | None:
    """The value `hops` entries from the right of all `name` headers, or None."""
    if hops <= 0:
        return None
    values = [
        item.strip()
        for key, value in headers
        if key == name
        for item in value.decode("latin-1").split(",")
    ]
    return values[-hops] if len(values) >= hops else None
