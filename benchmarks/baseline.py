"""An older PyStorage beside the current one, in the same process: before/after ratios.

Two copies of a package cannot both be ``pystorage`` in ``sys.modules`` at once, so each
copy is imported with its own set of ``pystorage*`` entries swapped in, and swapped out
again once its objects are built: a module's functions keep the globals of the copy that
defined them, so a stack built from a copy runs that copy's code wherever it is called
(PyStorage's get and set paths import nothing when they run). Both copies are then timed
in the same :func:`~benchmarks.harness.compare`, their rounds interleaved, which a 3 %
target needs: on a shared machine, two processes timed one after the other differ by
more than that.

The older copy is the ``pystorage`` folder of a commit, read with ``git archive`` into a
temporary folder (the repository is left as it is).
"""

from __future__ import annotations

import importlib
import io
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "pystorage"

Modules = dict[str, ModuleType]


def extract(commit: str, into: Path) -> Path:
    """The ``pystorage`` folder of ``commit`` written under ``into``; returns ``into``.
    ``RuntimeError`` if git cannot read it (not a clone, or a shallow one)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", commit, PACKAGE],
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise RuntimeError(f"git cannot read {commit}: {exc} {detail.decode().strip()}") from exc
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as archive:
        # The "data" filter where this Python has it: our own repository's files only.
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(into, **safe)  # type: ignore[arg-type]
    return into


def load(source: Path) -> Modules:
    """A fresh copy of the ``pystorage`` package in folder ``source``, imported apart
    from the copy in use (which stays the one ``import pystorage`` gives)."""
    loaded: Modules = {}
    sys.path.insert(0, str(source))
    importlib.invalidate_caches()
    try:
        with active(loaded):
            package = importlib.import_module(f"{PACKAGE}.storage_provider")
            if not Path(package.__file__ or "").is_relative_to(source):
                raise RuntimeError(f"{PACKAGE} was not imported from {source}")
    finally:
        sys.path.remove(str(source))
    return loaded


@contextmanager
def active(copy: Modules) -> Iterator[Modules]:
    """Make ``copy`` the ``pystorage`` of ``sys.modules`` for the block (build its
    objects there: a module it imports late is then its own); the current one after."""
    current = _take()
    sys.modules.update(copy)
    try:
        yield copy
    finally:
        copy.update(_take())
        sys.modules.update(current)


def _take() -> Modules:
    names = [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]
    return {name: sys.modules.pop(name) for name in names}
