"""Dependencies point one way (issue 11): the import contracts in `.importlinter` hold, no
package-level import cycle exists at run time, and every component's declaration resolves.

Imports under `if TYPE_CHECKING:` are left out of the cycle check: they are erased at run time
and only name the composition root's type (`GovernanceService`) for the type checker.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Final

import grimp

REPO: Final = Path(__file__).resolve().parents[2]
ROOT: Final = "powerx_governance"
CONSOLE: Final = REPO / "src" / ROOT / "console"
# What the console may take from SQLAlchemy: the type of the session it hands to the queries.
CONSOLE_SQLALCHEMY: Final = frozenset({"Session", "sessionmaker"})
# Calls that build or run SQL; the console leaves them to the components' queries.
SQL_BUILDERS: Final = frozenset({"select", "text"})
SESSION_READS: Final = frozenset({"execute", "scalar", "scalars", "get", "get_one", "query"})
# Neutral homes: anything may import them, they import no component.
NEUTRAL: Final = frozenset({"errors", "times", "domain", "versioning", "http", "records", "durations"})


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint)], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "0 broken" in done.stdout


def _package_graph() -> dict[str, set[str]]:
    graph = grimp.build_graph(ROOT, exclude_type_checking_imports=True)
    edges: dict[str, set[str]] = defaultdict(set)
    for module in graph.modules:
        parts = module.split(".")
        if len(parts) < 2:
            continue
        for imported in graph.find_modules_directly_imported_by(module):
            target = imported.split(".")
            if len(target) >= 2 and target[1] != parts[1]:
                edges[parts[1]].add(target[1])
    return edges


def _cyclic(edges: dict[str, set[str]]) -> set[str]:
    """Packages on some cycle: those that reach themselves."""
    on_cycle = set()
    for start in list(edges):
        seen, todo = set(), list(edges[start])
        while todo:
            node = todo.pop()
            if node == start:
                on_cycle.add(start)
                break
            if node not in seen:
                seen.add(node)
                todo.extend(edges.get(node, ()))
    return on_cycle


def test_shared_helpers_are_on_no_package_cycle() -> None:
    cyclic = _cyclic(_package_graph())
    assert not (NEUTRAL & cyclic), sorted(NEUTRAL & cyclic)


def test_no_package_is_on_an_import_cycle() -> None:
    """The 22-package loop is gone: at run time, no package imports one that imports it back."""
    assert _cyclic(_package_graph()) == set()


def test_components_import_the_composition_root_only_for_type_checking() -> None:
    graph = grimp.build_graph(ROOT, exclude_type_checking_imports=True)
    root = {f"{ROOT}.service", f"{ROOT}.app", f"{ROOT}.components", f"{ROOT}.schema"}
    leaks = sorted(
        f"{module} -> {imported}"
        for module in graph.modules
        if module.count(".") >= 2 and not module.startswith((f"{ROOT}.cli.", f"{ROOT}.migrations"))
        for imported in graph.find_modules_directly_imported_by(module)
        if imported in root
    )
    assert leaks == []


def _console_modules() -> list[tuple[str, ast.Module]]:
    return [(path.name, ast.parse(path.read_text(encoding="utf-8"))) for path in sorted(CONSOLE.glob("*.py"))]


def test_the_console_takes_only_the_session_type_from_sqlalchemy() -> None:
    taken = [
        (name, node.module, alias.name)
        for name, tree in _console_modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sqlalchemy"
        for alias in node.names
    ]
    imported = [
        (name, alias.name)
        for name, tree in _console_modules()
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name.split(".")[0] == "sqlalchemy"
    ]
    assert not imported
    assert taken  # the check looks at the right files
    assert {(module, what) for _, module, what in taken} <= {
        ("sqlalchemy.orm", n) for n in CONSOLE_SQLALCHEMY
    }


def test_the_console_runs_no_sql_of_its_own() -> None:
    """No `select(…)`, `text(…)`, and no `session.execute/scalar/get(…)`: reads go through `queries`."""
    found = []
    for name, tree in _console_modules():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in SQL_BUILDERS:
                found.append((name, node.lineno, func.id))
            elif (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and func.value.id == "session"
                and func.attr in SESSION_READS
            ):
                found.append((name, node.lineno, f"session.{func.attr}"))
    assert not found, found
