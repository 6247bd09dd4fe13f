"""The import graph (issue 19): ``storage.py`` and ``aio/storage.py`` import ``memoize``
(for their ``memoize`` method), so ``memoize`` imports neither: it is written against
``pystorage.interface``. A circle between them would make the order of first imports
matter, and every change to one a risk for the others.

The graph is read from the source with ``ast``: every ``import`` that runs (at module
level or inside a function, where the lazy imports are), not those under
``if TYPE_CHECKING:``, which the type checker alone reads.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pystorage"
#: The modules of the circle that issue 19 broke.
CIRCLE = ("pystorage.storage", "pystorage.memoize", "pystorage.aio.storage")


def module_names() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def imported(path: Path, package: str, typing_too: bool = False) -> set[str]:
    """The names ``path`` imports (a module, or a module's attribute), anywhere in it;
    those under ``if TYPE_CHECKING:`` only when ``typing_too``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child) and not typing_too:
                for other in child.orelse:  # type: ignore[attr-defined]
                    visit_one(other)
                continue
            visit_one(child)

    def visit_one(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        visit(node)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def import_graph(typing_too: bool = False) -> dict[str, set[str]]:
    """Each module of the package and the modules of the package it imports."""
    modules = module_names()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = (imported(path, package, typing_too) & modules.keys()) - {name}
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph[name])
    return seen


@pytest.mark.parametrize("module", CIRCLE)
def test_no_module_of_the_old_circle_imports_itself_back(module: str) -> None:
    graph = import_graph()
    assert module not in reachable(graph, module), (module, sorted(reachable(graph, module)))


def test_memoize_is_written_against_the_interface_not_the_classes() -> None:
    # Not even for the type checker: memoize knows the protocols, not who implements them.
    memoize = import_graph(typing_too=True)["pystorage.memoize"]
    assert "pystorage.interface" in memoize
    assert not {"pystorage.storage", "pystorage.aio.storage"} & memoize


def test_the_graph_sees_imports_inside_functions_and_leaves_type_only_ones_out() -> None:
    # The checks above could fail: Storage.memoize's import is inside a method, and
    # storage.py names memoize's types under TYPE_CHECKING.
    graph = import_graph()
    assert "pystorage.memoize" in graph["pystorage.storage"]
    assert "pystorage.memoize" in graph["pystorage.aio.storage"]
    assert "pystorage.stampede" not in graph["pystorage.storage"]
    assert "pystorage.stampede" in import_graph(typing_too=True)["pystorage.storage"]
    # A circle is found when there is one: layers.protocol's missing() imports
    # layers.base's stack_from, and layers.base imports the protocol.
    assert "pystorage.layers.base" in reachable(graph, "pystorage.layers.base")


def test_memoize_imported_first_loads_neither_storage_module() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, pystorage.memoize\n"
            "print(sorted(m for m in sys.modules if m.startswith('pystorage')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = done.stdout
    assert "'pystorage.memoize'" in loaded and "'pystorage.interface'" in loaded
    assert "'pystorage.storage'" not in loaded and "'pystorage.aio.storage'" not in loaded
