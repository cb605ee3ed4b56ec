"""Imports run one way (STYLE.md): checked on the AST of every module under src/majlis."""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import majlis

ROOT = Path(majlis.__file__).parent
PACKAGE = "majlis"

Graph = dict[str, set[str]]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import that runs, at any depth (lazy ones in functions too), but not the ones
    under `if TYPE_CHECKING:`, which never run."""
    found: list[ast.Import | ast.ImportFrom] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        pending.extend(ast.iter_child_nodes(node))
    return found


def imported(source: str, importer: str, known: set[str]) -> set[str]:
    """The majlis modules ``source`` (module ``importer``) imports."""
    targets: set[str] = set()
    for node in _import_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = importer.split(".")[: -node.level]
                base = ".".join([*anchor, *([base] if base else [])])
            # `from majlis.http import api` imports the module majlis.http.api.
            names = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                for alias in node.names
            ]
        targets.update(n for n in names if n == PACKAGE or n.startswith(PACKAGE + "."))
    return targets


@cache
def graph() -> Graph:
    known = set(modules())
    return {
        name: imported(path.read_text(encoding="utf-8"), name, known)
        for name, path in modules().items()
    }


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def find_cycle(edges: Graph) -> list[str] | None:
    """One import cycle as a path (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


# -- the checker checks -----------------------------------------------------------------


def test_the_walker_sees_every_kind_of_import() -> None:
    known = {"majlis.a", "majlis.http", "majlis.http.api", "majlis.rooms.space"}
    source = """
import os
import majlis.a
from majlis.http import api
from majlis.rooms.space import Space
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from majlis.never import Runs
def lazy():
    from . import sibling
"""
    found = imported(source, "majlis.rooms.x", known)
    assert found == {"majlis.a", "majlis.http.api", "majlis.rooms.space", "majlis.rooms"}


def test_the_cycle_finder_finds_cycles() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_every_module_was_read() -> None:
    names = set(modules())
    assert {"majlis.media.mixer", "majlis.packaging.playlist", "majlis.http.server"} <= names
    assert len(names) >= 30


# -- the rules --------------------------------------------------------------------------


def test_media_imports_nothing_from_the_server() -> None:
    offenders = {
        module: sorted(t for t in targets if not within(t, "majlis.media"))
        for module, targets in graph().items()
        if within(module, "majlis.media")
    }
    assert {m: t for m, t in offenders.items() if t} == {}


def test_playlist_imports_nothing_from_majlis() -> None:
    assert graph()["majlis.packaging.playlist"] == set()


def test_only_http_and_cli_import_http() -> None:
    offenders = sorted(
        (module, target)
        for module, targets in graph().items()
        for target in targets
        if within(target, "majlis.http")
        and not within(module, "majlis.http")
        and module != "majlis.cli"
    )
    assert offenders == []


def test_no_import_cycles() -> None:
    assert find_cycle(graph()) is None
