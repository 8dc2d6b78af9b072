"""argv -> Config -> run. Flag names follow Hypercorn and Gunicorn where they overlap."""

from __future__ import annotations

import argparse
import inspect
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from edgecorn import __version__
from edgecorn.config import (
    H2_ENGINES,
    HTTP1_PARSERS,
    LIFESPAN_MODES,
    OPTIONS,
    QUIC_ENGINES,
    WORKER_CLASSES,
    Config,
    ConfigError,
)
from edgecorn.env import apply_env

EPILOG = """\
With no module:app, edgecorn serves its built-in demo app.
Precedence: flags > EDGECORN_<OPTION> environment variables > the --config file
> defaults (EDGECORN_BIND="a,b" for lists, true/false/1/0 for booleans).

other commands:
  edgecorn certs   generate (or reuse) the development CA and localhost certificate
  edgecorn check FILE   validate a config file without binding anything
"""


class _Deprecated(argparse.Action):
    """Stores like its replacement, but says so on stderr."""

    def __init__(
        self, option_strings: Sequence[str], dest: str, replacement: str, **kwargs: Any
    ) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.replacement = replacement

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        print(
            f"edgecorn: warning: {option_string} is deprecated; use {self.replacement}",
            file=sys.stderr,
        )
        setattr(namespace, self.dest, values)


