"""The README's "Hypercorn option -> edgecorn" table covers every Hypercorn 0.18 option and
agrees with edgecorn's option table. Hypercorn itself is not needed: its options are here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgecorn import cli
from edgecorn.config import _ALIASES, _HYPERCORN_ONLY, OPTIONS, Config, ConfigError

README = Path(__file__).resolve().parent.parent / "README.md"

# hypercorn/config.py (0.18.0): the Config class's options, properties included
# (bind, insecure_bind, quic_bind, root_path) and cert_reqs (a write-only property).
HYPERCORN_OPTIONS = frozenset(
    {
        "access_log_format",
        "accesslog",
        "alpn_protocols",
        "alt_svc_headers",
        "application_path",
        "backlog",
        "bind",
        "ca_certs",
        "cert_reqs",
        "certfile",
        "ciphers",
        "daemon",
        "debug",
        "dogstatsd_tags",
        "errorlog",
        "graceful_timeout",
        "group",
        "h11_max_incomplete_size",
        "h11_pass_raw_headers",
        "h2_max_concurrent_streams",
        "h2_max_header_list_size",
        "h2_max_inbound_frame_size",
        "include_date_header",
        "include_server_header",
        "insecure_bind",
        "keep_alive_max_requests",
        "keep_alive_timeout",
        "keyfile",
        "keyfile_password",
        "logconfig",
        "logconfig_dict",
        "logger_class",
        "loglevel",
        "max_app_queue_size",
        "max_requests",
        "max_requests_jitter",
        "pid_path",
        "quic_bind",
        "read_timeout",
        "root_path",
        "server_names",
        "shutdown_timeout",
        "ssl_handshake_timeout",
        "startup_timeout",
        "statsd_host",
        "statsd_prefix",
        "umask",
        "use_reloader",
        "user",
        "verify_flags",
        "verify_mode",
        "websocket_max_message_size",
        "websocket_ping_interval",
        "worker_class",
        "workers",
        "wsgi_max_body_size",
    }
)


def table() -> dict[str, tuple[list[str], str]]:
    """Hypercorn option -> (edgecorn options named in the second column, the note)."""
    text = README.read_text()
    start = text.index("### Hypercorn option -> edgecorn")
    section = text[start : text.index("\n### ", start + 1)]
    rows: dict[str, tuple[list[str], str]] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        match = re.fullmatch(r"`(\w+)`", cells[0]) if len(cells) == 3 else None
        if match:
            assert match.group(1) not in rows, f"{match.group(1)} is in the table twice"
            rows[match.group(1)] = (re.findall(r"`(\w+)`", cells[1]), cells[2])
    return rows


def test_every_hypercorn_option_is_in_the_table() -> None:
    rows = table()
    assert set(rows) - HYPERCORN_OPTIONS == set(), "rows for options Hypercorn does not have"
    assert HYPERCORN_OPTIONS - set(rows) == set(), "Hypercorn options missing from the README"


@pytest.mark.parametrize("name", sorted(HYPERCORN_OPTIONS))
def test_the_row_agrees_with_the_option_table(name: str) -> None:
    ours, note = table()[name]
    for option in ours:
        assert option in OPTIONS, f"{name}: the README names {option!r}, not an option"
    if not ours:  # "—": refused, with the message that says it is Hypercorn's
        assert note, f"{name}: a missing option needs a note saying what to use"
        assert name in _HYPERCORN_ONLY
        with pytest.raises(ConfigError, match="a Hypercorn option that edgecorn does not"):
            Config(**{name: None})
    elif ours == [name]:
        assert name in OPTIONS
    else:  # another name: Hypercorn's is mapped
        assert name in _ALIASES and name not in OPTIONS
        assert all(option in _ALIASES[name][0] for option in ours)


def test_every_option_of_ours_that_hypercorn_has_takes_its_flag_too() -> None:
    dests = {action.dest for action in cli.build_parser()._actions}
    for name in HYPERCORN_OPTIONS & set(OPTIONS):
        assert name in dests or name in cli.FILE_ONLY, name


def test_the_example_config_file_loads(tmp_path: Path) -> None:
    text = README.read_text()
    start = text.index("### A config file with the common keys")
    block = text[text.index("```yaml\n", start) + 8 : text.index("```\n", start + 1)]
    path = tmp_path / "edgecorn.yaml"
    path.write_text(block)
    config = Config.from_yaml(path)
    assert config.application_path == "myproject.asgi:app"
    assert config.bind == ["0.0.0.0:443", "[::]:443"] and config.workers == 2
    assert (config.user, config.group, config.lifespan) == ("nobody", "nogroup", "auto")
    assert config.server_names == ["example.com", "www.example.com"]
