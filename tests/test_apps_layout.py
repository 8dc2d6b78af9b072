"""Test apps live in one package, tests/apps/ (issue 8): a server subprocess loads an app
module there, never a test module (which would import pytest and every test helper)."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
# "tests.test_x:app" or "tests.support.y:app" as the app a server loads.
OUTSIDE_APPS = re.compile(r"""["']tests\.(test_\w+|support\.[\w.]+):\w+["']""")


def test_servers_load_apps_from_tests_apps_only() -> None:
    found = [
        f"{path.relative_to(TESTS)}:{number}: {line.strip()}"
        for path in sorted(TESTS.rglob("*.py"))
        if path.parent != TESTS / "apps" and path.name != "test_apps_layout.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if OUTSIDE_APPS.search(line)
    ]
    assert not found, "move these apps into tests/apps/:\n" + "\n".join(found)
