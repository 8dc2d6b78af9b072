"""Options from the environment: `EDGECORN_<KEY>` for every option.

The layer sits between the file and the flags (flags > env > file > defaults). A
variable's text is turned into the option's type here, then the option's own validator
checks it, so errors read like every other config error but name the variable.
"""

from __future__ import annotations

import difflib
import os
import sys
from collections.abc import Mapping
from typing import Any

import yaml

from .config import OPTIONS, Config, ConfigError

PREFIX = "EDGECORN_"
TRUE, FALSE = ("true", "1"), ("false", "0")


def variable(key: str) -> str:
    """The environment variable of an option: bind -> EDGECORN_BIND."""
    return PREFIX + key.upper()


def apply_env(config: Config, environ: Mapping[str, str] | None = None) -> list[str]:
    """Set every option that has an `EDGECORN_<KEY>` variable; return the keys set.

    Raises ConfigError naming the variable. A variable that is not an option but looks
    like one (a typo) gets a warning on stderr; others are left alone, since apps may use
    the prefix for their own settings.
    """
    environ = os.environ if environ is None else environ
    names = {variable(key): key for key in OPTIONS}
    applied: list[str] = []
    for name in sorted(environ):
        if not name.startswith(PREFIX):
            continue
        key = names.get(name)
        if key is None:
            match = difflib.get_close_matches(name, names, n=1, cutoff=0.85)
            if match:
                print(
                    f"edgecorn: warning: {name} is not an option (did you mean "
                    f"{match[0]}?); ignored",
                    file=sys.stderr,
                )
            continue
        try:
            setattr(config, key, parse(key, environ[name]))
        except ConfigError as exc:  # name the variable (and the item, for list options)
            item = (exc.key or "")[len(key) :] if (exc.key or "").startswith(key + "[") else ""
            raise ConfigError(exc.message, key=name + item) from None
        applied.append(key)
    return applied


def parse(key: str, text: str) -> Any:
    """The text of a variable as a value of the option's type (then validated as usual)."""
    kind = str(Config.__annotations__.get(key, "str"))
    optional = kind.endswith("| None")
    base = kind.split("|")[0].strip()
    stripped = text.strip()
    if optional and stripped.lower() in ("", "null", "none"):
        return None
    if base == "list[str]":  # "a, b" -> ["a", "b"]; "" -> []
        return [item.strip() for item in text.split(",") if item.strip()]
    if base == "bool":
        if stripped.lower() in TRUE:
            return True
        if stripped.lower() in FALSE:
            return False
        raise ConfigError(f"expected true, false, 1 or 0, got {text!r}")
    if base == "int":
        try:
            return int(stripped)
        except ValueError:
            raise ConfigError(f"expected an integer, got {text!r}") from None
    if base == "float":
        try:
            return float(stripped)
        except ValueError:
            raise ConfigError(f"expected a number, got {text!r}") from None
    if base in ("str", "ssl.VerifyMode"):
        return text
    # Structured options (routes, ...) are YAML text, e.g. '[{path: /, respond: 200}]'.
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"expected YAML text for {key}: {exc}") from None
