"""docs/security.md names a test for each promise: every one it names exists."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "security.md"
#: A pytest node id as the page writes them: ``tests/test_x.py::test_name``.
NODE_ID = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


def _tests_in(path: Path) -> set[str]:
    """The names of the test functions defined at the top of ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    return {
        node.name
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.name.startswith("test_")
    }


def test_every_test_the_security_page_names_exists() -> None:
    named = NODE_ID.findall(PAGE.read_text())
    assert len(named) >= 30, "the page names a test per promise"
    missing = [
        f"{file}::{name}"
        for file, name in named
        if not (ROOT / file).is_file() or name not in _tests_in(ROOT / file)
    ]
    assert missing == []


def test_every_row_of_the_promise_tables_names_a_test() -> None:
    rows = [
        line
        for line in PAGE.read_text().splitlines()
        if line.startswith("| ")
        and line.count("|") == 5
        and not line.startswith("| They")
        and not line.startswith("| It ")
        and not line.startswith("| ---")
    ]
    assert len(rows) >= 20
    assert [row for row in rows if not NODE_ID.search(row)] == []
