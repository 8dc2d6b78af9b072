"""The `routes:` option: each item checked once, into a frozen `Route`.

Pure data and validation, no app imports, so `config.py` can call it. An error
raises `ItemError(index, field)`; the config loader turns that into the file
line of the route (or of its bad key).
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

ACTIONS = ("app", "wsgi", "static", "proxy", "respond", "redirect")
COMMON = ("host", "path", "strip_prefix")
OPTIONS: dict[str, tuple[str, ...]] = {
    "app": ("factory",),
    "wsgi": ("max_body_size",),
    "static": ("listing", "cache_control", "index"),
    "proxy": (
        "host_header",
        "connect_timeout",
        "read_timeout",
        "max_body_size",
        "max_response_header_size",
        "upstream_protocol",
    ),
    "respond": (),
    "redirect": (),
}
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
# h2c: HTTP/2 with prior knowledge on http:// upstreams; h2: over TLS (ALPN) on https:// ones.
UPSTREAM_PROTOCOLS = ("http/1.1", "h2c", "h2")


class ItemError(Exception):
    """A bad item of a list option: `index` (and `field` inside a mapping item) locate it."""

    def __init__(self, message: str, index: int, field: str | None = None) -> None:
        super().__init__(message)
        self.message, self.index, self.field = message, index, field


@dataclass(frozen=True)
class Route:
    index: int
    action: str
    host: str | None = None  # lower case; "*.example.com" matches any subdomain
    path: str | None = None  # a prefix ("/v1/"), or the exact path when `exact`
    exact: bool = False
    strip_prefix: bool = False
    target: str = ""  # module:attr (app/wsgi), directory (static), redirect target
    upstreams: tuple[str, ...] = ()
    status: int = 200
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    factory: bool = False
    listing: bool = False
    cache_control: str | None = None
    index_file: str = "index.html"
    host_header: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    max_body_size: int | None = None
    max_response_header_size: int = 64 * 1024
    upstream_protocol: str = "http/1.1"
    base_dir: str = "."

    @property
    def prefix(self) -> str:
        """The part `strip_prefix` removes ("" when none)."""
        if self.path is None or self.exact:
            return ""
        return self.path.rstrip("/")

    def describe(self) -> str:
        where = f"{self.host or '*'}{'=' if self.exact else ''}{self.path or '/'}"
        what = ", ".join(self.upstreams) if self.action == "proxy" else self.target
        return f"{where} -> {self.action} {what}".rstrip()


def check_routes(value: Any, base_dir: str) -> list[Route]:
    """Validate the `routes:` list; the result is what Config.routes holds."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ItemError(
            "expected a list of routes (mappings with one action: " + ", ".join(ACTIONS) + ")", -1
        )
    routes = [
        item if isinstance(item, Route) else _route(index, item, base_dir)
        for index, item in enumerate(value)
    ]
    for later in routes:
        for earlier in routes[: later.index]:
            if _covers(earlier, later):
                raise ItemError(
                    f"unreachable: every request it matches is taken by routes[{earlier.index}] "
                    f"({earlier.describe()}); put the more specific route first",
                    later.index,
                )
    return routes


def _route(index: int, item: Any, base_dir: str) -> Route:
    if not isinstance(item, dict):
        raise ItemError(
            f"expected a mapping with one action ({', '.join(ACTIONS)}), got {item!r}", index
        )
    known = set(COMMON + ACTIONS).union(*OPTIONS.values())
    for key in item:
        if key not in known:
            choices = COMMON + ACTIONS + tuple(sorted(set().union(*OPTIONS.values())))
            match = difflib.get_close_matches(str(key), choices, n=1, cutoff=0.6)
            hint = f" (did you mean {match[0]!r}?)" if match else ""
            raise ItemError(
                f"unknown key{hint}; a route takes {', '.join(COMMON)}, one action "
                f"of {', '.join(ACTIONS)} and that action's options",
                index,
                str(key),
            )
    actions = [key for key in item if key in ACTIONS]
    if len(actions) != 1:
        found = " and ".join(actions) if actions else "none"
        raise ItemError(
            f"a route needs exactly one action of {', '.join(ACTIONS)} (found {found})", index
        )
    action = actions[0]
    allowed = COMMON + (action,) + OPTIONS[action]
    for key in item:
        if key not in allowed:
            raise ItemError(
                f"not an option of a {action!r} route (it takes: {', '.join(allowed)})",
                index,
                str(key),
            )
    fields: dict[str, Any] = {"index": index, "action": action, "base_dir": base_dir}
    fields.update(_match(index, item))
    fields["strip_prefix"] = _flag(index, item, "strip_prefix")
    if fields["strip_prefix"] and (fields.get("exact") or fields.get("path") is None):
        raise ItemError("strip_prefix needs a prefix `path` (like /api/)", index, "strip_prefix")
    fields.update(_ACTION_CHECKS[action](index, item[action], base_dir))
    for key in OPTIONS[action]:
        if key in item:
            fields.update(_option(index, key, item[key], base_dir))
    protocol = fields.get("upstream_protocol")
    if protocol in ("h2c", "h2"):
        scheme = "http" if protocol == "h2c" else "https"
        for url in fields["upstreams"]:
            if urlsplit(url).scheme != scheme:
                other = "h2" if protocol == "h2c" else "h2c"
                raise ItemError(
                    f"{protocol} needs {scheme}:// upstreams ({url} is not; {other} is for "
                    f"{'https' if scheme == 'http' else 'http'}://)",
                    index,
                    "upstream_protocol",
                )
    return Route(**fields)


