"""A mapping over an AsyncStorage, so that the sync conformance suite runs on async stacks.

Each operation is one awaited call of the AsyncStorage, run to completion on an event
loop of this view's: the suite checks the async stack's answers, not this view's.

A *crowded* view (Redis only) issues two other commands just before each operation, so
that the operation's first command goes to the server in a pipeline with another
caller's (autopipelining's path under load), not alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable, Iterator, Mapping, MutableMapping
from typing import Any, TypeVar

from pystorage.aio.storage import AsyncStorage
from pystorage.errors import not_a_str

T = TypeVar("T")
_MISSING: Any = object()
#: What a crowded view's other commands read: a name that is never an entry (0xFF is in
#: no key's UTF-8).
_NOISE = b"\xffconformance-noise"


class AsyncView(MutableMapping[str, Any]):
    """``Storage``'s interface, each call awaited on the AsyncStorage beneath."""

    def __init__(self, storage: AsyncStorage, sync_backend: Any, crowded: bool = False) -> None:
        self.storage = storage
        self.sync_backend = sync_backend  # the backend the async one was made from
        self.loop = asyncio.new_event_loop()
        self.crowded = crowded

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        if self.crowded:
            return self.loop.run_until_complete(self._in_a_crowd(work))
        return self.loop.run_until_complete(work)

    async def _in_a_crowd(self, work: Coroutine[Any, Any, T]) -> T:
        client = self.storage.layers[-1].client
        # The first goes at once; the second, then the operation's first command,
        # wait for it and go together, as one pipeline.
        others = [asyncio.ensure_future(client.get(_NOISE)) for _ in range(2)]
        await asyncio.sleep(0)
        try:
            return await work
        finally:
            await asyncio.gather(*others)

    @property
    def layers(self) -> tuple[Any, ...]:
        """The layers, the backend's sync object last (as tests that inspect it expect)."""
        return (*self.storage.layers[:-1], self.sync_backend)

    def __getitem__(self, key: str) -> Any:
        value = self._run(self.storage.get(key, _MISSING))
        if value is _MISSING:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: Any) -> None:
        self._run(self.storage.set(key, value))

    def __delitem__(self, key: str) -> None:
        self._run(self.storage.delete(key))

    def __contains__(self, key: object) -> bool:
        if type(key) is not str:
            return False
        return self._run(self.storage.contains(key))

    def __iter__(self) -> Iterator[str]:
        async def listed() -> list[str]:
            return [key async for key in self.storage]

        return iter(self._run(listed()))

    def __len__(self) -> int:
        return self._run(self.storage.count())

    def get(self, key: str, default: Any = None) -> Any:
        return self._run(self.storage.get(key, default))

    def set(self, key: str, value: Any, ttl: float | None = None, tags: Any = None) -> None:
        if type(key) is not str:
            raise not_a_str(key)
        self._run(self.storage.set(key, value, ttl, tags))

    def add(self, key: str, value: Any, ttl: float | None = None, tags: Any = None) -> bool:
        return self._run(self.storage.add(key, value, ttl, tags))

    def invalidate_tag(self, tag: str) -> None:
        self._run(self.storage.invalidate_tag(tag))

    def snapshot_tags(self, tags: Any) -> Any:
        return self._run(self.storage.snapshot_tags(tags))

    def expire(self) -> int:
        return self._run(self.storage.expire())

    def incr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        return self._run(self.storage.incr(key, delta, ttl))

    def decr(self, key: str, delta: int = 1, ttl: float | None = None) -> int:
        return self._run(self.storage.decr(key, delta, ttl))

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        return self._run(self.storage.get_with_ttl(key))

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return self._run(self.storage.get_many(keys))

    def get_many_with_ttl(self, keys: Iterable[str]) -> dict[str, tuple[Any, float | None]]:
        return self._run(self.storage.get_many_with_ttl(keys))

    def set_many(
        self, items: Mapping[str, Any], ttl: float | None = None, tags: Any = None
    ) -> None:
        self._run(self.storage.set_many(items, ttl, tags))

    def delete_many(self, keys: Iterable[str]) -> None:
        self._run(self.storage.delete_many(keys))

    def clear(self) -> None:
        self._run(self.storage.clear())

    def stats(self) -> dict[str, int]:
        return self.storage.stats()

    def close(self) -> None:
        if not self.loop.is_closed():
            self._run(self.storage.aclose())
            self.loop.close()

    def __enter__(self) -> AsyncView:
        return self

    def __exit__(self, *details: object) -> None:
        self.close()
