"""`static: DIR`: files from a directory, as a production edge serves them.

GET/HEAD; Content-Type from the name; ETag and Last-Modified with If-None-Match /
If-Modified-Since (304) and If-Range; one byte range (206, 416); index.html for directories,
a listing only when asked; precompressed `.br`/`.gz` siblings when the client accepts them.
Nothing outside the root: `..` (also percent-encoded, decoded before we see it), hidden
names and symlinks leading out of the root all answer 404. Files are streamed in chunks.
"""

from __future__ import annotations

import functools
import html
import mimetypes
import os
import stat
from email.utils import formatdate, parsedate_to_datetime
from urllib.parse import quote

from ..asgi.types import Receive, Scope, Send
from .answers import plain, refuse_websocket
from .spec import Route

CHUNK = 256 * 1024
ENCODINGS = ((b"br", ".br"), (b"gzip", ".gz"))
Headers = list[tuple[bytes, bytes]]


class StaticFiles:
    def __init__(self, route: Route) -> None:
        self.root = route.target  # a real path, checked to exist when the config was read
        self.prefix = route.prefix
        self.listing = route.listing
        self.index = route.index_file
        self.cache_control = route.cache_control.encode() if route.cache_control else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await refuse_websocket(scope, send, 404)
            return
        method = scope["method"]
        head = method == "HEAD"
        if method not in ("GET", "HEAD"):
            await plain(send, 405, headers=[(b"allow", b"GET, HEAD")])
            return
        path = scope["path"][len(self.prefix) :]
        found = self.lookup(path)
        if found is None:
            await plain(send, 404, head=head)
            return
        full, info = found
        if stat.S_ISDIR(info.st_mode):
            if not path.endswith("/"):
                location = quote(scope["path"]) + "/"
                if scope.get("query_string"):
                    location += "?" + scope["query_string"].decode("latin-1")
                await plain(send, 308, headers=[(b"location", location.encode())], head=head)
                return
            index = os.path.join(full, self.index)
            try:
                index_info = os.stat(index)
            except OSError:
                index_info = None
            if index_info is not None and stat.S_ISREG(index_info.st_mode):
                full, info = index, index_info
            elif self.listing:
                await self.list_directory(scope, send, full, head)
                return
            else:
                await plain(send, 404, head=head)
                return
        if not stat.S_ISREG(info.st_mode):
            await plain(send, 404, head=head)
            return
        await self.send_file(scope, send, full, info, head)

    def lookup(self, path: str) -> tuple[str, os.stat_result] | None:
        parts = [part for part in path.split("/") if part]
        for part in parts:
            # `..`, `.`, hidden files (.env, .git) and anything a file system could
            # read as a separator never reach the disk.
            if part.startswith(".") or "\\" in part or "\x00" in part:
                return None
        # Walk down from the (already real) root with one lstat per component, instead of
        # realpath's lstat of every component from /; a symlink is resolved and must stay
        # inside the root.
        current = self.root
        info: os.stat_result | None = None
        try:
            for part in parts:
                current = current + os.sep + part
                info = os.lstat(current)
                if stat.S_ISLNK(info.st_mode):
                    current = os.path.realpath(current)
                    if current != self.root and not current.startswith(self.root + os.sep):
                        return None  # a symlink leading out of the root
                    info = os.stat(current)
            return current, info if info is not None else os.stat(current)
        except (OSError, ValueError):
            return None

    async def send_file(
        self, scope: Scope, send: Send, full: str, info: os.stat_result, head: bool
    ) -> None:
        request = dict(scope["headers"])  # last value wins; fine for these fields
        headers: Headers = []
        headers.append((b"content-type", content_type(os.path.splitext(full)[1])))
        encoding, full, info = self._precompressed(request.get(b"accept-encoding", b""), full, info)
        if encoding is not None:
            headers.append((b"content-encoding", encoding))
        headers.append((b"vary", b"accept-encoding"))
        etag = b'"%x-%x%s"' % (
            info.st_mtime_ns,
            info.st_size,
            b"" if encoding is None else b"-" + encoding,
        )
        last_modified = http_date(int(info.st_mtime))
        headers += [
            (b"etag", etag),
            (b"last-modified", last_modified),
            (b"accept-ranges", b"bytes"),
        ]
        if self.cache_control is not None:
            headers.append((b"cache-control", self.cache_control))
        if _not_modified(request, etag, info.st_mtime):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        size = info.st_size
        start, end, status = 0, size, 200
        wanted = request.get(b"range")
        if wanted is not None and _if_range_holds(request.get(b"if-range"), etag, info.st_mtime):
            span = parse_range(wanted, size)
            if isinstance(span, str):  # unsatisfiable
                headers.append((b"content-range", b"bytes */%d" % size))
                await plain(send, 416, headers=headers[-1:], head=head)
                return
            if span is not None:
                start, end = span
                status = 206
                headers.append((b"content-range", b"bytes %d-%d/%d" % (start, end - 1, size)))
        headers.append((b"content-length", b"%d" % (end - start)))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if head or end == start:
            await send({"type": "http.response.body", "body": b""})
            return
        with open(full, "rb") as file:
            file.seek(start)
            left = end - start
            while left > 0:
                chunk = file.read(min(CHUNK, left))
                if not chunk:  # the file shrank under us: end short, the client sees it
                    raise RuntimeError(f"{full} shrank while being sent")
                left -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})

    def _precompressed(
        self, accepted: bytes, full: str, info: os.stat_result
    ) -> tuple[bytes | None, str, os.stat_result]:
        if not accepted:
            return None, full, info
        tokens = {part.split(b";")[0].strip(): part for part in accepted.lower().split(b",")}
        for encoding, suffix in ENCODINGS:
            token = tokens.get(encoding)
            if token is None or token.replace(b" ", b"").endswith(b"q=0"):
                continue
            try:
                sibling = os.stat(full + suffix)
            except OSError:
                continue
            if stat.S_ISREG(sibling.st_mode):
                return encoding, full + suffix, sibling
        return None, full, info

    async def list_directory(self, scope: Scope, send: Send, full: str, head: bool) -> None:
        names = []
        for entry in sorted(os.scandir(full), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            name = entry.name + ("/" if entry.is_dir() else "")
            names.append(f'<li><a href="{quote(name)}">{html.escape(name)}</a></li>')
        title = html.escape(scope["path"])
        body = (
            f"<!doctype html><title>Index of {title}</title><h1>Index of {title}</h1>"
            f"<ul>{''.join(names)}</ul>\n"
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"content-length", b"%d" % len(body)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if head else body})


