"""The `legacy:application` of the issue's example file: a WSGI app reporting its environ."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    report = json.dumps(
        {
            "app": "legacy",
            "method": environ["REQUEST_METHOD"],
            "script_name": environ.get("SCRIPT_NAME", ""),
            "path_info": environ.get("PATH_INFO", ""),
            "query": environ.get("QUERY_STRING", ""),
            "host": environ.get("HTTP_HOST", ""),
            "url_scheme": environ["wsgi.url_scheme"],
            "body_length": len(body),
            "thread": threading.current_thread().name,
            "main_thread": threading.current_thread() is threading.main_thread(),
        }
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(report)))]
    )
    return [report]
