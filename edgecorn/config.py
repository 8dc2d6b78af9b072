"""The one Config object. CLI flags, files, env and the Python API all end here.

Option names and defaults follow Hypercorn where they overlap, so a Hypercorn
user can switch by changing the import.

Every value, whatever its source, passes through `validate()` (setting an
option attribute calls it too), so every error reads the same way: the key,
the bad value, what is allowed, and for files the file name and line.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import ipaddress
import math
import os
import re
import runpy
import ssl
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import yaml

from .certspec import CertificateSpec, check_certificates
from .edge.spec import ItemError, Route, check_routes

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SECONDS = 1.0

HTTP1_PARSERS = ("auto", "h11", "httptools")
LIFESPAN_MODES = ("auto", "on", "off")
WORKER_CLASSES = ("auto", "asyncio", "uvloop", "trio")  # auto: uvloop when installed
H2_ENGINES = ("auto", "h2", "jh2")  # auto: jh2 (compiled HPACK) when installed
QUIC_ENGINES = ("auto", "aioquic", "qh3")  # auto: qh3 when installed and able (quic/qh3_engine.py)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
ALPN_PROTOCOLS = ("h2", "http/1.1")
QUIC_RETRY_MODES = ("off", "on", "under_load")
QUIC_ALPN_PROTOCOLS = ("h3", "hq-interop")  # hq-interop: HTTP/0.9 for the QUIC interop runner
QUIC_CIPHERS = ("AES_128_GCM_SHA256", "AES_256_GCM_SHA384", "CHACHA20_POLY1305_SHA256")
BIND_SHAPES = "'host:port', '[ipv6]:port', 'unix:/path' or 'fd://N'"


class ConfigError(ValueError):
    """An invalid option: names the key, the value, what is allowed and where."""

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        source: str | None = None,
        line: int | None = None,
        item: tuple[Any, ...] | None = None,
    ) -> None:
        self.message, self.key, self.source, self.line = message, key, source, line
        self.item = item  # (index, field) inside a list option, for the file line
        where = "" if source is None else f"{source}:{line}: " if line else f"{source}: "
        super().__init__(f"{where}{'' if key is None else key + ': '}{message}")

    def at(
        self, *, key: str | None = None, source: str | None = None, line: int | None = None
    ) -> ConfigError:
        """The same error, located (key as the user wrote it, file, line)."""
        return ConfigError(
            self.message,
            key=key or self.key,
            source=source or self.source,
            line=line or self.line,
            item=self.item,
        )


class Config:
    # Listeners. `bind` is TLS when a certificate is configured, cleartext otherwise
    # (as in Hypercorn); `insecure_bind` is always cleartext.
    bind: list[str] = ["127.0.0.1:8000"]
    insecure_bind: list[str] = []
    redirect_https: list[str] = []  # cleartext listeners answering 308 to https (redirect.py)
    quic_bind: list[str] = []
    backlog: int = 100
    max_connections: int = 10000  # per worker; past it, TCP waits in the backlog, QUIC is refused

    # TLS
    certfile: str | None = None
    keyfile: str | None = None
    keyfile_password: str | None = None
    ca_certs: str | None = None
    verify_mode: ssl.VerifyMode | None = None
    verify_flags: ssl.VerifyFlags | None = None
    ciphers: str = "ECDHE+AESGCM"
    alpn_protocols: list[str] = ["h2", "http/1.1"]
    ssl_handshake_timeout: float = 60 * SECONDS
    ssl_keylog_file: str | None = None  # NSS key log (for Wireshark); never in production
    certificates: list[CertificateSpec] = []  # [{cert, key, names}]: by SNI, first = default

    # HTTP
    keep_alive_timeout: float = 5 * SECONDS
    keep_alive_max_requests: int = 1000
    read_timeout: float | None = None
    header_timeout: float = 10 * SECONDS  # a request head must arrive whole within it (408)
    body_timeout: float = 30 * SECONDS  # longest pause inside a request body (408 / reset)
    body_min_rate: int = 0  # bytes/s a request body must average after body_timeout (0: off)
    send_timeout: float = 60 * SECONDS  # h2: longest wait for the peer's window (reset)
    max_concurrent_requests: int = 10000  # per worker (all protocols); past it: 503
    graceful_timeout: float = 3 * SECONDS
    h11_max_incomplete_size: int = 16 * 1024
    http1_parser: str = "auto"  # auto | h11 | httptools
    http2_engine: str = "auto"  # auto | h2 | jh2
    h2_max_concurrent_streams: int = 100
    h2_max_header_list_size: int = 2**16
    h2_max_inbound_frame_size: int = 2**14
    include_server_header: bool = True
    include_date_header: bool = True
    server_names: list[str] = []
    root_path: str = ""
    max_app_queue_size: int = 10
    wsgi_max_body_size: int = 16 * 1024 * 1024
    alt_svc: bool = True  # advertise HTTP/3 on h1/h2 responses when a QUIC bind is up
    alt_svc_max_age: int = 86400
    alt_svc_port: int | None = None  # advertise this port (a NAT or balancer in front)
    alt_svc_persist: bool = False

    # QUIC / HTTP/3
    quic_on_tls_binds: bool = True  # also listen for QUIC on each TLS bind's port
    quic_retry: str = "under_load"  # off | on | under_load (Retry past the threshold)
    quic_retry_threshold: int = 100  # half-open connections before under_load retries
    # A hard cap on half-open connections, by count and by estimated memory: past either,
    # new Initials get Retry (with quic_retry off: are dropped), whatever the threshold.
    quic_max_handshakes: int = 1000  # half-open connections at most, per QUIC socket
    quic_handshake_memory: int = 64 * 1024 * 1024  # bytes half-open connections may hold
    quic_early_data: bool = False  # accept 0-RTT requests
    quic_early_data_unsafe: bool = False  # let non-idempotent methods through in 0-RTT
    quic_ticket_key_file: str | None = None  # shared keys: tickets resume on any host/worker
    quic_idle_timeout: float = 30 * SECONDS
    quic_max_datagram_size: int = 1350  # bytes of UDP payload we send (1200..1452)
    quic_engine: str = "auto"  # auto | aioquic | qh3
    h3_max_concurrent_streams: int = 100
    h3_max_header_list_size: int = 2**16
    qlog_dir: str | None = None
    quic_alpn_protocols: list[str] = ["h3"]  # in the server's order of preference
    quic_ciphers: list[str] = []  # TLS 1.3 suites offered over QUIC; empty: the engine's own
    websocket_max_message_size: int = 16 * 1024 * 1024
    websocket_ping_interval: float | None = None
    websocket_permessage_deflate: bool = True

    # Edge: routes (host/path -> app, WSGI app, static directory, upstream, answer, redirect)
    routes: list[Route] = []
    trusted_proxies: list[str] = []  # CIDRs whose X-Forwarded-*/Forwarded headers are believed
    proxy_protocol: bool = False  # TCP peers send a PROXY v1/v2 header first (trusted_proxies only)
    metrics: dict[str, str] | None = None  # {bind: "127.0.0.1:9100"}: Prometheus endpoint
    statsd_host: str | None = None  # HOST:PORT: StatsD lines over UDP, as Hypercorn sends them
    statsd_prefix: str = ""  # prepended to every StatsD metric name (a dot is added)
    dogstatsd_tags: str = ""  # DogStatsD tags appended to every line, e.g. env:prod,team:web
    quic_lb_server_id: str | None = None  # hex server ID (1-3 bytes) in QUIC-LB connection IDs
    quic_lb_config_id: int = 0  # QUIC-LB config rotation codepoint (0-6) of those IDs

    # App
    application_path: str | None = None
    factory: bool = False
    lifespan: str = "auto"  # auto | on | off
    startup_timeout: float = 60 * SECONDS
    shutdown_timeout: float = 60 * SECONDS

    # Logging
    access_log_format: str = '%(h)s %(l)s %(l)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
    accesslog: str | None = None
    errorlog: str | None = "-"
    loglevel: str = "INFO"
    logconfig: str | None = None  # "json:FILE", "toml:FILE" or an ini FILE (logging.config)
    logconfig_dict: dict[str, Any] | None = None  # a logging.config.dictConfig mapping
    debug: bool = False  # asyncio debug mode (slow callbacks, unawaited coroutines)

    # Processes
    workers: int = 1  # 0 = serve in the current process
    worker_class: str = "auto"  # auto (uvloop if installed, else asyncio) | asyncio | uvloop | trio
    pid_path: str | None = None
    max_requests: int | None = None
    max_requests_jitter: int = 0
    max_worker_rss: int | None = None  # MB; a bigger worker is replaced gracefully
    malloc_trim_interval: float = 10 * SECONDS  # s between glibc heap trims (0: off)
    umask: int | None = None  # the process umask, set before binding (unix sockets, files)
    user: int | str | None = None  # workers drop to this user after binding (and own unix socks)
    group: int | str | None = None  # ... and this group

    # Reload (development): restart the workers when a watched file changes
    reload: bool = False
    reload_dirs: list[str] = []  # [] = the current directory
    reload_includes: list[str] = ["*.py"]
    reload_excludes: list[str] = [
        ".*",
        "*.py[cod]",
        "__pycache__",
        "*~",
        "node_modules",
        "site-packages",
    ]
    reload_poll: bool = False  # poll instead of inotify (Docker bind mounts, NFS, ...)
    reload_delay: float = 0.25  # quiet time after a change before reloading

    def __init__(self, **values: Any) -> None:
        # Relative paths in a config file (certificates, static directories, app modules of
        # routes) are relative to that file; elsewhere to the working directory.
        object.__setattr__(self, "_base_dir", os.getcwd())
        for name in OPTIONS:  # own copies, so config.bind.append() never edits the defaults
            default = getattr(type(self), name)
            if isinstance(default, list):
                object.__setattr__(self, name, list(default))
        self._update(((key, value, None) for key, value in values.items()), None)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _ALIASES:  # a Hypercorn name for an edgecorn option: map it, say so
            for key, mapped in _alias(name, value).items():
                setattr(self, key, mapped)
            return
        if name not in _SPECS and name not in _PLAIN_ATTRS and not name.startswith("_"):
            raise ConfigError(_unknown(name), key=name)  # a typo, as in Config(typo=...)
        if name == "routes":
            value = _located(name, lambda v: check_routes(v, self.base_dir), value)
        elif name == "certificates":
            value = _located(name, lambda v: check_certificates(v, self.base_dir), value)
        elif name in _SPECS:
            value = validate(name, value)
            self.__dict__.get("_origins", {}).pop(name, None)  # a new value, from elsewhere
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.to_dict().items() if v != getattr(type(self), k)}
        return f"Config({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def origin(self, key: str) -> str | None:
        """The "file:line" that set this option, if a config file did."""
        origins: dict[str, str] = self.__dict__.get("_origins", {})
        return origins.get(key)

    @property
    def base_dir(self) -> str:
        """Where relative paths in the config file point (the working directory otherwise)."""
        value: str = self.__dict__["_base_dir"]
        return value

    @property
    def ssl_enabled(self) -> bool:
        return self.certfile is not None and self.keyfile is not None or bool(self.certificates)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in OPTIONS}

    # Loaders. All of them end in _update(), which ends in validate().

    def _update(
        self,
        entries: Iterable[tuple[Any, Any, int | None]],
        source: str | None,
        line_of: Callable[[Any], int | None] | None = None,
    ) -> None:
        seen: dict[str, str] = {}
        for raw, value, line in entries:
            if not isinstance(raw, str):
                raise ConfigError(
                    f"option names must be strings, got {raw!r}", source=source, line=line
                )
            key = raw.replace("-", "_")
            if key not in _SPECS and key not in _ALIASES:
                raise ConfigError(_unknown(raw), key=raw, source=source, line=line)
            if key in seen:
                raise ConfigError(
                    f"given twice (also as {seen[key]!r})", key=raw, source=source, line=line
                )
            seen[key] = raw
            try:
                setattr(self, key, value)
            except ConfigError as exc:
                item_line = line
                if exc.item is not None and line_of is not None:
                    item_line = line_of((key, *exc.item)) or line_of((key, exc.item[0])) or line
                shown = raw if exc.item is None or exc.key == key else exc.key
                raise exc.at(key=shown, source=source, line=item_line) from None
            if source is not None:  # for errors found later (a missing certificate file)
                self.__dict__.setdefault("_origins", {})[key] = (
                    f"{source}:{line}" if line else source
                )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None = None, **kwargs: Any) -> Config:
        config = cls()
        config._update(((k, v, None) for k, v in {**(mapping or {}), **kwargs}.items()), None)
        return config

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> Config:
        name, text = _read(path)
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            raise ConfigError(
                f"invalid YAML: {exc.problem or exc.context}",
                source=name,
                line=mark.line + 1 if mark else None,
            ) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"invalid YAML: {exc}", source=name) from None
        finally:
            loader.dispose()
        lines: dict[Any, int] = {}
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                if isinstance(key_node, yaml.ScalarNode) and key_node.value in lines:
                    raise ConfigError(
                        f"given twice (first on line {lines[key_node.value]})",
                        key=key_node.value,
                        source=name,
                        line=line,
                    )
                lines[key_node.value] = line
                _item_lines(key_node.value, value_node, lines)
        return cls._from_data(data, name, lines.get, base_dir=os.path.dirname(name))

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> Config:
        name, text = _read(path)
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            match = re.search(r"\s*\(at line (\d+), column \d+\)", str(exc))
            message = str(exc)[: match.start()] if match else str(exc)
            raise ConfigError(
                f"invalid TOML: {message}", source=name, line=int(match.group(1)) if match else None
            ) from None
        return cls._from_data(data, name, _line_finder(text), base_dir=os.path.dirname(name))

    @classmethod
    def from_pyfile(cls, path: str | os.PathLike[str]) -> Config:
        """Module-level lowercase names are options; prefix helpers with `_`."""
        name, text = _read(path)
        try:
            namespace = runpy.run_path(os.fspath(path), run_name="__edgecorn_config__")
        except Exception as exc:
            frames = [
                f
                for f in traceback.extract_tb(exc.__traceback__)
                if os.path.abspath(f.filename) == os.path.abspath(path)
            ]
            line = (
                exc.lineno
                if isinstance(exc, SyntaxError)
                else (frames[-1].lineno if frames else None)
            )
            raise ConfigError(
                f"running it raised {type(exc).__name__}: {exc}", source=name, line=line
            ) from None
        return cls._from_data(_public_names(namespace), name, _line_finder(text))

    @classmethod
    def from_object(cls, instance: object | str) -> Config:
        """A module, an object, or a dotted name of either (as in Hypercorn)."""
        if isinstance(instance, str):
            instance = _import_object(instance)
        if isinstance(instance, Config):
            return cls.from_mapping(instance.to_dict())
        names = {key: getattr(instance, key) for key in dir(instance)}
        return cls._from_data(_public_names(names), getattr(instance, "__file__", None))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Config:
        suffix = os.path.splitext(os.fspath(path))[1].lower()
        loader = {
            ".yaml": cls.from_yaml,
            ".yml": cls.from_yaml,
            ".toml": cls.from_toml,
            ".py": cls.from_pyfile,
        }.get(suffix)
        if loader is None:
            raise ConfigError(
                f"unsupported config file type {suffix or '(no suffix)'!r}; "
                "use .yaml, .yml, .toml or .py",
                source=os.fspath(path),
            )
        return loader(path)

    @classmethod
    def _from_data(
        cls,
        data: Any,
        source: str | None,
        line_of: Callable[[Any], int | None] = lambda _: None,
        base_dir: str | None = None,
    ) -> Config:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(
                "the top level must be a mapping of option names to values, "
                f"got {type(data).__name__}",
                source=source,
                line=1,
            )
        config = cls()
        if base_dir is not None:
            object.__setattr__(config, "_base_dir", os.path.abspath(base_dir or "."))
        config._update(((k, v, line_of(k)) for k, v in data.items()), source, line_of)
        for key in _FILE_RELATIVE:  # a relative path in a file means: next to the file
            value = getattr(config, key)
            if key in data and isinstance(value, str) and not os.path.isabs(value):
                object.__setattr__(config, key, os.path.join(config.base_dir, value))
        return config


# Validation. Each validator returns the normalised value or raises _Invalid.

Validator = Callable[[Any], Any]
_UNSET: Any = object()


class _Invalid(Exception):
    def __init__(
        self, expected: str, hint: str = "", got: Any = _UNSET, index: int | None = None
    ) -> None:
        super().__init__(expected)
        self.expected, self.hint, self.got = expected, hint, got
        self.index = index  # which item of a list value, so a file error names its line


def validate(key: str, value: Any) -> Any:
    """Check one option value; return it normalised or raise ConfigError."""
    spec = _SPECS.get(key)
    if spec is None:
        raise ConfigError(_unknown(key), key=key)
    try:
        return spec(value)
    except _Invalid as exc:
        got = value if exc.got is _UNSET else exc.got
        hint = f" ({exc.hint})" if exc.hint else ""
        item = None if exc.index is None else (exc.index,)
        raise ConfigError(
            f"expected {exc.expected}, got {_show(got)}{hint}", key=key, item=item
        ) from None


def _located(key: str, check: Callable[[Any], Any], value: Any) -> Any:
    """Run a list option's checker; its ItemError becomes a ConfigError for `key[i].field`."""
    try:
        return check(value)
    except ItemError as exc:
        if exc.index < 0:  # the option as a whole
            raise ConfigError(exc.message, key=key) from None
        name = f"{key}[{exc.index}]" + (f".{exc.field}" if exc.field else "")
        item = (exc.index,) if exc.field is None else (exc.index, exc.field)
        raise ConfigError(exc.message, key=name, item=item) from None


