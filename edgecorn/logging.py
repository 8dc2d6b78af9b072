"""The error log ("edgecorn.error") and the access log ("edgecorn.access").

The access log speaks Gunicorn's/Hypercorn's `access_log_format` atoms. Atoms
are computed only when the format asks for them, and not at all when the access
log is off (the server checks `AccessLogger.enabled` first). The format `json`
writes one JSON object per line instead (see `json_line`).
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import logging
import logging.config
import logging.handlers
import os
import sys
import time
from collections.abc import Iterable, Mapping
from http import HTTPStatus
from typing import Any

from edgecorn.config import Config
from edgecorn.headers import values

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ERROR_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s"
DATE_FORMAT = "%Y-%m-%d %H:%M:%S %z"

error_log = logging.getLogger("edgecorn.error")
access_log = logging.getLogger("edgecorn.access")


def configure_logging(config: Config) -> None:
    """Point the error and access loggers at `config.errorlog` / `config.accesslog`.

    "-" means stderr (errors) or stdout (access), a path appends to that file,
    None turns the log off. Calling it again replaces what it set up before.
    """
    level = _level(config.loglevel)
    # Handlers sit on "edgecorn" so that module loggers ("edgecorn.manager"...) land
    # in the error log too; "edgecorn.access" keeps to its own handler.
    root = logging.getLogger("edgecorn")
    _install(root, _handler(config.errorlog, sys.stderr, ERROR_FORMAT), level)
    error_log.setLevel(level)
    access_log.propagate = False
    _install(access_log, _handler(config.accesslog, sys.stdout, "%(message)s"), logging.INFO)
    _user_config(config)


def _user_config(config: Config) -> None:
    """Hypercorn's `logconfig` ("json:FILE", "toml:FILE" or an ini FILE) or `logconfig_dict`,
    applied after our handlers, so what it configures wins. Loggers it does not name keep
    working (disable_existing_loggers defaults to False here, as Hypercorn's ini case)."""
    spec = config.logconfig
    if spec is None:
        if config.logconfig_dict is not None:
            _dict_config(config.logconfig_dict)
        return
    if spec.startswith(("json:", "toml:")):
        kind, path = spec[:4], spec[5:]
        with open(path, "rb") as file:
            data = json.load(file) if kind == "json" else tomllib.load(file)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a dictConfig mapping")
        _dict_config(data)
    else:
        if not os.path.exists(spec):  # fileConfig says only "KeyError: 'formatters'"
            raise FileNotFoundError(f"logconfig: no such file {spec!r}")
        defaults = {"__file__": spec, "here": os.path.dirname(spec)}
        logging.config.fileConfig(spec, defaults=defaults, disable_existing_loggers=False)


def _dict_config(data: dict[str, Any]) -> None:
    """dictConfig, with a Hypercorn file's `hypercorn.error` / `hypercorn.access` loggers
    also applied to ours (a file written for Hypercorn keeps working unchanged)."""
    loggers = dict(data.get("loggers") or {})
    for kind in ("error", "access"):
        theirs, ours = f"hypercorn.{kind}", f"edgecorn.{kind}"
        if theirs in loggers and ours not in loggers:
            loggers[ours] = loggers[theirs]
            print(
                f"edgecorn: note: logging: {theirs} also configures {ours} (the edgecorn "
                "name is preferred)",
                file=sys.stderr,
            )
    logging.config.dictConfig({"disable_existing_loggers": False, **data, "loggers": loggers})


def _level(value: str | int) -> int:
    if isinstance(value, int):
        return value
    level = logging.getLevelName(value.upper())
    if not isinstance(level, int):
        raise ValueError(f"unknown log level {value!r}")
    return level


def _handler(target: str | None, stream: Any, fmt: str) -> logging.Handler:
    handler: logging.Handler
    if target is None:
        handler = logging.NullHandler()
    elif target == "-":
        handler = logging.StreamHandler(stream)
    else:
        # Reopens the file when logrotate moves it away.
        handler = logging.handlers.WatchedFileHandler(target)
    handler.setFormatter(logging.Formatter(fmt, DATE_FORMAT))
    return handler


def _install(logger: logging.Logger, handler: logging.Handler, level: int) -> None:
    for old in [h for h in logger.handlers if getattr(h, "_edgecorn", False)]:
        logger.removeHandler(old)
        old.close()
    handler._edgecorn = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


class AccessLogger:
    def __init__(self, config: Config) -> None:
        self.format = config.access_log_format
        self.json = self.format == "json"
        self.enabled = config.accesslog is not None

    def log(
        self,
        scope: Mapping[str, Any],
        status: int,
        response_headers: Iterable[tuple[bytes, bytes]],
        sent_bytes: int,
        request_time: float,
        complete: bool = True,
    ) -> None:
        """One line per response; `complete` is False for one cut short (then `sent_bytes`
        is what was sent before the cut)."""
        if not self.enabled:
            return
        if self.json:
            access_log.info(
                json_line(scope, status, response_headers, sent_bytes, request_time, complete)
            )
            return
        atoms = Atoms(scope, status, response_headers, sent_bytes, request_time)
        try:
            line = self.format % atoms
        except (TypeError, ValueError, KeyError) as error:
            error_log.error("bad access_log_format %r: %s", self.format, error)
            return
        access_log.info(line)


def json_line(
    scope: Mapping[str, Any],
    status: int,
    response_headers: Iterable[tuple[bytes, bytes]],
    sent_bytes: int,
    request_time: float,
    complete: bool = True,
) -> str:
    """One JSON object, on one line, whatever the client sent.

    json.dumps escapes quotes, backslashes and control characters (a raw newline in a
    header can never start a new line), and bytes are decoded as UTF-8 with undecodable
    ones kept as `\\xNN` text, so the line is valid JSON and ASCII.
    """
    headers = scope.get("headers", ())
    client = scope.get("client")
    raw = scope.get("raw_path")
    query = bytes(scope.get("query_string", b""))
    path = _text(bytes(raw)) if raw else str(scope.get("path", "/"))
    record = {
        "time": datetime.datetime.now().astimezone().isoformat(timespec="milliseconds"),
        "client": str(client[0]) if client else None,
        "method": str(scope.get("method", "GET")),
        "path": path,
        "query": _text(query) if query else None,
        "protocol": f"HTTP/{scope.get('http_version', '1.1')}",
        "scheme": scope.get("scheme"),
        "host": _first(headers, b"host"),
        "status": status,
        "bytes": sent_bytes,
        "duration": round(request_time, 6),
        "referer": _first(headers, b"referer"),
        "user_agent": _first(headers, b"user-agent"),
        "content_type": _first(response_headers, b"content-type"),
        "complete": complete,
    }
    return json.dumps(record, separators=(",", ":"))


def _first(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return _text(bytes(value))
    return None


def _text(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


class Atoms(dict[str, str]):
    """The access log atoms, each computed the first time the format asks for it."""

    def __init__(
        self,
        scope: Mapping[str, Any],
        status: int,
        response_headers: Iterable[tuple[bytes, bytes]],
        sent_bytes: int,
        request_time: float,
    ) -> None:
        super().__init__()
        self.scope = scope
        self.status = status
        self.response_headers = response_headers
        self.sent_bytes = sent_bytes
        self.request_time = request_time

    def __missing__(self, key: str) -> str:
        value = self._atom(key)
        self[key] = value
        return value

    def _atom(self, key: str) -> str:
        scope = self.scope
        if key.startswith("{") and len(key) > 3 and key[-2] == "}":
            name, kind = key[1:-2], key[-1]
            if kind == "i":
                return _logged(scope.get("headers", ()), name)
            if kind == "o":
                return _logged(self.response_headers, name)
            if kind == "e":
                return os.environ.get(name, "-")
            return "-"
        if key == "h":  # as Hypercorn prints it: address and port
            client = scope.get("client")
            if not client:
                return "-"
            return f"{client[0]}:{client[1]}" if len(client) > 1 else str(client[0])
        if key == "l":
            return "-"
        if key == "u":
            return _user(_logged(scope.get("headers", ()), "authorization"))
        if key == "t":
            return time.strftime("[%d/%b/%Y:%H:%M:%S %z]")
        if key == "r":
            return f"{self['m']} {_target(scope)} {self['H']}"
        if key == "m":
            return str(scope.get("method", "GET"))  # websocket scopes have no method
        if key == "U":
            return str(scope.get("path", "-"))
        if key == "Uq":  # Hypercorn's: the decoded path with the query
            return f"{scope.get('path', '-')}{'?' + self['q'] if self['q'] else ''}"
        if key == "R":  # Hypercorn's request line with the query: "GET /a?b=1 1.1"
            return f"{self['m']} {self['Uq']} {scope.get('http_version', 'ws')}"
        if key == "q":
            return bytes(scope.get("query_string", b"")).decode("latin-1")
        if key == "H":
            return f"HTTP/{scope.get('http_version', '1.1')}"
        if key == "s":
            return str(self.status)
        if key == "st":
            try:
                return HTTPStatus(self.status).phrase
            except ValueError:
                return "-"
        if key == "S":
            return str(scope.get("scheme", "-"))
        if key == "b":
            return str(self.sent_bytes) if self.sent_bytes else "-"
        if key == "B":
            return str(self.sent_bytes)
        if key == "f":
            return _logged(scope.get("headers", ()), "referer")
        if key == "a":
            return _logged(scope.get("headers", ()), "user-agent")
        if key == "T":
            return str(int(self.request_time))
        if key == "M":
            return str(int(self.request_time * 1_000))
        if key == "D":
            return str(int(self.request_time * 1_000_000))
        if key == "L":
            return f"{self.request_time:.6f}"
        if key == "p":
            return f"<{os.getpid()}>"  # Gunicorn's spelling
        return "-"


def _target(scope: Mapping[str, Any]) -> str:
    raw = scope.get("raw_path")
    path = bytes(raw).decode("latin-1") if raw else str(scope.get("path", "/"))
    query = scope.get("query_string", b"")
    if query and b"?" not in (raw or b""):
        path += "?" + bytes(query).decode("latin-1")
    return path


def _logged(headers: Iterable[tuple[bytes, bytes]], name: str) -> str:
    """A header as the access log prints it: its values joined by ",", or "-"."""
    found = values(headers, name.lower().encode("latin-1"))
    return b",".join(found).decode("latin-1") if found else "-"


def _user(authorization: str) -> str:
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() != "basic":
        return "-"
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return "-"
    user = decoded.partition(":")[0]
    return user or "-"
