"""`edgecorn check FILE`: validate a deployment's config without binding anything.

Loading a file stops at its first error; here every top-level key (and every route) is
checked on its own, so one run lists all the errors with their file lines. Then what only
shows at start-up is checked too: certificates load and match their keys and are not
expired, the routes' hosts are among the certificate's names, and the apps import. The
output is a short summary of what would be served, or the errors (exit status 1).
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from .certificates import check_files
from .config import Config, ConfigError
from .edge.spec import ItemError, Route, check_routes
from .env import apply_env
from .sockets import tcp_binds
from .tls import TLSFileError

EXPIRY_WARNING_DAYS = 30


@dataclass
class Report:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)


def check_command(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="edgecorn check",
        description="Validate a config file without binding anything: every error with its "
        "file line, certificates, route hosts, upstream URLs and apps. Exits 0 or 1.",
    )
    parser.add_argument("file", help="the .yaml, .toml or .py config file")
    args = parser.parse_args(argv)
    report = check_file(args.file)
    for line in report.summary:
        print(line)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for error in report.errors:
        print(f"error: {error}", file=sys.stderr)
    if report.errors:
        count = len(report.errors)
        print(f"{args.file}: {count} error{'s' if count > 1 else ''}", file=sys.stderr)
        return 1
    print(f"{args.file}: OK")
    return 0


def check_file(path: str, environ: dict[str, str] | None = None) -> Report:
    report = Report()
    config, errors, lines = _load(path)
    report.errors.extend(str(error) for error in errors)
    if config is None:
        return report
    try:
        applied = apply_env(config, environ)
    except ConfigError as exc:
        report.errors.append(str(exc))
        applied = []
    names, expires = _check_tls(config, report)
    _check_hosts(config, names, path, lines, report)
    _check_apps(config, path, lines, report)
    if not report.errors:
        report.summary = _summary(config, names, expires, applied)
    return report


# --------------------------------------------------------------------------- loading


Lines = dict[Any, int]


def _load(path: str) -> tuple[Config | None, list[ConfigError], Lines]:
    """The config, every error found, and the YAML lines of keys and list items."""
    parsed = _yaml_lines(path)
    try:
        return Config.from_file(path), [], parsed[1] if parsed else {}
    except ConfigError as exc:
        first = exc
    if parsed is None:  # not YAML, or not readable as YAML: the one error is all we know
        return None, [first], {}
    data, lines = parsed
    errors: list[ConfigError] = []
    good: dict[Any, Any] = {}
    for key, value in data.items():
        found = _key_errors(path, key, value, lines)
        errors.extend(found)
        if not found:
            good[key] = value
    if str(first) not in {str(error) for error in errors}:
        errors.append(first)  # e.g. a key given twice, which the parsed mapping hides
    errors.sort(key=lambda error: error.line or 0)
    try:
        config: Config | None = _from_data(path, good, lines)
    except ConfigError:
        config = None
    return config, errors, lines


def _key_errors(path: str, key: Any, value: Any, lines: Lines) -> list[ConfigError]:
    if key == "routes" and isinstance(value, list):
        found = []
        base_dir = os.path.abspath(os.path.dirname(path) or ".")
        for index, item in enumerate(value):  # each route on its own: all bad routes
            try:
                check_routes([item], base_dir)
            except ItemError as exc:
                name = f"routes[{index}]" + (f".{exc.field}" if exc.field else "")
                line = lines.get(("routes", index, exc.field)) or lines.get(("routes", index))
                found.append(ConfigError(exc.message, key=name, source=path, line=line))
        if found:
            return found
    try:
        _from_data(path, {key: value}, lines)
    except ConfigError as exc:
        return [exc]
    return []


def _from_data(path: str, data: dict[Any, Any], lines: Lines) -> Config:
    # The loader's own path (relative paths, file lines), one key or the good keys at a time.
    return Config._from_data(data, path, lines.get, base_dir=os.path.dirname(path))


def _yaml_lines(path: str) -> tuple[dict[Any, Any], Lines] | None:
    """The mapping and the lines of its keys, `(key, index)` items and `(key, index, field)`
    fields; None when the file is not YAML or not a readable mapping."""
    if os.path.splitext(path)[1].lower() not in (".yaml", ".yml"):
        return None
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(node, yaml.MappingNode) or not isinstance(data, dict):
        return None
    lines: Lines = {}
    for key_node, value_node in node.value:
        lines.setdefault(key_node.value, key_node.start_mark.line + 1)
        if isinstance(value_node, yaml.SequenceNode):
            for index, item in enumerate(value_node.value):
                lines[(key_node.value, index)] = item.start_mark.line + 1
                if isinstance(item, yaml.MappingNode):
                    for field_node, _ in item.value:
                        lines[(key_node.value, index, field_node.value)] = (
                            field_node.start_mark.line + 1
                        )
    return data, lines


# --------------------------------------------------------------------------- checks


def _where(config: Config, key: str) -> str:
    origin = config.origin(key)
    return f"{origin}: {key}" if origin else key


def _check_tls(config: Config, report: Report) -> tuple[list[str], str]:
    """Load the certificate and key as the server would; return its names and expiry."""
    if config.certificates:
        return _check_certificates(config, report), ""
    if config.certfile is None and config.keyfile is None:
        if config.quic_bind:
            report.errors.append(
                f"{_where(config, 'quic_bind')}: QUIC needs a certificate (certfile and keyfile)"
            )
        return [], ""
    if config.certfile is None or config.keyfile is None:
        missing = "certfile" if config.certfile is None else "keyfile"
        given = "keyfile" if missing == "certfile" else "certfile"
        report.errors.append(f"{_where(config, given)}: {given} is set but {missing} is not")
        return [], ""
    try:
        check_files(config)
    except TLSFileError as exc:
        if "KEY_VALUES_MISMATCH" in str(exc):
            report.errors.append(
                f"{_where(config, 'keyfile')}: the key {config.keyfile!r} "
                f"does not match the certificate {config.certfile!r}"
            )
        else:
            report.errors.append(f"{_where(config, exc.key)}: {exc}")
        return [], ""
    from cryptography import x509

    with open(config.certfile, "rb") as file:
        leaf = x509.load_pem_x509_certificates(file.read())[0]
    names = _names(leaf)
    expires = leaf.not_valid_after_utc
    days = (expires - datetime.datetime.now(datetime.timezone.utc)).days
    when = expires.strftime("%Y-%m-%d %H:%M UTC")
    if days < 0:
        report.errors.append(
            f"{_where(config, 'certfile')}: the certificate {config.certfile!r} expired on {when}"
        )
    elif days < EXPIRY_WARNING_DAYS:
        report.warnings.append(
            f"{_where(config, 'certfile')}: the certificate {config.certfile!r} expires on "
            f"{when}, in {days} days"
        )
    return names, when


def _check_certificates(config: Config, report: Report) -> list[str]:
    """Every `certificates:` entry on its own; the names of all that load."""
    from .certificates import inspect, uncovered

    if config.certfile is not None or config.keyfile is not None:
        report.errors.append(
            f"{_where(config, 'certificates')}: give either certificates or certfile/keyfile, "
            "not both (the first certificates entry is the default certificate)"
        )
    names: list[str] = []
    now = datetime.datetime.now(datetime.timezone.utc)
    for entry in inspect(config):
        where = f"{_where(config, 'certificates')}[{entry.spec.index}]"
        if entry.error is not None:
            report.errors.append(f"{where}: {entry.error}")
            continue
        names += [name for name in entry.san if name not in names]
        when = entry.expires.strftime("%Y-%m-%d %H:%M UTC")
        days = (entry.expires - now).days
        if days < 0:
            report.errors.append(f"{where}: {entry.spec.cert!r} expired on {when}")
        elif days < EXPIRY_WARNING_DAYS:
            report.warnings.append(
                f"{where}: {entry.spec.cert!r} expires on {when}, in {days} days"
            )
        for name in uncovered(entry):
            report.warnings.append(
                f"{where}.names: {name!r} is not among the certificate's names "
                f"({', '.join(entry.san) or 'none'}): clients asking for it will refuse it"
            )
    return names


def _names(cert: Any) -> list[str]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        # Clients ignore the CN when there is no SAN; show it, but it covers nothing.
        return []
    names = [str(name).lower() for name in san.get_values_for_type(x509.DNSName)]
    names += [str(address) for address in san.get_values_for_type(x509.IPAddress)]
    return names


def covered(host: str, names: Sequence[str]) -> bool:
    """Would a certificate with `names` be valid for requests to the route host `host`?"""
    try:
        return str(ipaddress.ip_address(host.strip("[]"))) in names
    except ValueError:
        pass
    if host.startswith("*."):  # every subdomain: only the same wildcard covers them
        return host in names
    for name in names:
        if name == host:
            return True
        if name.startswith("*.") and host.endswith(name[1:]) and "." not in host[: -len(name) + 1]:
            return True
    return False


def _check_hosts(config: Config, names: list[str], path: str, lines: Lines, report: Report) -> None:
    if not config.ssl_enabled or not names:
        return
    for route in config.routes:
        if route.host is None or covered(route.host, names):
            continue
        line = lines.get(("routes", route.index, "host")) or lines.get(("routes", route.index))
        where = f"{path}:{line}: " if line else ""
        message = (
            f"{where}routes[{route.index}].host: {route.host!r} is not among the "
            f"certificate's names ({', '.join(names)})"
        )
        # With a cleartext listener the route may be meant for http:// only.
        (report.warnings if config.insecure_bind else report.errors).append(message)


def _check_apps(config: Config, path: str, lines: Lines, report: Report) -> None:
    from .asgi.loader import AppLoadError, load_path

    for route in config.routes:
        if route.action not in ("app", "wsgi") or _builtin_demo(route):
            continue
        target = ("wsgi:" if route.action == "wsgi" else "") + route.target
        line = lines.get(("routes", route.index, route.action)) or lines.get(
            ("routes", route.index)
        )
        where = f"{path}:{line}: " if line else ""
        try:
            load_path(target, config, route.factory, route.base_dir)
        except AppLoadError as exc:
            report.errors.append(f"{where}routes[{route.index}].{route.action}: {exc}")
    if config.application_path is not None:
        try:
            load_path(config.application_path, config)
        except AppLoadError as exc:
            report.errors.append(f"{_where(config, 'application_path')}: {exc}")


def _builtin_demo(route: Route) -> bool:
    # As the router: `demo:app` is the built-in demo unless a demo module sits next to the file.
    return route.target in ("demo", "demo:app") and not any(
        os.path.exists(os.path.join(route.base_dir, name)) for name in ("demo.py", "demo")
    )


# --------------------------------------------------------------------------- summary


def listeners(config: Config) -> list[str]:
    """What the server would listen on, as `create_sockets` would bind it."""
    tls = config.ssl_enabled
    binds = tcp_binds(config)
    alpn = ", ".join(config.alpn_protocols)
    out = [
        f"{_url('https' if tls else 'http', b)}  TCP, "
        + (f"TLS ({alpn})" if tls else "cleartext (http/1.1, h2c)")
        for b in binds
    ]
    out += [f"{_url('http', b)}  TCP, cleartext (http/1.1, h2c)" for b in config.insecure_bind]
    quic = list(config.quic_bind)
    if tls and config.quic_on_tls_binds:
        quic += [b for b in binds if not b.startswith(("unix:", "fd://")) and b not in quic]
    out += [f"{_url('quic', b)}  UDP, QUIC (h3)" for b in quic] if tls else []
    return out


def _url(scheme: str, bind: str) -> str:
    if bind.startswith("unix:"):
        return f"{scheme}+unix://{bind[5:]}"
    if bind.startswith("fd://"):
        return f"{scheme}+{bind}"
    return f"{scheme}://{bind}"


def _summary(config: Config, names: list[str], expires: str, applied: list[str]) -> list[str]:
    lines = ["listeners:"] + [f"  {item}" for item in listeners(config)]
    routes = [route.describe() for route in config.routes]
    if config.application_path is not None:
        routes.append(f"* -> app {config.application_path}" + (" (last)" if routes else ""))
    if not routes:
        routes.append("* -> app demo:app (the built-in demo)")
    lines += ["routes:"] + [f"  {item}" for item in routes]
    if config.certificates:
        from .certificates import inspect

        lines.append("certificates (by SNI; the first is the default):")
        for entry in inspect(config):
            sni = ", ".join(entry.spec.names) or "(default)"
            expiry = "" if entry.expires is None else entry.expires.strftime(" (expires %Y-%m-%d)")
            lines.append(f"  {sni} -> {entry.spec.cert}{expiry}")
    elif config.ssl_enabled:
        lines += [
            "certificates:",
            f"  {config.certfile}: {', '.join(names) or '(no names)'} (expires {expires})",
        ]
    if applied:
        lines.append(
            "from the environment: " + ", ".join("EDGECORN_" + key.upper() for key in applied)
        )
    return lines