def _match(index: int, item: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    host = item.get("host")
    if host is not None:
        if not isinstance(host, str) or not host or " " in host or "/" in host:
            raise ItemError(
                f"expected a host name like 'api.example.com' or '*.example.com', got {host!r}",
                index,
                "host",
            )
        if "*" in host and not (host.startswith("*.") and "*" not in host[2:]):
            raise ItemError("a wildcard host is '*.example.com' (one leading label)", index, "host")
        out["host"] = host.lower().rstrip(".")
    path = item.get("path")
    if path is not None:
        if not isinstance(path, str):
            raise ItemError(
                f"expected a path like '/api/' or '=/healthz', got {path!r}", index, "path"
            )
        exact = path.startswith("=")
        path = path[1:] if exact else path
        if not path.startswith("/"):
            raise ItemError(
                "a path starts with '/' (a prefix like '/api/', or '=/healthz' for one exact path)",
                index,
                "path",
            )
        out["path"], out["exact"] = path, exact
    return out


def _flag(index: int, item: dict[str, Any], key: str) -> bool:
    value = item.get(key, False)
    if not isinstance(value, bool):
        raise ItemError(f"expected true or false, got {value!r}", index, key)
    return value


def _app(index: int, value: Any, base_dir: str) -> dict[str, Any]:
    if not isinstance(value, str) or not value or value.startswith(":"):
        raise ItemError(f"expected 'module:attr', got {value!r}", index, "app")
    return {"target": value}


def _wsgi(index: int, value: Any, base_dir: str) -> dict[str, Any]:
    if not isinstance(value, str) or not value or value.startswith(":"):
        raise ItemError(f"expected 'module:attr' of a WSGI app, got {value!r}", index, "wsgi")
    return {"target": value}


def _static(index: int, value: Any, base_dir: str) -> dict[str, Any]:
    if not isinstance(value, str) or not value:
        raise ItemError(f"expected a directory, got {value!r}", index, "static")
    directory = os.path.realpath(os.path.join(base_dir, value))
    if not os.path.isdir(directory):
        raise ItemError(f"no such directory: {directory}", index, "static")
    return {"target": directory}


def check_upstream(url: Any) -> str:
    """'' when `url` is a usable upstream, else what is wrong with it."""
    if not isinstance(url, str) or not url:
        return f"expected an http:// or https:// URL, got {url!r}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"bad upstream URL {url!r}: {exc}"
    if parts.scheme not in ("http", "https"):
        return f"bad upstream URL {url!r}: the scheme must be http or https"
    if not parts.hostname:
        return f"bad upstream URL {url!r}: no host"
    if parts.query or parts.fragment:
        return f"bad upstream URL {url!r}: no query or fragment allowed"
    del port
    return ""


def _proxy(index: int, value: Any, base_dir: str) -> dict[str, Any]:
    urls = value if isinstance(value, list) else [value]
    if not urls:
        raise ItemError(
            "expected an upstream URL or a list of them, got an empty list", index, "proxy"
        )
    for url in urls:
        problem = check_upstream(url)
        if problem:
            raise ItemError(problem, index, "proxy")
    return {"upstreams": tuple(url.rstrip("/") for url in urls)}


def _respond(index: int, value: Any, base_dir: str) -> dict[str, Any]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"status": value}
    if not isinstance(value, dict):
        raise ItemError(f"expected {{status, body, headers}}, got {value!r}", index, "respond")
    unknown = set(value) - {"status", "body", "headers"}
    if unknown:
        raise ItemError(
            f"unknown key {sorted(unknown)[0]!r} (respond takes status, body, headers)",
            index,
            "respond",
        )
    status = value.get("status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        raise ItemError(
            f"status: expected an integer from 200 to 599, got {status!r}", index, "respond"
        )
    body = value.get("body", "")
    if not isinstance(body, str):
        raise ItemError(f"body: expected a string, got {body!r}", index, "respond")
    headers = value.get("headers", {})
    if not isinstance(headers, dict) or not all(
        isinstance(k, str) and isinstance(v, (str, int)) for k, v in headers.items()
    ):
        raise ItemError("headers: expected a mapping of header names to strings", index, "respond")
    pairs = tuple((k.lower().encode(), str(v).encode()) for k, v in headers.items())
    return {"status": status, "body": body.encode(), "headers": pairs}


