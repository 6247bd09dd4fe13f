"""Memory: a plain, unbounded in-process dictionary."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

from pystorage.layers.base import Backend


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Memory(Backend):
    """Keeps values in a ``dict`` of this process. Stores objects as they are (no copy)."""

    _data: dict[str, Any] = attrs.field(factory=dict, init=False, repr=False)

    def get(self, key: str) -> Any:
        return self._data[key]

    def lookup(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        if ttl is not None:
            self.refuse_ttl(ttl)
        self._data[key] = value

    def delete(self, key: str) -> None:
        del self._data[key]

    def contains(self, key: str) -> bool:
        return key in self._data

    def keys(self) -> Iterator[str]:
        # A snapshot: other threads may write while the caller iterates.
        return iter(list(self._data))

    def count(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        data = self._data
        return {key: data[key] for key in keys if key in data}

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        if ttl is not None:
            self.refuse_ttl(ttl)
        self._data.update(items)
