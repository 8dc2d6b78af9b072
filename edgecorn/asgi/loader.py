"""Load the application named on the command line and make it an ASGI3 app.

`module:attr` as in Hypercorn: `attr` may be dotted (`a.b.c`), `module` alone
means `module:app`, a `wsgi:` (or `asgi:`) prefix forces the interface, and
`config.factory` (or a trailing `()`) calls the attribute to get the app.
WSGI apps come back wrapped in `WSGIAdapter`; ASGI2 apps are refused with a
hint, because guessing wrong there fails only on the first request.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from edgecorn.asgi.types import ASGIApp
from edgecorn.config import Config


class AppLoadError(Exception):
    """The app could not be loaded; the message is one line for `edgecorn: error: <msg>`."""


def load_app(config: Config) -> ASGIApp:
    """Import `config.application_path` (None means the built-in demo app)."""
    path = config.application_path
    if config.routes:
        from edgecorn.edge.router import build_router

        last = None if path is None else load_path(path, config)
        return build_router(config, last, load_path)
    if path is None:
        from edgecorn import demo

        return demo.app
    return load_path(path, config)


def load_path(
    path: str, config: Config, factory: bool | None = None, directory: str | None = None
) -> ASGIApp:
    """Import `module:attr` (`directory` first on the import path) as an ASGI3 app."""
    mode: str | None = None
    spec = path
    for prefix in ("wsgi:", "asgi:"):
        if spec.startswith(prefix):
            mode, spec = prefix[:-1], spec[len(prefix) :]
    module_name, _, attr = spec.partition(":")
    attr = attr or "app"
    factory = config.factory if factory is None else factory
    if attr.endswith("()"):  # `module:create_app()`, the Hypercorn/eval spelling of a factory
        attr, factory = attr[:-2], True
    if not module_name or not attr:
        raise AppLoadError(f"invalid application path {path!r}: expected 'module:attr'")

    module = _import(module_name, directory)
    app = _lookup(module, module_name, attr)
    where = f"{module_name}:{attr}"
    if factory:
        if not callable(app):
            raise AppLoadError(f"factory '{where}' is not callable")
        try:
            app = app()
        except Exception as error:
            raise AppLoadError(
                f"factory '{where}' raised {type(error).__name__}: {error}"
            ) from error
        if inspect.isawaitable(app):
            _close(app)
            raise AppLoadError(f"factory '{where}' returned an awaitable; it must return the app")

    from edgecorn.asgi.wsgi import WSGIAdapter

    if mode == "wsgi":
        return WSGIAdapter(app, config.wsgi_max_body_size)
    if mode == "asgi":
        return app  # type: ignore[no-any-return]
    if _kind(app, where, factory) == "wsgi":
        return WSGIAdapter(app, config.wsgi_max_body_size)
    return app  # type: ignore[no-any-return]


def _import(module_name: str, directory: str | None = None) -> ModuleType:
    # Like Hypercorn: the working directory is importable, and a file path
    # (`src/app.py`) imports that file with its directory on sys.path.
    if module_name.endswith(".py") or "/" in module_name:
        file = Path(module_name).resolve()
        file = file if directory is None else Path(directory, module_name).resolve()
        directory, import_name = str(file.parent), file.with_suffix("").name
    else:
        directory, import_name = directory or os.getcwd(), module_name
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        return importlib.import_module(import_name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if missing and (import_name == missing or import_name.startswith(missing + ".")):
            raise AppLoadError(f"cannot import module '{module_name}': {error}") from error
        # A missing dependency inside the user's module: say so, with its own message.
        raise AppLoadError(
            f"error while importing module '{module_name}': ModuleNotFoundError: {error}"
        ) from error
    except ImportError as error:
        raise AppLoadError(
            f"error while importing module '{module_name}': ImportError: {error}"
        ) from error
    except Exception as error:  # SyntaxError, or a module that raises (a missing env var...)
        raise AppLoadError(
            f"error while importing module '{module_name}': {type(error).__name__}: {error}"
        ) from error


def _lookup(module: ModuleType, module_name: str, attr: str) -> Any:
    value: Any = module
    owner = f"module '{module_name}'"
    parts = attr.split(".")
    for index, part in enumerate(parts):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise AppLoadError(f"{owner} has no attribute '{part}'") from None
        owner = f"'{module_name}:{'.'.join(parts[: index + 1])}'"
    return value


def _close(awaitable: Any) -> None:
    # Silence "coroutine was never awaited" for a factory we refuse.
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()


def _kind(app: Any, where: str, factory: bool) -> str:
    """Return "asgi" or "wsgi"; raise AppLoadError for ASGI2 apps and non-apps."""
    if getattr(app, "_asgi_single_callable", False):  # asgiref's markers
        return "asgi"
    asgi2 = (
        f"'{where}' is an ASGI2 (double-callable) app; edgecorn runs ASGI3: wrap it with "
        "asgiref.compatibility.guarantee_single_callable(app), or make it "
        "`async def app(scope, receive, send)`"
    )
    if getattr(app, "_asgi_double_callable", False):
        raise AppLoadError(asgi2)
    if not callable(app):
        raise AppLoadError(f"'{where}' is not callable (it is a {type(app).__name__})")

    try:
        signature = inspect.signature(app)
    except (TypeError, ValueError):
        return "asgi"  # builtins and C extensions: trust the user
    takes = _arity(signature)

    if inspect.isclass(app):
        # A class as the app: ASGI2 (`App(scope)`), a PEP 3333 iterable class
        # (`App(environ, start_response)`), or a class that needed instantiating.
        if takes(1) and not takes(2):
            raise AppLoadError(asgi2)
        if takes(2) and not takes(3) and hasattr(app, "__iter__"):
            return "wsgi"
        if takes(3) and hasattr(app, "__await__"):
            return "asgi"
        hint = "" if factory else "; point at an instance, or pass --factory to call it"
        raise AppLoadError(f"'{where}' is a class, not an ASGI or WSGI app{hint}")

    call = app if inspect.isroutine(app) else getattr(app, "__call__", app)  # noqa: B004
    if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call):
        if takes(3):
            return "asgi"
        raise AppLoadError(
            f"'{where}' is async but does not take (scope, receive, send); "
            "ASGI3 apps are `async def app(scope, receive, send)`"
        )
    if takes(2) and not takes(3):
        return "wsgi"
    if takes(3):
        return "asgi"  # e.g. a decorator's sync wrapper returning the coroutine
    if takes(1):
        raise AppLoadError(asgi2)
    if takes(0) and not factory:
        raise AppLoadError(f"'{where}' takes no arguments: if it is an app factory, pass --factory")
    raise AppLoadError(
        f"'{where}' is neither an ASGI3 app (scope, receive, send) "
        "nor a WSGI app (environ, start_response)"
    )


def _arity(signature: inspect.Signature) -> Callable[[int], bool]:
    """A predicate: can the callable be called with n positional arguments?"""
    required = total = 0
    unbounded = False
    for param in signature.parameters.values():
        if param.kind in (param.POSITIONAL_ONLY, param.POSITIONAL_OR_KEYWORD):
            total += 1
            if param.default is param.empty:
                required += 1
        elif param.kind is param.VAR_POSITIONAL:
            unbounded = True
        elif param.kind is param.KEYWORD_ONLY and param.default is param.empty:
            return lambda n: False  # needs a keyword nobody will pass
    return lambda n: required <= n and (unbounded or n <= total)


def wrap_app(app: Any, config: Config) -> ASGIApp:
    """An app object handed to `serve()`: WSGI gets the adapter, ASGI2 a clear error."""
    from edgecorn.asgi.wsgi import WSGIAdapter

    if isinstance(app, WSGIAdapter):
        return app
    if _kind(app, getattr(app, "__qualname__", type(app).__name__), False) == "wsgi":
        return WSGIAdapter(app, config.wsgi_max_body_size)
    return app  # type: ignore[no-any-return]