def _item_lines(key: Any, node: Any, lines: dict[Any, int]) -> None:
    """Lines of a sequence value's items, and of the keys of mapping items."""
    if not isinstance(node, yaml.SequenceNode):
        return
    for index, item in enumerate(node.value):
        lines[(key, index)] = item.start_mark.line + 1
        if isinstance(item, yaml.MappingNode):
            for field_node, _ in item.value:
                if isinstance(field_node, yaml.ScalarNode):
                    lines[(key, index, field_node.value)] = field_node.start_mark.line + 1


def _show(value: Any) -> str:
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    plain = value is None or type(value) in (str, int, float)
    return text if plain else f"{text} ({type(value).__name__})"


def _unquote_hint(value: Any) -> str:
    if isinstance(value, str):
        if value.strip().lower() in ("true", "false", "yes", "no", "on", "off"):
            return "that is a string; write true or false without quotes"
        try:
            float(value)
        except ValueError:
            return ""
        return "that is a string; write the number without quotes"
    return ""


def _unknown(key: str) -> str:
    if key.replace("-", "_") in _HYPERCORN_ONLY:
        return "unknown option (a Hypercorn option that edgecorn does not support)"
    match = difflib.get_close_matches(key.replace("-", "_"), _SPECS, n=1, cutoff=0.6)
    if not match:
        return "unknown option"
    suggestion = match[0].replace("_", "-") if "-" in key else match[0]
    return f"unknown option (did you mean {suggestion!r}?)"


