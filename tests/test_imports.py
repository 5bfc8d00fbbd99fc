"""Module structure: no import cycles inside delift_core, and no oversized module files.

Imports are read from the source with `ast` (nothing is imported but the packages themselves):
module-level and function-level `import` and `from ... import`, relative ones resolved. Imports
under `if TYPE_CHECKING:` count too, so that a type-only import cannot hide a layering cycle.
"""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

import delift_core

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "delift_core"
MAX_LINES = 450
SIZE_CHECKED = ("delift_core", "ui", "pages")


def package_modules() -> dict[str, Path]:
    """Every module of delift_core (packages by their __init__.py) and its source file."""
    modules = {PACKAGE: Path(delift_core.__file__)}
    for info in pkgutil.walk_packages(delift_core.__path__, f"{PACKAGE}."):
        folder = Path(info.module_finder.path)  # type: ignore[union-attr]
        leaf = info.name.rpartition(".")[2]
        modules[info.name] = folder / leaf / "__init__.py" if info.ispkg else folder / f"{leaf}.py"
    return modules


def imported_names(name: str, path: Path, known: set[str]) -> set[str]:
    """Absolute names of what the module imports anywhere in its body. `from x import y` names
    x.y when that is a module in `known` (a submodule), else x."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                source = f"{base}.{source}" if source else base
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in known else source)
    return found


def import_graph() -> dict[str, set[str]]:
    """delift_core module -> the delift_core modules it imports. A submodule's parent package
    is run first by Python, but that is not an import of the parent by the submodule."""
    modules = package_modules()
    known = set(modules)
    return {
        name: (imported_names(name, path, known) & known) - {name} for name, path in modules.items()
    }


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (a list of modules, the first repeated at the end) per strongly connected
    group of modules that import each other, found with Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

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
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1 or node in graph.get(node, ()):
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [_cycle_in(group, graph) for group in groups]


def _cycle_in(group: set[str], graph: dict[str, set[str]]) -> list[str]:
    """A shortest path from the group's first module back to itself, inside the group."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(graph[node] & group):
                if nxt == start:
                    return [*paths[node], start]
                if nxt not in paths:
                    paths[nxt] = [*paths[node], nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle in {sorted(group)}")  # a strongly connected group has one


def test_the_graph_sees_relative_function_level_and_submodule_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from . import leaf\n")
    (pkg / "sub" / "leaf.py").write_text("def f():\n    from ..top import g\n")
    (pkg / "top.py").write_text("import pkg.sub.leaf\nfrom pkg import sub\n")
    known = {"pkg", "pkg.sub", "pkg.sub.leaf", "pkg.top"}
    assert imported_names("pkg.sub", pkg / "sub" / "__init__.py", known) == {"pkg.sub.leaf"}
    assert imported_names("pkg.sub.leaf", pkg / "sub" / "leaf.py", known) == {"pkg.top"}
    assert imported_names("pkg.top", pkg / "top.py", known) == {"pkg.sub.leaf", "pkg.sub"}


def test_cycle_finder_reports_a_cycle_and_accepts_a_tree():
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"a"}}) == [["a", "a"]]


def test_the_graph_covers_every_module():
    graph = import_graph()
    assert len(graph) == len(list((ROOT / PACKAGE).rglob("*.py")))
    assert f"{PACKAGE}.config" in graph[f"{PACKAGE}.select.selection"]


def test_delift_core_has_no_import_cycles():
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles in delift_core:\n" + "\n".join(
        " -> ".join(cycle) for cycle in cycles
    )


def test_no_module_file_is_oversized():
    offenders = []
    for folder in SIZE_CHECKED:
        for path in sorted((ROOT / folder).rglob("*.py")):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                offenders.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not offenders, f"modules over {MAX_LINES} lines (split them):\n" + "\n".join(offenders)
