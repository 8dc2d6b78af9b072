"""The `certificates:` option as configured: validated entries, no files read.

Apart from `edgecorn.certificates` (which loads and reloads them) so that `Config` can
validate the option without importing the store, which itself takes a `Config`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from .edge.spec import ItemError

FIELDS = ("cert", "key", "names")


@dataclass(frozen=True)
class CertificateSpec:
    """One `certificates:` entry, as configured (paths absolute, names lower case)."""

    index: int
    cert: str
    key: str
    names: tuple[str, ...] = ()


def check_certificates(value: Any, base_dir: str) -> list[CertificateSpec]:
    """Validate `certificates:`; raises ItemError locating the bad entry or field."""
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ItemError("expected a list of {cert, key, names} mappings", -1)
    return [
        item if isinstance(item, CertificateSpec) else _spec(index, item, base_dir)
        for index, item in enumerate(value)
    ]


def _spec(index: int, item: Any, base_dir: str) -> CertificateSpec:
    if not isinstance(item, dict):
        raise ItemError(f"expected a mapping with cert, key and names, got {item!r}", index)
    for field in item:
        if field not in FIELDS:
            raise ItemError(f"unknown field; an entry takes {', '.join(FIELDS)}", index, str(field))
    paths = []
    for field in ("cert", "key"):
        path = item.get(field)
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if not isinstance(path, str) or not path:
            raise ItemError(f"expected a file path, got {path!r}", index, field)
        paths.append(os.path.join(base_dir, path))  # an absolute path stays as it is
    names = item.get("names", [])
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, (list, tuple)):
        raise ItemError(f"expected a list of host names, got {names!r}", index, "names")
    checked = []
    for name in names:
        problem = _name_problem(name)
        if problem:
            raise ItemError(f"{problem}, got {name!r}", index, "names")
        checked.append(name.lower().rstrip("."))
    return CertificateSpec(index, paths[0], paths[1], tuple(checked))


def _name_problem(name: Any) -> str:
    if not isinstance(name, str) or not name.strip("."):
        return "expected a host name like 'example.com' or '*.example.com'"
    bare = name[2:] if name.startswith("*.") else name
    if "*" in bare or "." not in bare and name != bare:
        return "a wildcard is '*.' in front of a domain with a dot, like '*.example.com'"
    labels = bare.rstrip(".").split(".")
    if not all(label.replace("-", "").replace("_", "").isalnum() for label in labels):
        return "expected a host name like 'example.com' or '*.example.com'"
    return ""
