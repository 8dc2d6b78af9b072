"""The import graph of edgecorn/ has no circles.

Every import counts, including those under `if TYPE_CHECKING:` and inside
functions: a circle hidden that way still means two modules that cannot be
understood (or tested) one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "edgecorn"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The edgecorn modules `name` imports, wherever in the file the import sits."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                # relative: a module's level-1 base is its package; a package's is itself
                base = name.split(".")
                drop = node.level - 1 if is_package else node.level
                base = base[: len(base) - drop] if drop else base
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                # `from pkg import module` imports the module; `from mod import name` the module
                found.add(sub if sub in modules else target)
    # `import a.b.c` names a.b.c; keep only edgecorn's modules and no self-edges
    return {target for target in found if target in modules and target != name}


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_one_cycle(graph, set(component)) for component in components]


def _one_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A concrete path start -> ... -> start inside the component, for the message."""
    start = min(component)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & component):
            if nxt == start:
                return paths[node] + [start]
            if nxt not in paths:
                paths[nxt] = paths[node] + [nxt]
                queue.append(nxt)
    raise AssertionError("a strongly connected component always has a cycle")


def test_no_import_cycles() -> None:
    cycles = find_cycles(import_graph())
    # one concrete circle per tangle; break it and the test names the next one, if any
    assert not cycles, "import cycles in edgecorn/:\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )


def test_the_walker_sees_hidden_imports(tmp_path: Path) -> None:
    """The checker itself: TYPE_CHECKING, function-level and relative imports all count."""
    pkg = tmp_path / "edgecorn"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .sub import b\n"
    )
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import thing\n")
    (pkg / "c.py").write_text("import edgecorn.a\n")
    modules = {module_name_in(tmp_path, p): p for p in sorted(pkg.rglob("*.py"))}
    graph = {n: imports_of(n, p, modules) for n, p in modules.items()}
    assert graph["edgecorn.a"] == {"edgecorn.sub.b"}
    assert graph["edgecorn.sub.b"] == {"edgecorn.c"}
    assert find_cycles(graph) == [["edgecorn.a", "edgecorn.sub.b", "edgecorn.c", "edgecorn.a"]]


def module_name_in(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


# Backend code stays in its backend: the middle layer reaches an event loop only through
# edgecorn.asyncio / edgecorn.trio (their lifespan and threads modules).
EVENT_LOOPS = {"asyncio", "trio", "uvloop", "anyio", "sniffio"}


def event_loop_imports(path: Path) -> list[str]:
    """The event-loop libraries `path` imports itself, anywhere in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [node.module or ""]
        else:
            continue
        found += [name for name in names if name.split(".")[0] in EVENT_LOOPS]
    return found


def test_the_asgi_layer_imports_no_event_loop(tmp_path: Path) -> None:
    offenders = {
        path.name: event_loop_imports(path)
        for path in sorted((PACKAGE / "asgi").glob("*.py"))
        if event_loop_imports(path)
    }
    assert not offenders, f"edgecorn/asgi/ imports event loops: {offenders}"
    # the checker itself sees a function-level import
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    import trio.to_thread\n    from asyncio import Event\n")
    assert event_loop_imports(probe) == ["trio.to_thread", "asyncio"]
