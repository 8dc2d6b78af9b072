"""A module whose import fails inside itself, for tests/test_loader.py."""

import edgecorn_no_such_dependency  # noqa: F401