class _AddToDefault(argparse.Action):
    """Repeatable; the values are added to the option's built-in default list."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        items = getattr(namespace, self.dest, None)
        items = list(getattr(Config, self.dest)) if items is None else items
        setattr(namespace, self.dest, [*items, values])


def build_parser() -> argparse.ArgumentParser:
    # SUPPRESS: a flag the user did not give leaves no attribute, so it overrides nothing.
    p = argparse.ArgumentParser(
        prog="edgecorn",
        usage="%(prog)s [options] [module:app]",
        epilog=EPILOG,
        description="An HTTP/3-first ASGI edge server.",
        argument_default=argparse.SUPPRESS,
        formatter_class=_HelpFormatter,
    )
    add = p.add_argument
    add(
        "application_path",
        nargs="?",
        metavar="module:app",
        help="the ASGI/WSGI app to serve, e.g. myproject.asgi:app",
    )
    add("--version", action="version", version=f"edgecorn {__version__}")
    add(
        "-c",
        "--config",
        metavar="FILE",
        help="a .yaml, .toml or .py config file; or python:module.path, or file:path.py",
    )

    listen = p.add_argument_group("listeners")
    listen.add_argument(
        "-b",
        "--bind",
        action="append",
        metavar="ADDR",
        help="host:port, [v6]:port, unix:/path or fd://N (repeatable); "
        "TLS when a certificate is given",
    )
    listen.add_argument(
        "--insecure-bind",
        action="append",
        metavar="ADDR",
        help="a cleartext bind beside TLS ones (repeatable)",
    )
    listen.add_argument(
        "--quic-bind", action="append", metavar="ADDR", help="a UDP bind for HTTP/3 (repeatable)"
    )
    listen.add_argument("--backlog", type=int, help="the listen backlog")
    listen.add_argument(
        "--no-quic-on-tls-binds",
        dest="quic_on_tls_binds",
        action="store_false",
        help="do not also listen for QUIC on each TLS bind's port",
    )

    quic = p.add_argument_group("QUIC / HTTP/3")
    quic.add_argument(
        "--quic-retry", choices=("off", "on", "under_load"), help="address validation with Retry"
    )
    quic.add_argument(
        "--quic-early-data",
        action="store_true",
        help="accept 0-RTT requests (idempotent methods; others get 425)",
    )
    quic.add_argument(
        "--alt-svc-max-age",
        type=int,
        metavar="SECONDS",
        help="how long clients may remember the Alt-Svc advertisement",
    )
    quic.add_argument(
        "--alt-svc-port",
        type=int,
        metavar="PORT",
        help="advertise this port in Alt-Svc (a NAT or balancer in front)",
    )
    quic.add_argument(
        "--no-alt-svc",
        dest="alt_svc",
        action="store_false",
        help="do not advertise HTTP/3 on h1/h2 responses",
    )
    quic.add_argument("--qlog-dir", metavar="DIR", help="write one qlog file per QUIC connection")

    tls = p.add_argument_group("TLS")
    tls.add_argument("--certfile", help="certificate file (PEM)")
    tls.add_argument("--keyfile", help="private key file (PEM)")
    tls.add_argument("--keyfile-password", help="password of the key file")
    tls.add_argument("--ca-certs", help="CA certificates to verify clients with")
    tls.add_argument("--verify-mode", help="CERT_NONE, CERT_OPTIONAL or CERT_REQUIRED")
    tls.add_argument(
        "--cert-reqs",
        dest="verify_mode",
        type=int,
        choices=(0, 1, 2),
        help="Hypercorn's numeric --verify-mode: 0 none, 1 optional, 2 required",
    )
    tls.add_argument("--ciphers", help="OpenSSL cipher string")

    http = p.add_argument_group("HTTP and app")
    http.add_argument(
        "--keep-alive",
        dest="keep_alive_timeout",
        type=float,
        metavar="SECONDS",
        help="idle time before a keep-alive connection is closed",
    )
    http.add_argument(
        "--graceful-timeout",
        type=float,
        metavar="SECONDS",
        help="time given to open requests on shutdown",
    )
    http.add_argument(
        "--read-timeout", type=float, metavar="SECONDS", help="time to wait for data from a client"
    )
    http.add_argument(
        "--websocket-ping-interval",
        type=float,
        metavar="SECONDS",
        help="ping WebSocket clients this often (none: never)",
    )
    http.add_argument("--root-path", help="the ASGI root_path (mount point)")
    http.add_argument(
        "--server-name",
        dest="server_names",
        action="append",
        metavar="HOST",
        help="only answer for this Host (repeatable)",
    )
    http.add_argument(
        "--http1-parser",
        choices=HTTP1_PARSERS,
        help="HTTP/1.1 parser (auto: httptools when installed, else h11)",
    )
    http.add_argument(
        "--http2-engine",
        choices=H2_ENGINES,
        help="the HTTP/2 library (auto: jh2 when installed, else h2)",
    )
    http.add_argument(
        "--quic-engine",
        choices=QUIC_ENGINES,
        help="the QUIC library (auto: qh3 when installed and able, else aioquic)",
    )
    http.add_argument(
        "--lifespan",
        choices=LIFESPAN_MODES,
        help="ASGI lifespan events (auto: used when the app supports them)",
    )
    http.add_argument(
        "--factory", action="store_true", help="module:app is a factory to call for the app"
    )

    procs = p.add_argument_group("processes")
    procs.add_argument("-w", "--workers", type=int, help="worker processes (0: no supervisor)")
    procs.add_argument(
        "-k",
        "--worker-class",
        choices=WORKER_CLASSES,
        help="event loop (auto: uvloop when installed, else asyncio)",
    )
    procs.add_argument("-p", "--pid", dest="pid_path", metavar="FILE", help="write the PID here")
    procs.add_argument(
        "-m",
        "--umask",
        type=_umask,
        metavar="MASK",
        help="the process umask, octal (e.g. 027); set before binding",
    )
    procs.add_argument(
        "-u",
        "--user",
        type=_id_or_name,
        metavar="USER",
        help="after binding, workers run as this user (name or uid); it also owns unix sockets",
    )
    procs.add_argument(
        "-g",
        "--group",
        type=_id_or_name,
        metavar="GROUP",
        help="after binding, workers run as this group (name or gid)",
    )
    procs.add_argument(
        "--debug",
        action="store_true",
        help="asyncio debug mode: slow callbacks, never-awaited coroutines",
    )
    procs.add_argument("--max-requests", type=int, help="restart a worker after N requests")
    procs.add_argument(
        "--max-requests-jitter", type=int, help="add up to this many to --max-requests, per worker"
    )

    dev = p.add_argument_group("reload (development)")
    dev.add_argument(
        "--reload", action="store_true", help="restart the workers when a watched file changes"
    )
    dev.add_argument(
        "--reload-dir",
        dest="reload_dirs",
        action="append",
        metavar="DIR",
        help="a directory to watch (repeatable; default: the current one)",
    )
    dev.add_argument(
        "--reload-include",
        dest="reload_includes",
        action=_AddToDefault,
        metavar="GLOB",
        help="also watch files matching GLOB (repeatable; added to the default *.py)",
    )
    dev.add_argument(
        "--reload-exclude",
        dest="reload_excludes",
        action=_AddToDefault,
        metavar="GLOB",
        help="also ignore files matching GLOB (repeatable; "
        "added to the defaults: .*, *.py[cod], __pycache__, ...)",
    )
    dev.add_argument(
        "--reload-poll",
        action="store_true",
        help="poll for changes: for Docker bind mounts and network file systems",
    )

    logs = p.add_argument_group("logging")
    logs.add_argument("--access-logfile", dest="accesslog", metavar="FILE", help="'-' = stdout")
    logs.add_argument(
        "--access-log",
        dest="accesslog",
        action=_Deprecated,
        replacement="--access-logfile",
        help=argparse.SUPPRESS,
    )
    logs.add_argument(
        "--error-logfile",
        "--log-file",
        dest="errorlog",
        metavar="FILE",
        help="the error log; '-' = stderr",
    )
    logs.add_argument(
        "--log-config",
        dest="logconfig",
        metavar="SPEC",
        help="logging.config file: json:FILE, toml:FILE or an ini FILE",
    )
    logs.add_argument(
        "--error-log",
        dest="errorlog",
        action=_Deprecated,
        replacement="--error-logfile",
        help=argparse.SUPPRESS,
    )
    logs.add_argument(
        "--access-logformat",
        dest="access_log_format",
        metavar="FORMAT",
        help="access log line, with Gunicorn/Hypercorn atoms such as %%(h)s",
    )
    logs.add_argument(
        "--log-level",
        dest="loglevel",
        metavar="LEVEL",
        help="debug, info, warning, error or critical",
    )
    _add_remaining_options(p)
    return p


# Options that only a config file can hold (structured values).
FILE_ONLY = frozenset({"routes", "logconfig_dict", "certificates"})


def _add_remaining_options(p: argparse.ArgumentParser) -> None:
    """A flag for every Config option that has no hand-written one: --key-name."""
    taken = {action.dest for action in p._actions}
    group = p.add_argument_group("other options (each is also a config file key)")
    notes = _option_comments()
    for name in OPTIONS:
        if name in taken or name in FILE_ONLY:
            continue
        kind = str(Config.__annotations__.get(name, "str")).replace(" | None", "")
        flag = "--" + name.replace("_", "-")
        text = notes.get(name, f"config key {name}")
        if kind == "bool":
            group.add_argument(flag, action=argparse.BooleanOptionalAction, help=text)
        elif kind in ("int", "float"):
            group.add_argument(flag, type=int if kind == "int" else float, metavar="N", help=text)
        elif kind.startswith("list["):
            group.add_argument(
                flag, dest=name, action="append", metavar="VALUE", help=f"{text} (repeatable)"
            )
        else:
            group.add_argument(flag, metavar="VALUE", help=text)


def _option_comments() -> dict[str, str]:
    """The comment beside each option in the Config class: the one place that explains it."""
    pattern = re.compile(r"^    (\w+): [^=]+=[^#]*#\s*(.+)$")
    found = (pattern.match(line) for line in inspect.getsource(Config).splitlines())
    return {m.group(1): m.group(2).replace("%", "%%") for m in found if m}


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Every option's help ends with its default, so --help is the reference."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.dest in OPTIONS and action.option_strings and "(default" not in text:
            text += f" (default: {_default_text(action)})"
        return text


def _default_text(action: argparse.Action) -> str:
    value = getattr(Config, action.dest)
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        return "on" if value else "off"
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None or value == []:
        return "none"
    if isinstance(value, list):
        value = ", ".join(map(str, value))
    return str(value).replace("%", "%%")  # argparse %-formats help texts


def _umask(text: str) -> int:
    """Octal as Gunicorn/Hypercorn users write it: 027, 0o027 or 0x17."""
    return int(text, 8) if text.isdigit() else int(text, 0)


def _id_or_name(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def load_config_file(spec: str) -> Config:
    """A config file path, or Hypercorn's `python:module.path` / `file:path.py`."""
    if spec.startswith("python:"):
        # As for the app: the working directory is importable (Hypercorn's CLI has it
        # through `python -m`; our console script must add it).
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        return Config.from_object(spec[len("python:") :])
    if spec.startswith("file:"):
        return Config.from_pyfile(spec[len("file:") :])
    return Config.from_file(spec)


