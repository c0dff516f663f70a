"""The layering of docs/contributing.md, checked against the code: every module in one layer,
imports only to the same layer or below, no import cycle, no function-local import of a
slurmscope module (except the documented lazy ones)."""

from __future__ import annotations

import ast
import fnmatch
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "slurmscope"
DOC = REPO / "docs" / "contributing.md"

#: Function-local imports of slurmscope modules that keep a cost or an optional dependency
#: away (documented in docs/contributing.md), never a cycle: (importer, imported).
LAZY = {("migrate", "_migrate_cst")}


def layers() -> list[tuple[int, list[str]]]:
    """(layer number, module patterns) of each row of the documented table."""
    text = DOC.read_text()
    table = text.split("<!-- layers -->", 1)[1].split("<!-- /layers -->", 1)[0]
    rows = []
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not cells[0][:1].isdigit():
            continue
        rows.append((int(cells[0].split()[0]), re.findall(r"`([^`]+)`", cells[1])))
    return rows


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts) or "slurmscope"


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom | ast.Import) -> list[str]:
    """The slurmscope modules an import statement names (package-relative names)."""
    known = modules()
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names if a.name.split(".")[0] == "slurmscope"]
        return [n.removeprefix("slurmscope.") if n != "slurmscope" else n for n in names]
    if node.level == 0:
        if not (node.module or "").startswith("slurmscope"):
            return []
        base = (node.module or "").removeprefix("slurmscope").lstrip(".")
    else:
        here = [] if importer == "slurmscope" else importer.split(".")
        package = here if is_package else here[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([node.module] if node.module else [])])
    found = []
    for alias in node.names:
        sub = f"{base}.{alias.name}" if base else alias.name
        if sub in known:
            found.append(sub)
        else:
            found.append(base or "slurmscope")
    return found


def imports() -> list[tuple[str, str, bool]]:
    """(importer, imported, at top level) for every import of a slurmscope module."""
    edges = []
    for name, path in modules().items():
        tree = ast.parse(path.read_text(), str(path))
        is_package = path.name == "__init__.py"
        in_functions = {
            id(inner)
            for node in ast.walk(tree)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            for inner in ast.walk(node)
            if isinstance(inner, (ast.Import, ast.ImportFrom))
        }
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for target in _resolve(name, is_package, node):
                    if target != name:
                        edges.append((name, target, id(node) not in in_functions))
    return edges


def layer_of() -> dict[str, int]:
    found: dict[str, int] = {}
    rows = layers()
    for module in modules():
        matches = [n for n, pats in rows for p in pats if fnmatch.fnmatchcase(module, p)]
        assert len(matches) == 1, (
            f"slurmscope module {module!r} must be in exactly one layer of the table in "
            f"docs/contributing.md; it matches layers {matches}"
        )
        found[module] = matches[0]
    return found


def test_the_table_and_the_package_are_not_empty() -> None:
    assert len(layers()) >= 10
    assert len(modules()) >= 30
    assert len(imports()) >= 60


def test_every_module_is_in_exactly_one_layer() -> None:
    layer_of()


def test_every_named_module_exists() -> None:
    known = modules()
    for _, patterns in layers():
        for pattern in patterns:
            if not any(ch in pattern for ch in "*?["):
                assert pattern in known, f"docs/contributing.md names {pattern!r}, not a module"


def test_imports_point_down() -> None:
    layer = layer_of()
    upward = [
        f"{a} (layer {layer[a]}) imports {b} (layer {layer[b]})"
        for a, b, _ in imports()
        if layer[b] > layer[a]
    ]
    assert not upward, "imports must point to the same layer or below:\n" + "\n".join(upward)


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for a, b, _ in imports():
        graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert state, "no imports found"


def test_no_function_local_import_of_slurmscope_modules() -> None:
    local = {
        (a, b)
        for a, b, at_top in imports()
        if not at_top and a != "slurmscope" and (a, b) not in LAZY
    }
    assert not local, f"function-local imports (move them to the top): {sorted(local)}"
    lazy_found = {(a, b) for a, b, at_top in imports() if not at_top}
    assert lazy_found >= LAZY and LAZY, "a documented lazy import is gone: update LAZY"


def test_every_package_is_installed() -> None:
    """A non-editable install ships only the packages pyproject lists: every folder of
    slurmscope with an ``__init__.py`` must be among them (``slurmscope.cli`` once was not)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    listed = set(
        tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {".".join(p.parent.relative_to(REPO).parts) for p in PACKAGE.rglob("__init__.py")}
    assert found and "slurmscope" in found
    assert found == listed, f"pyproject.toml [tool.setuptools] packages must be {sorted(found)}"
