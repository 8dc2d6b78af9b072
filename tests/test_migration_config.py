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