def _redirect(index: int, value: Any, base_dir: str) -> dict[str, Any]:
    if isinstance(value, str):
        value = {"to": value}
    if not isinstance(value, dict) or not isinstance(value.get("to"), str) or not value["to"]:
        raise ItemError(
            f"expected {{to: URL, status: 301|302|303|307|308}}, got {value!r}", index, "redirect"
        )
    unknown = set(value) - {"to", "status"}
    if unknown:
        raise ItemError(
            f"unknown key {sorted(unknown)[0]!r} (redirect takes to, status)", index, "redirect"
        )
    status = value.get("status", 308)
    if status not in REDIRECT_STATUSES or isinstance(status, bool):
        raise ItemError(
            f"status: expected one of {', '.join(map(str, REDIRECT_STATUSES))}, got {status!r}",
            index,
            "redirect",
        )
    return {"target": value["to"], "status": status}


def _option(index: int, key: str, value: Any, base_dir: str) -> dict[str, Any]:
    if key in ("listing", "factory"):
        if not isinstance(value, bool):
            raise ItemError(f"expected true or false, got {value!r}", index, key)
        return {key: value}
    if key in ("connect_timeout", "read_timeout"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ItemError(f"expected a number of seconds > 0, got {value!r}", index, key)
        return {key: float(value)}
    if key in ("max_body_size", "max_response_header_size"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ItemError(f"expected a number of bytes >= 0, got {value!r}", index, key)
        return {key: value}
    if key == "upstream_protocol":
        if value not in UPSTREAM_PROTOCOLS:
            raise ItemError(
                f"expected one of {', '.join(UPSTREAM_PROTOCOLS)}, got {value!r}", index, key
            )
        return {key: value}
    if key == "index":
        if not isinstance(value, str) or not value or "/" in value:
            raise ItemError(f"expected a file name like 'index.html', got {value!r}", index, key)
        return {"index_file": value}
    if not isinstance(value, str) or not value:  # host_header, cache_control
        raise ItemError(f"expected a non-empty string, got {value!r}", index, key)
    return {key: value}


_ACTION_CHECKS = {
    "app": _app,
    "wsgi": _wsgi,
    "static": _static,
    "proxy": _proxy,
    "respond": _respond,
    "redirect": _redirect,
}


def host_matches(pattern: str | None, host: str) -> bool:
    if pattern is None:
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


def path_matches(route: Route, path: str) -> bool:
    """Prefixes match whole segments: '/api/' and '/api' both match '/api' and '/api/x'."""
    prefix = route.path
    if prefix is None:
        return True
    if route.exact:
        return path == prefix
    base = prefix.rstrip("/")
    return not base or path == base or path.startswith(base + "/")


def _covers(earlier: Route, later: Route) -> bool:
    """Does `earlier` match every request `later` could match?"""
    if earlier.host is not None:
        if later.host is None:
            return False
        if earlier.host != later.host and not (
            earlier.host.startswith("*.") and later.host.endswith(earlier.host[1:])
        ):
            return False
    if earlier.path is None:
        return True
    if later.path is None:
        return earlier.path.rstrip("/") == "" and not earlier.exact
    if earlier.exact:
        return later.exact and later.path == earlier.path
    return path_matches(earlier, later.path.rstrip("/") or "/")
