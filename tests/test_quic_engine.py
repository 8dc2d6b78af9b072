"""The QUIC engine door: edgecorn/quic/engine.py is the only module that touches
aioquic's private internals, and it refuses to import when one is gone."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from aioquic.quic.connection import QuicConnection

from edgecorn.quic import engine

PACKAGE = Path(__file__).resolve().parent.parent / "edgecorn"
DOOR = PACKAGE / "quic" / "engine.py"
QH3_DOOR = DOOR.with_name("qh3_engine.py")

# Every private aioquic name edgecorn relies on (grep aioquic's sources for them).
PRIVATE = {
    "_host_cids",
    "_replenish_connection_ids",
    "_initialize",
    "_local_initial_source_connection_id",
    "_local_max_streams_bidi",
    "_max_early_data",
    "update_traffic_key_cb",
    "_streams",
    "_buffer_start",
    "_buffer_stop",
    "_local_control_stream_id",
    "_state",
}


def private_uses(path: Path) -> list[str]:
    """`x._name` attributes, `def _name` overrides and "_name" strings (getattr) in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        name = None
        if isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.FunctionDef):
            name = node.name
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            name = node.value
        if name in PRIVATE:
            found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {name}")
    return found


def test_only_the_engine_touches_aioquic_internals() -> None:
    uses = [
        use
        for path in sorted(PACKAGE.rglob("*.py"))
        if path not in (DOOR, QH3_DOOR)  # qh3's door: the same names, on qh3's classes
        for use in private_uses(path)
    ]
    assert not uses, "aioquic internals outside edgecorn/quic/engine.py:\n" + "\n".join(uses)


def test_the_engine_itself_is_seen_using_them() -> None:
    """The scan finds these names where they are: a scan that sees nothing proves nothing."""
    names = {use.rsplit(": ", 1)[1] for use in private_uses(DOOR)}
    assert names == PRIVATE


def test_every_hook_exists_in_the_installed_aioquic() -> None:
    assert engine.missing_hooks(engine.HOOKS) == []


def test_a_missing_hook_fails_the_import_with_one_line_naming_the_version() -> None:
    import aioquic

    hooks = engine.HOOKS + [(QuicConnection.__init__, "_renamed_in_a_future_release")]
    with pytest.raises(ImportError) as info:
        engine.check(hooks)
    message = str(info.value)
    assert "\n" not in message
    assert aioquic.__version__ in message
    assert "QuicConnection.__init__: _renamed_in_a_future_release" in message
