"""``make test-django``: Django's own cache suite against pystorage.contrib.django.

Fetches the source distribution of the Django that is installed (its ``tests/`` are not
in the wheel) into ``.cache/django/`` once, links the modules of ``tests/django_suite/``
into its ``tests/cache/``, and runs them there with Django's ``runtests.py``. Arguments
go to ``runtests.py`` (e.g. ``--parallel 1``, or a test label after ``--``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import django

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "django"
SUITE = ROOT / "tests" / "django_suite"
LINKED = ("tests_pystorage.py", "settings_pystorage.py")


def source_tree() -> Path:
    """The unpacked sdist of the installed Django, fetched on first use."""
    version = django.__version__
    tree = CACHE / f"django-{version}"
    if (tree / "tests" / "runtests.py").exists():
        return tree
    CACHE.mkdir(parents=True, exist_ok=True)
    archive = CACHE / f"django-{version}.tar.gz"
    if not archive.exists():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                f"django=={version}",
                "--no-binary",
                ":all:",
                "--no-deps",
                "-d",
                str(CACHE),
            ],
            check=True,
        )
    with tarfile.open(archive) as sdist:
        # The "data" filter (3.10.12 and later) refuses links out of the tree.
        if hasattr(tarfile, "data_filter"):
            sdist.extractall(CACHE, filter="data")
        else:
            sdist.extractall(CACHE)  # the sdist of the pinned Django, from PyPI
    return tree


def main(arguments: list[str]) -> int:
    tests = source_tree() / "tests"
    for name in LINKED:
        link = tests / "cache" / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(SUITE / name)
    # Labels name tests under cache.tests_pystorage; without one, the whole module runs.
    labels = (
        []
        if any(argument.startswith("cache.") for argument in arguments)
        else ["cache.tests_pystorage"]
    )
    command = [
        sys.executable,
        str(tests / "runtests.py"),
        "--settings=cache.settings_pystorage",
        *arguments,
        *labels,
    ]
    # The project's pystorage, whatever the folder runtests.py runs from.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(command, cwd=tests, env=env, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