def _int(minimum: int = 0, maximum: int | None = None, *, optional: bool = False) -> Validator:
    expected = (
        f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"
    )
    expected += " or null" if optional else ""

    def check(value: Any) -> Any:
        if value is None and optional:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < minimum
            or (maximum is not None and value > maximum)
        ):
            raise _Invalid(expected, _unquote_hint(value))
        return value

    return check


def _seconds(*, positive: bool = False, optional: bool = False) -> Validator:
    expected = f"a number of seconds {'> 0' if positive else '>= 0'}"
    expected += " or null" if optional else ""

    def check(value: Any) -> Any:
        if value is None and optional:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
            or (positive and value == 0)
        ):
            raise _Invalid(expected, _unquote_hint(value))
        return float(value)

    return check


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid("true or false", _unquote_hint(value))
    return value


def _str(*, optional: bool = False, path: bool = False) -> Validator:
    expected = ("a file path" if path else "a non-empty string") + (" or null" if optional else "")

    def check(value: Any) -> Any:
        if value is None and optional:
            return None
        if path and isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value:
            raise _Invalid(expected)
        return value

    return check


def _choice(choices: tuple[str, ...], *, upper: bool = False) -> Validator:
    expected = "one of " + ", ".join(repr(c) for c in choices)
    expected += " (any case)" if upper else ""

    def check(value: Any) -> Any:
        normal = (value.upper() if upper else value) if isinstance(value, str) else value
        if normal not in choices:
            raise _Invalid(expected)
        return normal

    return check