@functools.lru_cache(maxsize=512)
def content_type(suffix: str) -> bytes:
    """By file name suffix, cached (mimetypes walks its tables on every call)."""
    guessed, _ = mimetypes.guess_type("x" + suffix)
    guessed = guessed or "application/octet-stream"
    if guessed.startswith("text/") or guessed in (
        "application/javascript",
        "application/json",
        "image/svg+xml",
    ):
        guessed += "; charset=utf-8"
    return guessed.encode()


@functools.lru_cache(maxsize=1024)
def http_date(seconds: int) -> bytes:
    return formatdate(seconds, usegmt=True).encode()


def _not_modified(request: dict[bytes, bytes], etag: bytes, mtime: float) -> bool:
    match = request.get(b"if-none-match")
    if match is not None:  # RFC 9110 13.1.2: weak comparison, and If-Modified-Since ignored
        tags = [tag.strip().removeprefix(b"W/") for tag in match.split(b",")]
        return b"*" in tags or etag in tags
    since = request.get(b"if-modified-since")
    if since is not None:
        try:
            return int(mtime) <= parsedate_to_datetime(since.decode("latin-1")).timestamp()
        except (TypeError, ValueError, IndexError):
            return False
    return False


def _if_range_holds(value: bytes | None, etag: bytes, mtime: float) -> bool:
    if value is None:
        return True
    if value.startswith(b'"'):
        return value == etag
    try:
        return int(mtime) <= parsedate_to_datetime(value.decode("latin-1")).timestamp()
    except (TypeError, ValueError, IndexError):
        return False


def parse_range(value: bytes, size: int) -> tuple[int, int] | str | None:
    """One `bytes=` range as (start, end-exclusive); "unsatisfiable"; None to send it all
    (several ranges, or a header we do not understand, which RFC 9110 lets us ignore)."""
    unit, _, spec = value.decode("latin-1").partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first:  # the last N bytes
            length = int(last)
            if length <= 0:
                return "unsatisfiable"
            return max(0, size - length), size
        start = int(first)
        end = size if not last else min(size, int(last) + 1)
    except ValueError:
        return None
    if start < 0 or (last and int(last) < start):
        return None
    if start >= size:
        return "unsatisfiable"
    return start, end
