"""The import graph of the product packages: no import circle, no upward import.

Layers, lowest first: ``translatable`` and ``store`` (database infrastructure), ``ca`` (the library) and
``directory`` (the staff directory), ``audit`` and ``cardsim`` (on ca), ``idp`` (the web service) and
``backup`` (backup and restore, beside it), ``cli``
(the command line, on all of them). Every ``import`` counts, inside functions too,
except those under ``if TYPE_CHECKING:`` (they never run). ``from package import submodule``
depends on the submodule, not on the package's ``__init__``.
"""

from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"translatable": 0, "store": 0, "ca": 1, "directory": 1, "audit": 2, "cardsim": 2, "verification": 2,
          "idp": 3, "backup": 3, "cli": 4}


def _modules() -> dict[str, Path]:
    found = {}
    for package in LAYERS:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = {id(node) for branch in ast.walk(tree)
               if isinstance(branch, ast.If) and "TYPE_CHECKING" in ast.unparse(branch.test)
               for node in ast.walk(branch)}
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules]
            out.update(submodules)
            if len(submodules) < len(node.names):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {name for name in out if name in modules}


@functools.cache
def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circle() -> None:
    assert _circles(_graph()) == []


def test_no_upward_import() -> None:
    upward = {(m, d) for m, deps in _graph().items() for d in deps
              if LAYERS[d.split(".")[0]] > LAYERS[m.split(".")[0]]}
    assert upward == set(), sorted(upward)


def test_the_directory_uses_nothing_but_store_and_translatable() -> None:
    """directory/ shares layer 1 with ca/ but is no client of it: LDAP on python-ldap, its own errors."""
    allowed = {"directory", "store", "translatable"}
    used = {(m, d) for m, deps in _graph().items() if m.split(".")[0] == "directory" for d in deps
            if d.split(".")[0] not in allowed}
    assert used == set()


def test_the_product_does_not_import_ldap3() -> None:
    """ldap3 is a test dependency only (an independent judge of filters and of the wire): the
    product speaks LDAP through python-ldap."""
    importing = set()
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(m == "ldap3" or m.startswith("ldap3.") for m in modules):
                importing.add(name)
    assert importing == set()


def test_the_check_finds_a_circle() -> None:
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
