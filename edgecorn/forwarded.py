"""The real client behind trusted proxies: `Forwarded` and `X-Forwarded-For/-Proto/-Host`.

Only a peer listed in `trusted_proxies` may tell us who the client is. Its
chain of addresses is walked from the right (the hop nearest to us) past every
trusted proxy; the first address that is not trusted is the client. Anything
left of it was written by the client itself and is never believed. `Forwarded`
(RFC 7239) wins over the X-Forwarded-* fields when a request has both.

`apply` is called once per scope, and only when `trusted_proxies` is not empty;
the immediate peer stays available to the edge proxy (which appends it to the
forwarding chain it sends upstream) as `scope["extensions"]["edgecorn.peer"]`.
"""

from __future__ import annotations

import ipaddress
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Headers = list[tuple[bytes, bytes]]

_SCHEMES = {"http", "https", "ws", "wss"}
_WS_SCHEME = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_HTTP_SCHEME = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_CACHE_SIZE = 4096


class Trust:
    """The `trusted_proxies` networks, with a small cache of addresses already judged."""

    def __init__(self, cidrs: list[str]) -> None:
        self.networks: list[Network] = [ipaddress.ip_network(c, strict=False) for c in cidrs]
        self.seen: dict[str, bool] = {}

    def __call__(self, host: str) -> bool:
        verdict = self.seen.get(host)
        if verdict is None:
            try:
                address = ipaddress.ip_address(host)
            except ValueError:
                verdict = False
            else:
                verdict = any(address in network for network in self.networks)
            if len(self.seen) >= _CACHE_SIZE:
                self.seen.clear()
            self.seen[host] = verdict
        return verdict


_trusts: dict[tuple[str, ...], Trust] = {}


def trust_for(cidrs: list[str]) -> Trust:
    """One Trust per distinct list (a Config's list does not change while it serves)."""
    key = tuple(cidrs)
    trust = _trusts.get(key)
    if trust is None:
        trust = _trusts[key] = Trust(cidrs)
    return trust


def apply(scope: dict[str, Any], cidrs: list[str]) -> None:
    """Rewrite `client`, `scheme` and the host field from a trusted peer's forwarding fields."""
    peer = scope["client"]
    if peer is None:
        return
    trusted = trust_for(cidrs)
    if not trusted(peer[0]):
        return
    forwarded: list[bytes] = []
    xff: list[bytes] = []
    xproto = xhost = None
    for name, value in scope["headers"]:
        if name == b"forwarded":
            forwarded.append(value)
        elif name == b"x-forwarded-for":
            xff.append(value)
        elif name == b"x-forwarded-proto":
            xproto = value
        elif name == b"x-forwarded-host":
            xhost = value
    if forwarded:
        client, proto, host = from_forwarded(b",".join(forwarded), trusted)
    elif xff or xproto is not None or xhost is not None:
        client = (
            from_chain([_node(p) for p in b",".join(xff).split(b",")], trusted) if xff else None
        )
        proto = _last(xproto)
        host = _last(xhost)
    else:
        return
    scheme = scope["scheme"]
    scope["extensions"] = {
        **scope["extensions"],
        "edgecorn.peer": {"client": peer, "scheme": scheme},
    }
    if client is not None:
        scope["client"] = client
    if proto is not None and proto.lower() in _SCHEMES:
        table = _WS_SCHEME if scheme in ("ws", "wss") else _HTTP_SCHEME
        scope["scheme"] = table[proto.lower()]
    if host is not None and _plain(host):
        encoded = host.encode("latin-1")
        scope["headers"] = [(n, v) for n, v in scope["headers"] if n != b"host"]
        scope["headers"].append((b"host", encoded))


def from_chain(nodes: list[tuple[str, int] | None], trusted: Trust) -> tuple[str, int] | None:
    """The rightmost node that is not a trusted proxy (None: an unusable node stops the walk)."""
    for node in reversed(nodes):
        if node is None:
            return None  # `unknown`, an obfuscated name or junk: we cannot see past it
        if not trusted(node[0]):
            return node
    return nodes[0] if nodes else None  # every hop is ours: the leftmost is the client


def from_forwarded(
    value: bytes, trusted: Trust
) -> tuple[tuple[str, int] | None, str | None, str | None]:
    """(client, proto, host) from RFC 7239 elements; proto and host from the client's element."""
    elements = parse_forwarded(value.decode("latin-1"))
    nodes = [_node(e["for"].encode("latin-1")) if "for" in e else None for e in elements]
    client = from_chain(nodes, trusted)
    chosen = elements[nodes.index(client)] if client is not None else (elements or [{}])[-1]
    return client, chosen.get("proto"), chosen.get("host")


def parse_forwarded(value: str) -> list[dict[str, str]]:
    """RFC 7239 4: `for=a;proto=b, for="[::1]:80"` -> [{"for": "a", "proto": "b"}, ...]."""
    elements: list[dict[str, str]] = []
    current: dict[str, str] = {}
    i, n = 0, len(value)
    while i < n:
        char = value[i]
        if char in " \t;":
            i += 1
            continue
        if char == ",":
            elements.append(current)
            current = {}
            i += 1
            continue
        eq = value.find("=", i)
        if eq < 0:
            break
        key = value[i:eq].strip().lower()
        i = eq + 1
        if i < n and value[i] == '"':
            end = i + 1
            chars = []
            while end < n and value[end] != '"':
                if value[end] == "\\" and end + 1 < n:
                    end += 1
                chars.append(value[end])
                end += 1
            item = "".join(chars)
            i = end + 1
        else:
            end = i
            while end < n and value[end] not in ";,":
                end += 1
            item = value[i:end].strip()
            i = end
        current.setdefault(key, item)
    elements.append(current)
    return [e for e in elements if e]


def _node(raw: bytes) -> tuple[str, int] | None:
    """An address from a chain: `1.2.3.4`, `1.2.3.4:80`, `[::1]:80`, `::1`; else None."""
    text = raw.decode("latin-1").strip().strip('"')
    port = 0
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, digits = text.partition(":")
        if not digits.isdigit():
            return None
        port = int(digits)
    else:
        host = text
    try:
        return str(ipaddress.ip_address(host)), port
    except ValueError:
        return None


def _last(value: bytes | None) -> str | None:
    """The value the nearest proxy wrote (the rightmost of a list)."""
    if value is None:
        return None
    return value.decode("latin-1").rsplit(",", 1)[-1].strip() or None


def _plain(host: str) -> bool:
    """A host field we can pass on: no spaces, controls, separators or quotes."""
    return 0 < len(host) < 256 and all(33 <= ord(c) < 127 and c not in '",;/\\' for c in host)