def _installed_choice(choices: tuple[str, ...]) -> Validator:
    """A choice of library: one named explicitly must be importable (`auto` always is)."""
    choice = _choice(choices)

    def check(value: Any) -> Any:
        from .protocol.engines import missing_engine

        value = choice(value)
        problem = missing_engine(value)
        if problem:
            raise _Invalid("an installed one of " + ", ".join(map(repr, choices)), problem)
        return value

    return check


def _on_off(check: Validator) -> Validator:
    """YAML 1.1 reads `on`/`off` as true/false: take the booleans for those choices."""

    def on_off(value: Any) -> Any:
        if isinstance(value, bool):
            value = "on" if value else "off"
        return check(value)

    return on_off


def _str_list(allowed: tuple[str, ...] | None = None) -> Validator:
    expected = (
        "a list of strings"
        if allowed is None
        else "a list of " + ", ".join(repr(a) for a in allowed)
    )

    def check(value: Any) -> Any:
        if not isinstance(value, (list, tuple)):
            raise _Invalid(expected)
        for item in value:
            if not isinstance(item, str) or not item or (allowed and item not in allowed):
                raise _Invalid(expected, got=item)
        return list(value)

    return check


_HOST = re.compile(r"[A-Za-z0-9._-]+")


def _bind_problem(bind: str) -> str:
    if bind.startswith("unix:"):
        return "" if bind[5:] else "the unix socket path is empty"
    if bind.startswith("fd://"):
        return "" if bind[5:].isdigit() else "N must be a file descriptor number"
    if bind.startswith("["):
        host, sep, rest = bind[1:].partition("]")
        if not sep or not host or not rest.startswith(":"):
            return "an IPv6 bind looks like '[::1]:8000'"
        port = rest[1:]
    else:
        host, sep, port = bind.rpartition(":")
        if not sep:
            return "the ':port' is missing"
        if ":" in host:
            return "put IPv6 addresses in brackets, e.g. '[::1]:8000'"
        if not host:
            return "the host is missing; use 0.0.0.0 or [::] for all interfaces"
        if not _HOST.fullmatch(host):
            return f"{host!r} is not a host name or address"
    if not port.isdigit() or int(port) > 65535:
        return f"the port must be a number from 0 to 65535, not {port!r}"
    return ""


