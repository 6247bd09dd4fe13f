"""``storage.memoize()``: cache a function's results in any storage, computing each once."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

if TYPE_CHECKING:
    from pystorage.storage import Storage

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Memoized(Protocol[P, R_co]):
    """A memoized function, with ways to forget what it cached."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str: ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None: ...
    def cache_clear(self) -> None: ...


def call_key(prefix: str, args: tuple[Any, ...], kwargs: dict[str, Any], typed: bool) -> str:
    """A key that is the same in every process for equal arguments (by their ``repr``)."""
    parts = [repr(args), repr(sorted(kwargs.items()))]
    if typed:
        parts.append(repr([type(arg).__qualname__ for arg in (*args, *kwargs.values())]))
    digest = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()
    return f"{prefix}{digest[:32]}"


def memoize(
    storage: Storage,
    ttl: float | None = None,
    key: str | None = None,
    typed: bool = False,
) -> Callable[[Callable[P, R]], Memoized[P, R]]:
    """See ``memoize``."""

    def decorate(function: Callable[P, R]) -> Memoized[P, R]:
        prefix = (key or f"{function.__module__}.{function.__qualname__}") + ":"
        lock = storage.top.key_lock

        @functools.wraps(function)
        def memoized(*args: P.args, **kwargs: P.kwargs) -> R:
            name = call_key(prefix, args, kwargs, typed)
            try:
                cached: R = storage[name]
                return cached
            except KeyError:
                pass
            # Concurrent callers that missed wait here; the first computes, the rest read.
            with lock(name):
                try:
                    cached = storage[name]
                    return cached
                except KeyError:
                    pass
                value = function(*args, **kwargs)
                storage.set(name, value, ttl=ttl)
                return value

        def cache_key(*args: P.args, **kwargs: P.kwargs) -> str:
            return call_key(prefix, args, kwargs, typed)

        def invalidate(*args: P.args, **kwargs: P.kwargs) -> None:
            storage.delete_many([call_key(prefix, args, kwargs, typed)])

        def cache_clear() -> None:
            storage.delete_many([name for name in storage if name.startswith(prefix)])

        memoized.cache_key = cache_key  # type: ignore[attr-defined]
        memoized.invalidate = invalidate  # type: ignore[attr-defined]
        memoized.cache_clear = cache_clear  # type: ignore[attr-defined]
        return memoized  # type: ignore[return-value]

    return decorate
