"""Config keys as a Hypercorn user writes them: YAML 1.1 booleans for on/off choices,
Hypercorn names mapped with a note, and typos refused however they are set."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgecorn.config import Config, ConfigError


def test_yaml_on_off_read_as_booleans(tmp_path: Path) -> None:
    path = tmp_path / "edgecorn.yaml"
    path.write_text("lifespan: off\nquic_retry: on\n")
    config = Config.from_yaml(path)
    assert (config.lifespan, config.quic_retry) == ("off", "on")
    path.write_text("lifespan: on\nquic_retry: off\n")
    config = Config.from_yaml(path)
    assert (config.lifespan, config.quic_retry) == ("on", "off")
    path.write_text("lifespan: 'sometimes'\n")
    with pytest.raises(ConfigError, match=r":1: lifespan: expected one of 'auto', 'on', 'off'"):
        Config.from_yaml(path)


def test_use_reloader_is_mapped_to_reload(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "edgecorn.yaml"
    path.write_text("use_reloader: true\n")
    assert Config.from_yaml(path).reload is True
    assert capsys.readouterr().err == (
        "edgecorn: note: use_reloader is Hypercorn's name; "
        "mapped to reload (the edgecorn name is preferred)\n"
    )
    config = Config()
    config.use_reloader = True
    assert config.reload is True


def test_alt_svc_headers_are_mapped(capsys: pytest.CaptureFixture[str]) -> None:
    config = Config(alt_svc_headers=['h3=":443"; ma=3600'])
    assert (config.alt_svc, config.alt_svc_port, config.alt_svc_max_age) == (True, 443, 3600)
    assert "alt_svc_headers is Hypercorn's name" in capsys.readouterr().err
    assert Config(alt_svc_headers=[]).alt_svc_port is None
    assert Config(alt_svc_headers=["clear"]).alt_svc is False
    with pytest.raises(ConfigError, match=r"^alt_svc_headers: expected .*got 'h2=\"cdn"):
        Config(alt_svc_headers=['h2="cdn.example:443"'])


def test_attribute_typo_refused_like_the_constructor() -> None:
    with pytest.raises(ConfigError) as by_keyword:
        Config(keep_alive_timout=10)
    config = Config()
    with pytest.raises(ConfigError) as by_attribute:
        config.keep_alive_timout = 10
    assert (
        str(by_attribute.value)
        == str(by_keyword.value)
        == "keep_alive_timout: unknown option (did you mean 'keep_alive_timeout'?)"
    )
    assert not hasattr(config, "keep_alive_timout")
    config.keep_alive_timeout = 10  # the right name still works, validated
    assert config.keep_alive_timeout == 10.0
    config._private = 1  # underscore names are not options


@pytest.mark.parametrize(
    "bind, expected",
    [
        ("127.0.0.1", "127.0.0.1:8000"),
        ("localhost", "localhost:8000"),
        ("[::1]", "[::1]:8000"),
        ("0.0.0.0:9000", "0.0.0.0:9000"),
        ("unix:/run/edge.sock", "unix:/run/edge.sock"),
    ],
)
def test_bind_without_port_is_port_8000(bind: str, expected: str) -> None:
    assert Config(bind=[bind]).bind == [expected]
    assert Config(quic_bind=bind).quic_bind == [expected]


def test_hypercorn_keys_that_are_options_now(tmp_path: Path) -> None:
    import ssl

    path = tmp_path / "edgecorn.toml"
    path.write_text(
        'umask = 0o027\nuser = "nobody"\ngroup = 65534\ndebug = true\n'
        'logconfig = "json:logging.json"\nverify_flags = "VERIFY_X509_STRICT"\n'
        "[logconfig_dict]\nversion = 1\n"
    )
    config = Config.from_toml(path)
    assert (config.umask, config.user, config.group, config.debug) == (0o027, "nobody", 65534, True)
    assert config.logconfig == "json:logging.json"
    assert config.logconfig_dict == {"version": 1}
    assert config.verify_flags == ssl.VerifyFlags.VERIFY_X509_STRICT
    with pytest.raises(ConfigError, match=r"^umask: expected an integer from 0 to 511"):
        Config(umask=0o1000)
    with pytest.raises(ConfigError, match=r"^user: expected a numeric id >= 0, a name, or null"):
        Config(user=-1)


def test_cert_reqs_is_mapped_to_verify_mode(capsys: pytest.CaptureFixture[str]) -> None:
    import ssl

    assert Config(cert_reqs=ssl.CERT_REQUIRED).verify_mode == ssl.VerifyMode.CERT_REQUIRED
    assert "cert_reqs is Hypercorn's name; mapped to verify_mode" in capsys.readouterr().err


@pytest.mark.parametrize("key", ["daemon", "logger_class", "h11_pass_raw_headers"])
def test_hypercorn_keys_without_an_edgecorn_equivalent_say_so(key: str) -> None:
    with pytest.raises(ConfigError, match=r"a Hypercorn option that edgecorn does not support"):
        Config(**{key: "x"})


def test_bind_item_error_points_at_the_item_line(tmp_path: Path) -> None:
    path = tmp_path / "edgecorn.yaml"
    path.write_text("workers: 1\nbind:\n  - 127.0.0.1:8000\n  - 'localhost:http'\n")
    with pytest.raises(ConfigError) as info:
        Config.from_yaml(path)
    assert str(info.value).startswith(f"{path}:4: bind: expected ")
    assert "got 'localhost:http'" in str(info.value)


def test_toml_list_item_error_is_a_config_error(tmp_path: Path) -> None:
    """TOML has no per-item lines: the error keeps the option's line, never a TypeError."""
    path = tmp_path / "edgecorn.toml"
    path.write_text('workers = 1\nbind = ["127.0.0.1:1", "x:y"]\n')
    with pytest.raises(ConfigError, match=r":2: bind: expected .*got 'x:y'"):
        Config.from_toml(path)