def _binds(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise _Invalid(f"a list of {BIND_SHAPES}")
    binds = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise _Invalid(BIND_SHAPES, got=item, index=index)
        item = _default_port(item)
        problem = _bind_problem(item)
        if problem:
            raise _Invalid(BIND_SHAPES, problem, got=item, index=index)
        binds.append(item)
    return binds


def _default_port(bind: str) -> str:
    """A host without a port means port 8000, as in Hypercorn (`-b 127.0.0.1`, `-b [::1]`)."""
    if bind.startswith(("unix:", "fd://")):
        return bind
    if bind.startswith("["):
        return bind + ":8000" if bind.endswith("]") else bind
    return bind + ":8000" if bind and ":" not in bind and _HOST.fullmatch(bind) else bind


def _id_or_name(value: Any) -> int | str | None:
    if (
        value is None
        or (isinstance(value, str) and value)
        or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)
    ):
        return value
    raise _Invalid("a numeric id >= 0, a name, or null")


def _dict_or_none(value: Any) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    raise _Invalid("a logging.config.dictConfig mapping, or null")


def _verify_flags(value: Any) -> ssl.VerifyFlags | None:
    if value is None or isinstance(value, ssl.VerifyFlags):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return ssl.VerifyFlags(value)
    if isinstance(value, str):
        flags = ssl.VerifyFlags(0)
        for name in value.replace("|", ",").split(","):
            name = name.strip().upper()
            if name not in ssl.VerifyFlags.__members__:
                break
            flags |= ssl.VerifyFlags[name]
        else:
            return flags
    raise _Invalid("ssl.VerifyFlags, an int, or names such as 'VERIFY_X509_STRICT'")


