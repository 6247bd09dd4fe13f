"""What a storage offers to what is built on it, without the storage classes.

``memoize`` is written against ``SyncStorage`` and ``AsyncStorageLike`` below, and
``Storage`` and ``AsyncStorage`` import ``memoize`` (for their ``memoize`` method): with
the interfaces here, the imports go one way only (``tests/test_import_graph.py``). The
checks of arguments that both kinds of storage (and memoize) run live here too.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from pystorage.errors import ConfigurationError, NotAnIntegerError, UnsupportedError, not_a_str
from pystorage.layers.base import ABSENT, checked_ttl

if TYPE_CHECKING:
    from pystorage.aio.layers import AsyncLayer
    from pystorage.layers.envelope import TagSnapshot
    from pystorage.layers.protocol import Layer, TagNames

Top = TypeVar("Top", bound=Any)


class SyncStorage:
    """A storage whose operations return their results (``Storage`` is one): what
    ``memoize`` calls on it.

    A base class, not a ``typing.Protocol``: memoize tells a sync storage from an async
    one with ``isinstance`` on every call of a refreshing function, which takes 30 us
    against a runtime-checked Protocol with a data member (Python 3.11) and 60 ns against
    a class. The operations are declared for the type checker only.
    """

    __slots__ = ()

    if TYPE_CHECKING:
        top: Layer

        # As Mapping.get (which Storage is): a miss is None, or the default given.
        @overload
        def get(self, key: str, /) -> Any | None: ...

        @overload
        def get(self, key: str, /, default: Any) -> Any: ...

        def get(self, key: str, /, default: Any = None) -> Any: ...

        def set(
            self, key: str, value: Any, ttl: float | None = None, tags: TagNames | None = None
        ) -> None: ...

        def snapshot_tags(self, tags: Sequence[str]) -> TagSnapshot: ...

        def delete_many(self, keys: Iterable[str]) -> None: ...

        def __getitem__(self, key: str) -> Any: ...

        def __iter__(self) -> Iterator[str]: ...


class AsyncStorageLike(Protocol):
    """A storage whose operations are awaited (``AsyncStorage`` is one): what
    ``memoize`` calls on it."""

    @property
    def top(self) -> AsyncLayer:
        """The top layer of its stack."""
        ...

    async def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        ...

    async def set(
        self, key: str, value: Any, ttl: float | None = None, tags: TagNames | None = None
    ) -> None:
        """Store ``value``, for ``ttl`` seconds if given, with ``tags`` if given."""
        ...

    async def snapshot_tags(self, tags: Sequence[str]) -> TagSnapshot:
        """The tokens of ``tags`` now (see ``Storage.snapshot_tags``)."""
        ...

    async def delete_many(self, keys: Iterable[str]) -> None:
        """Remove those ``keys`` that exist."""
        ...

    def __aiter__(self) -> AsyncIterator[str]:
        """Every key."""
        ...


def check_tags(top: Top) -> Top:
    """``top`` if it keeps tags (a ``Tags`` layer); else ``ConfigurationError``: a stack
    without one never takes ``tags=`` and drops them."""
    if not top.keeps_tags:
        raise ConfigurationError(
            f"this stack has no Tags layer on top (its top is {type(top).__name__}), so it "
            "cannot store tags: put Tags() on top with a Codec(..., tagged=True), or give a "
            "preset tags=True or a URL tags=1"
        )
    return top


def check_ttl(top: Any, ttl: float) -> None:
    """Raise unless ``ttl`` is a valid number of seconds that the stack of ``top`` honours."""
    checked_ttl(ttl)
    if not top.has_ttl():
        raise UnsupportedError(
            "this stack cannot expire entries (it lacks the 'ttl' capability): add an "
            "Expiry layer (or use a backend with native expiry) to use a per-key ttl"
        )


def checked_delta(delta: int) -> int:
    """``delta`` if it is an ``int`` (not a ``bool``); else ``NotAnIntegerError``."""
    if isinstance(delta, bool) or not isinstance(delta, int):
        raise NotAnIntegerError(f"delta must be an int, not {type(delta).__name__}")
    return delta


def increment(key: str, delta: int) -> Callable[[Any], int]:
    """The ``change`` that ``incr`` hands to ``modify``, its arguments checked first."""
    if type(key) is not str:
        raise not_a_str(key)
    return functools.partial(_increment, key, checked_delta(delta))


def _increment(key: str, delta: int, value: Any) -> int:
    """``value + delta`` for ``incr``: a missing value counts as 0."""
    if value is ABSENT:
        return delta
    if isinstance(value, bool) or not isinstance(value, int):
        raise NotAnIntegerError(
            f"cannot increment key {key!r}: its value is a {type(value).__name__}, not an int"
        )
    return int(value) + delta