def parse_args(argv: Sequence[str] | None = None) -> Config:
    """Build the Config from argv. Raises ConfigError; exits on argparse errors."""
    parser = build_parser()
    given = vars(parser.parse_args(argv))
    spec = given.pop("config", None)
    config = load_config_file(spec) if spec is not None else Config()
    apply_env(config)  # flags > env > file > defaults
    labels: dict[str, str] = {}
    for action in parser._actions:
        if action.option_strings:
            labels.setdefault(action.dest, max(action.option_strings, key=len))
    for key, value in given.items():
        assert key in OPTIONS, key
        try:
            setattr(config, key, value)
        except ConfigError as exc:
            raise exc.at(key=labels.get(key, key)) from None
    return config


def certs_command(argv: Sequence[str]) -> int:
    argparse.ArgumentParser(
        prog="edgecorn certs",
        description="Generate (or reuse) the development CA and localhost certificate.",
    ).parse_args(argv)
    from edgecorn.certs import ensure_dev_certs

    certfile, keyfile, cafile = ensure_dev_certs()
    print(f"certificate: {certfile}\nkey:         {keyfile}\nCA:          {cafile}")
    print(
        "Trust the CA in your client (e.g. curl --cacert), then run:\n"
        f"  edgecorn --certfile {certfile} --keyfile {keyfile} "
        "--bind 127.0.0.1:8443 --quic-bind 127.0.0.1:8443 module:app"
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args[:1] == ["certs"]:  # an app module named certs: use `certs:app`
            return certs_command(args[1:])
        if args[:1] == ["check"]:  # likewise: an app module named check is `check:app`
            from edgecorn.check import check_command

            return check_command(args[1:])
        config = parse_args(args)
    except ConfigError as exc:
        print(f"edgecorn: error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
        return 2
    from edgecorn.run import run

    # SIGHUP re-reads the same flags and files.
    status: int = run(config, reload_config=lambda: parse_args(args))
    return status
