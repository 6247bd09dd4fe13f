"""The docs' tables and ``pystorage --help`` name everything the code accepts.

The lists come from the code: the URL schemes and options from ``pystorage/urls.py``,
the presets from the ``STORAGE_*`` names of ``StorageProvider``, their arguments from the
signatures of the preset functions. A scheme, option, preset or argument added to the
code without a row (or a mention in its row) in docs/urls.md, docs/presets.md and the
command's help fails here.
"""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pystorage import urls
from pystorage.storage_provider import StorageProvider

ROOT = Path(__file__).resolve().parent.parent
URLS_MD = ROOT / "docs" / "urls.md"
PRESETS_MD = ROOT / "docs" / "presets.md"

SCHEMES = sorted(urls._BACKENDS)
PRESETS = sorted(name for name in vars(StorageProvider) if name.startswith("STORAGE_"))


def _url_options() -> list[str]:
    """The options ``urls.py`` takes by name: ``options.pop("name", ...)``, ``"name" in
    options`` and ``_not_empty(options, "name")``. (redis-py's own URL options are
    passed through by the set redis-py declares, and documented as such.)"""
    names: set[str] = set()
    for node in ast.walk(ast.parse(Path(urls.__file__).read_text())):
        if isinstance(node, ast.Call) and node.args:
            func, first = node.func, node.args[0]
            if (
                isinstance(func, ast.Attribute)
                and func.attr == "pop"
                and isinstance(func.value, ast.Name)
                and func.value.id == "options"
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                names.add(first.value)
            if (
                isinstance(func, ast.Name)
                and func.id == "_not_empty"
                and len(node.args) == 2
                and isinstance(node.args[1], ast.Constant)
            ):
                names.add(node.args[1].value)
    return sorted(names)


URL_OPTIONS = _url_options()


def _cells(row: str) -> list[str]:
    """The cells of a Markdown table row; a ``|`` inside backticks or escaped is text."""
    cells, cell, code, previous = [], "", False, ""
    for char in row.strip().strip("|"):
        if char == "`":
            code = not code
        if char == "|" and not code and previous != "\\":
            cells.append(cell.strip())
            cell = ""
        else:
            cell += char
        previous = char
    cells.append(cell.strip())
    return cells


def _tables(path: Path) -> dict[str, list[list[str]]]:
    """Every table of a page by the heading it is under (tables under one heading are
    joined), without header and separator rows."""
    tables: dict[str, list[list[str]]] = {}
    heading, in_table = "", False
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
        if line.startswith("|"):
            if in_table and not set(line) <= set("|-: "):
                tables.setdefault(heading, []).append(_cells(line))
            in_table = True  # the first row of a table is its header
        else:
            in_table = False
    return tables


def _first_cells(path: Path, heading: str) -> list[str]:
    rows = _tables(path).get(heading)
    assert rows, f"{path.name} has no table under the heading {heading!r}"
    return [row[0] for row in rows]


def test_the_lists_from_the_code_are_not_empty() -> None:
    # If the code moved, these lists would be empty and every test below would pass.
    assert {"memory", "file", "sqlite", "redis", "s3"} <= set(SCHEMES)
    assert {"STORAGE_JSON", "STORAGE_SQLITE", "STORAGE_S3"} <= set(PRESETS)
    assert {"codec", "ttl", "limit", "max_bytes", "suffix", "prefix", "synchronous"} <= set(
        URL_OPTIONS
    )


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_has_a_row_in_the_urls_page(scheme: str) -> None:
    named = {
        found
        for cell in _first_cells(URLS_MD, "Schemes")
        for found in re.findall(r"`(\w+)://`", cell)
    }
    assert scheme in named, f"docs/urls.md: the Schemes table has no row for {scheme}://"


@pytest.mark.parametrize("option", URL_OPTIONS)
def test_every_url_option_has_a_row_in_the_urls_page(option: str) -> None:
    named = {
        found
        for cell in _first_cells(URLS_MD, "Options")
        for found in re.findall(r"`(\w+)=`", cell)
    }
    assert option in named, f"docs/urls.md: the Options tables have no row for {option}="


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_has_a_url_row(preset: str) -> None:
    named = {cell.split()[0].strip("`") for cell in _first_cells(URLS_MD, "The presets as URLs")}
    assert preset in named, f"docs/urls.md: the presets table has no row for {preset}"


def _preset_rows() -> dict[str, list[str]]:
    rows = _tables(PRESETS_MD).get("Presets")
    assert rows, "docs/presets.md has no table under its title"
    by_name = {}
    for row in rows:
        found = re.search(r"`(STORAGE_\w+)`", row[0])
        if found:
            by_name[found.group(1)] = row
    return by_name


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_and_argument_is_in_the_presets_table(preset: str) -> None:
    rows = _preset_rows()
    assert preset in rows, f"docs/presets.md: the table has no row for {preset}"
    arguments = rows[preset][-1]
    factory = StorageProvider.PRESETS[getattr(StorageProvider, preset)]
    missing = [
        parameter.name
        for parameter in inspect.signature(factory).parameters.values()
        if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        and not re.search(rf"`{parameter.name}[`=]", arguments)
    ]
    assert not missing, f"docs/presets.md: the row of {preset} lacks {', '.join(missing)}"


def test_the_command_line_help_names_every_scheme() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "pystorage", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    missing = [scheme for scheme in SCHEMES if f"{scheme}://" not in shown]
    assert not missing, f"pystorage --help does not name {', '.join(missing)}"
