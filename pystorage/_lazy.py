"""Public names of a package, imported when first used (PEP 562).

A program pays at import only for what it uses: the SQLite backend does not load the S3
glue, and ``Storage`` does not load asyncio. Names stay where they were documented
(``from pystorage.layers import SQLite``); type checkers read the package's
``if TYPE_CHECKING:`` imports, which name the same objects.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping


def exports(
    package: str, where: Mapping[str, str], namespace: dict[str, object]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``.

    ``where`` maps each lazy name to ``"module:attribute"``, or to ``"module"`` for a
    submodule; the first access imports it and keeps it in ``namespace`` (the package's
    globals), so that later accesses cost a plain lookup.
    """

    def __getattr__(name: str) -> object:
        target = where.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module_name, _, attribute = target.partition(":")
        value: object = importlib.import_module(module_name)
        if attribute:
            value = getattr(value, attribute)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(where))

    return __getattr__, __dir__
