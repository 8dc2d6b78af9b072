"""`quic_engine: auto | aioquic | qh3`: which engine a configuration gets, and why not qh3.

The HTTP/3 end-to-end suite itself runs on both engines (tests/conftest.py, QUIC_ENGINES).
"""

from __future__ import annotations

import pytest

from edgecorn.config import Config, ConfigError
from edgecorn.quic import qh3_engine
from edgecorn.quic.worker import choose_engine


def test_auto_keeps_aioquic_while_qh3_has_a_known_defect() -> None:
    import qh3

    engine, why = choose_engine(Config())
    if qh3.__version__ in qh3_engine.KNOWN_DEFECTS:
        assert engine == "aioquic" and "Initial" in why
    else:
        assert (engine, why) == ("qh3", "")
    assert choose_engine(Config(quic_engine="qh3")) == ("qh3", "")
    assert choose_engine(Config(quic_engine="aioquic")) == ("aioquic", "")


@pytest.mark.parametrize(
    "options, words",
    [
        ({"workers": 4}, "NEW_CONNECTION_ID"),
        ({"quic_lb_server_id": "0a0b"}, "QUIC-LB"),
        ({"h3_max_concurrent_streams": 10}, "h3_max_concurrent_streams"),
    ],
)
def test_what_qh3_cannot_do(options: dict[str, object], words: str) -> None:
    engine, why = choose_engine(Config(**options))  # auto: falls back, saying why
    assert engine == "aioquic" and "qh3 not used" in why and words in why
    with pytest.raises(ConfigError) as info:  # explicit: refused, naming the key
        choose_engine(Config(quic_engine="qh3", **options))
    assert info.value.key == "quic_engine" and words in str(info.value)


def test_events_reach_the_adapter_as_aioquic_classes() -> None:
    from aioquic.quic import events as theirs
    from qh3.quic import events as ours

    for qh3_class, aioquic_class in qh3_engine._QUIC_EVENTS.items():
        assert getattr(ours, qh3_class.__name__) is qh3_class
        assert getattr(theirs, qh3_class.__name__) is aioquic_class
    assert qh3_engine.missing_hooks(qh3_engine.HOOKS) == []