def _root_path(value: Any) -> str:
    if not isinstance(value, str) or (value and not value.startswith("/")):
        raise _Invalid("a path starting with '/', or ''")
    return value.rstrip("/")


def _verify_mode(value: Any) -> ssl.VerifyMode | None:
    if value is None or isinstance(value, ssl.VerifyMode):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1, 2):
        return ssl.VerifyMode(value)
    if isinstance(value, str):
        name = value.upper()
        name = name if name.startswith("CERT_") else "CERT_" + name
        if name in ssl.VerifyMode.__members__:
            return ssl.VerifyMode[name]
    raise _Invalid("'CERT_NONE', 'CERT_OPTIONAL', 'CERT_REQUIRED' or an ssl.VerifyMode")


def _cidrs(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise _Invalid("a list of addresses or CIDR networks ('10.0.0.0/8', '::1')")
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except (TypeError, ValueError):
            raise _Invalid(
                "an address or CIDR network like '10.0.0.0/8' or '::1'", got=item
            ) from None
    return [str(item) for item in value]


def _metrics(value: Any) -> dict[str, str] | None:
    if isinstance(value, str):
        value = {"bind": value}
    if value is None or (isinstance(value, dict) and set(value) == {"bind"}):
        bind = None if value is None else value["bind"]
        if bind is None or (isinstance(bind, str) and bind.rpartition(":")[2].isdigit()):
            return value
    raise _Invalid("{bind: 'HOST:PORT'} (or 'HOST:PORT'), e.g. {bind: '127.0.0.1:9100'}")


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    raise _Invalid("a string (it may be empty)")


def _statsd_host(value: Any) -> str | None:
    if value is None or (
        isinstance(value, str)
        and value.rpartition(":")[2].isdigit()
        and value.rpartition(":")[0].strip("[]")
    ):
        return value
    raise _Invalid("'HOST:PORT' of a StatsD server, e.g. '127.0.0.1:8125'")


def _server_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if 1 <= len(raw) <= 3:
            return raw.hex()
    raise _Invalid("1 to 3 bytes in hex, e.g. '0a1b' (8-byte CIDs keep a 4-byte nonce)")


def _max_requests(value: Any) -> int | None:
    value = _int(0, optional=True)(value)
    return value or None  # 0 means "no limit", as in Gunicorn


def _import_object(dotted: str) -> object:
    """`a.module` or `a.module.attr`. An error inside the module shows as itself."""
    module_name, attr = dotted, ""
    for _ in range(2):  # the dotted name as a module, then its last part as an attribute
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if (
                not attr
                and missing
                and (module_name + ".").startswith(missing + ".")
                and "." in module_name
            ):
                module_name, _, attr = module_name.rpartition(".")
                continue
            if missing and (module_name + ".").startswith(missing + "."):
                raise ConfigError(
                    f"cannot import {dotted!r}: no module named {missing!r} "
                    f"(from {os.getcwd()} or sys.path)"
                ) from None
            raise ConfigError(
                f"importing {module_name!r} raised ModuleNotFoundError: {exc}"
            ) from None
        except Exception as exc:  # the config module itself is broken
            raise ConfigError(
                f"importing {module_name!r} raised {type(exc).__name__}: {exc}"
            ) from None
        if not attr:
            return module
        try:
            return getattr(module, attr)
        except AttributeError:
            raise ConfigError(
                f"cannot import {dotted!r}: module {module_name!r} has no attribute {attr!r}"
            ) from None
    raise AssertionError("unreachable")


def _public_names(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """Lowercase, non-underscore names that are not modules, classes or functions."""
    return {
        key: value
        for key, value in namespace.items()
        if key.islower()
        and not key.startswith("_")
        and not (inspect.ismodule(value) or inspect.isclass(value) or callable(value))
    }


def _read(path: str | os.PathLike[str]) -> tuple[str, str]:
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as file:
            return name, file.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise ConfigError(f"cannot read config file: {reason}", source=name) from None


def _line_finder(text: str) -> Callable[[str], int | None]:
    """The first line with `key = ...`, `[key]` (TOML) or `key: T = ...` (Python)."""

    def line_of(key: str) -> int | None:
        if not isinstance(key, str):  # a list item's (key, index): not found by this search
            return None
        name = rf"""["']?{re.escape(key)}["']?"""
        pattern = re.compile(rf"^\s*({name}\s*(:[^=]*)?=|\[\s*{name}\s*\])")
        for number, line in enumerate(text.splitlines(), 1):
            if pattern.match(line):
                return number
        return None

    return line_of


_FILE_RELATIVE = ("certfile", "keyfile", "ca_certs", "quic_ticket_key_file")

_HYPERCORN_ONLY = frozenset(
    {  # see the README's migration table for each one's replacement
        "daemon",
        "h11_pass_raw_headers",
        "logger_class",
    }
)
_PLAIN_ATTRS = frozenset({"base_dir"})  # attributes that are not options

_ALT_SVC = re.compile(r'h3(?:-\d+)?=":(\d+)"(?:\s*;\s*ma=(\d+))?(?:\s*;.*)?')


def _alt_svc_headers(value: Any) -> dict[str, Any]:
    """Hypercorn's literal Alt-Svc values, as our alt_svc / alt_svc_port / alt_svc_max_age."""
    expected = """a list of 'h3=":PORT"; ma=SECONDS' values (same port), or 'clear'"""
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise _Invalid(expected)
    if not value:
        return {}  # Hypercorn's default: advertise the QUIC binds, as we do
    if list(value) == ["clear"]:
        return {"alt_svc": False}
    found = [_ALT_SVC.fullmatch(v.strip()) for v in value]
    ports = {int(m.group(1)) for m in found if m}
    if not all(found) or len(ports) != 1:
        bad = [v for v, m in zip(value, found, strict=True) if not m]
        raise _Invalid(expected, got=bad[0] if bad else list(value))
    mapped: dict[str, Any] = {"alt_svc": True, "alt_svc_port": ports.pop()}
    ages = [int(m.group(2)) for m in found if m and m.group(2)]
    if ages:
        mapped["alt_svc_max_age"] = min(ages)
    return mapped


# Hypercorn's name -> (edgecorn's names, how to map the value).
_ALIASES: dict[str, tuple[str, Callable[[Any], dict[str, Any]]]] = {
    "use_reloader": ("reload", lambda value: {"reload": value}),
    "cert_reqs": ("verify_mode", lambda value: {"verify_mode": value}),
    "alt_svc_headers": ("alt_svc, alt_svc_port and alt_svc_max_age", _alt_svc_headers),
}


def _alias(name: str, value: Any) -> dict[str, Any]:
    preferred, mapper = _ALIASES[name]
    try:
        mapped = mapper(value)
    except _Invalid as exc:
        got = value if exc.got is _UNSET else exc.got
        raise ConfigError(f"expected {exc.expected}, got {_show(got)}", key=name) from None
    print(
        f"edgecorn: note: {name} is Hypercorn's name; mapped to {preferred} "
        "(the edgecorn name is preferred)",
        file=sys.stderr,
    )
    return mapped


_SPECS: dict[str, Validator] = {
    "bind": _binds,
    "insecure_bind": _binds,
    "quic_bind": _binds,
    "backlog": _int(0),
    "redirect_https": _binds,
    "certfile": _str(optional=True, path=True),
    "keyfile": _str(optional=True, path=True),
    "keyfile_password": _str(optional=True),
    "ca_certs": _str(optional=True, path=True),
    "verify_mode": _verify_mode,
    "ciphers": _str(),
    "alpn_protocols": _str_list(ALPN_PROTOCOLS),
    "ssl_handshake_timeout": _seconds(positive=True),
    "ssl_keylog_file": _str(optional=True, path=True),
    "keep_alive_timeout": _seconds(),
    "keep_alive_max_requests": _int(1),
    "read_timeout": _seconds(positive=True, optional=True),
    "graceful_timeout": _seconds(),
    "header_timeout": _seconds(positive=True),
    "body_timeout": _seconds(positive=True),
    "body_min_rate": _int(0),
    "send_timeout": _seconds(positive=True),
    "max_connections": _int(1),
    "max_concurrent_requests": _int(1),
    "h11_max_incomplete_size": _int(1),
    "http1_parser": _choice(HTTP1_PARSERS),
    "http2_engine": _installed_choice(H2_ENGINES),
    "h2_max_concurrent_streams": _int(1),
    "h2_max_header_list_size": _int(1),
    "h2_max_inbound_frame_size": _int(2**14, 2**24 - 1),
    "include_server_header": _bool,
    "include_date_header": _bool,
    "server_names": _str_list(),
    "root_path": _root_path,
    "max_app_queue_size": _int(1),
    "wsgi_max_body_size": _int(0),
    "alt_svc": _bool,
    "alt_svc_max_age": _int(0),
    "alt_svc_port": _int(1, 65535, optional=True),
    "alt_svc_persist": _bool,
    "quic_on_tls_binds": _bool,
    "quic_retry": _on_off(_choice(QUIC_RETRY_MODES)),
    "quic_retry_threshold": _int(0),
    "quic_max_handshakes": _int(1),
    "quic_handshake_memory": _int(1),
    "quic_early_data": _bool,
    "quic_early_data_unsafe": _bool,
    "quic_ticket_key_file": _str(optional=True, path=True),
    "quic_idle_timeout": _seconds(positive=True),
    "quic_max_datagram_size": _int(1200, 1452),
    "quic_engine": _installed_choice(QUIC_ENGINES),
    "h3_max_concurrent_streams": _int(1),
    "h3_max_header_list_size": _int(1),
    "qlog_dir": _str(optional=True, path=True),
    "quic_alpn_protocols": _str_list(QUIC_ALPN_PROTOCOLS),
    "quic_ciphers": _str_list(QUIC_CIPHERS),
    "websocket_max_message_size": _int(1),
    "websocket_ping_interval": _seconds(positive=True, optional=True),
    "websocket_permessage_deflate": _bool,
    "application_path": _str(optional=True),
    "factory": _bool,
    "lifespan": _on_off(_choice(LIFESPAN_MODES)),
    "startup_timeout": _seconds(),
    "shutdown_timeout": _seconds(),
    "access_log_format": _str(),
    "accesslog": _str(optional=True, path=True),
    "errorlog": _str(optional=True, path=True),
    "loglevel": _choice(LOG_LEVELS, upper=True),
    "workers": _int(0),
    "worker_class": _installed_choice(WORKER_CLASSES),
    "pid_path": _str(optional=True, path=True),
    "max_requests": _max_requests,
    "max_requests_jitter": _int(0),
    "max_worker_rss": _int(1, optional=True),
    "malloc_trim_interval": _seconds(),
    "umask": _int(0, 0o777, optional=True),
    "user": _id_or_name,
    "group": _id_or_name,
    "logconfig": _str(optional=True),
    "logconfig_dict": _dict_or_none,
    "debug": _bool,
    "verify_flags": _verify_flags,
    "reload": _bool,
    "reload_dirs": _str_list(),
    "reload_includes": _str_list(),
    "reload_excludes": _str_list(),
    "reload_poll": _bool,
    "reload_delay": _seconds(),
    "routes": lambda value: value,  # checked by edge.spec.check_routes in __setattr__
    "certificates": lambda value: value,  # checked by certificates.check_certificates too
    "trusted_proxies": _cidrs,
    "proxy_protocol": _bool,
    "metrics": _metrics,
    "statsd_host": _statsd_host,
    "statsd_prefix": _text,
    "dogstatsd_tags": _text,
    "quic_lb_server_id": _server_id,
    "quic_lb_config_id": _int(0, 6),
}
OPTIONS: tuple[str, ...] = tuple(_SPECS)
