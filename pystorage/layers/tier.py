"""Tier: a fast storage in front of a slower one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from pystorage.errors import ConfigurationError
from pystorage.layers.base import Layer, ValueKind, Wrapper, stack_from


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Tier(Wrapper):
    """Serves reads from ``front`` (e.g. ``LRU(1000)``), falling back to the layer below.

    A read that misses in front reads through and keeps the value in front; a write goes
    below first, then to front; a delete removes from both. The layer below stays the
    truth: ``len``, iteration and ``in`` ask it. Another process writing the same storage
    below is not seen until the key leaves ``front``. Put it below ``CountLimit`` and
    ``Expiry``, never above: what they remove would still be served from the front.
    """

    front: Layer

    def link(self, inner: Layer) -> None:
        for below in stack_from(inner):
            if below.removes_entries:
                raise ConfigurationError(
                    f"Tier cannot sit above {type(below).__name__}: entries it removes "
                    f"would still be read from the front. Put {type(below).__name__} above "
                    "the Tier instead."
                )
        super().link(inner)

    def value_kind_below(self, above: ValueKind) -> ValueKind:
        if self.front.accepts == "bytes" and above != "bytes":
            raise ConfigurationError(
                f"the front of this Tier, {type(self.front).__name__}, stores bytes: put "
                "the Tier below a Codec layer"
            )
        return above

    def get(self, key: str) -> Any:
        try:
            return self.front.get(key)
        except KeyError:
            pass
        value = self._inner.get(key)
        self.front.set(key, value)
        return value

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self._inner.set(key, value, ttl)
        if ttl is None:
            self.front.set(key, value)
        else:
            # The front cannot expire entries itself: keep it from outliving the TTL.
            self._forget(key)

    def delete(self, key: str) -> None:
        self._forget(key)
        self._inner.delete(key)

    def clear(self) -> None:
        self.front.clear()
        self._inner.clear()

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(keys)
        found = self.front.get_many(keys)
        missing = [key for key in keys if key not in found]
        if missing:
            below = self._inner.get_many(missing)
            self.front.set_many(below)
            found.update(below)
        return found

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        self._inner.set_many(items, ttl)
        if ttl is None:
            self.front.set_many(items)
        else:
            self.front.delete_many(items)

    def delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        self.front.delete_many(keys)
        self._inner.delete_many(keys)

    def close(self) -> None:
        self.front.close()
        self._inner.close()

    def _forget(self, key: str) -> None:
        try:
            self.front.delete(key)
        except KeyError:
            pass
