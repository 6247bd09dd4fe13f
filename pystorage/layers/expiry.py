"""Expiry: entries that disappear ``ttl`` seconds after they were written."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs

from pystorage.errors import ConfigurationError
from pystorage.layers.base import Layer, Wrapper, checked_ttl, stack_from


def _optional_ttl(_: object, attribute: attrs.Attribute[float | None], value: object) -> None:
    if value is not None:
        checked_ttl(value, attribute.name)


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Expiry(Wrapper):
    """Entries expire ``ttl`` seconds after they are written (``ttl=None``: only those
    written with ``set(key, value, ttl=...)``).

    The deadline is kept by the backend, outside the value: Redis expires keys itself,
    ``Memory`` and ``LRU`` keep it beside the value, ``Files`` in a header that the
    file's mode marks, ``S3`` in the object's metadata. So a deadline holds across
    processes and restarts, every reader of the backend honours it, and no value a user
    writes can be taken for one. This layer gives every write its default ``ttl``, an
    ``add`` and an entry that ``incr`` creates included; ``incr`` of an existing entry
    changes its value, not its deadline.

    ``clock`` (seconds since the epoch) is for tests: it replaces the clock of every
    backend below that keeps deadlines in this process; a server's clock cannot be.
    """

    supports_ttl: ClassVar[bool] = True
    #: What this layer lets expire below would still be served by a ``Tier`` above it.
    removes_entries: ClassVar[bool] = True

    ttl: float | None = attrs.field(default=None, validator=_optional_ttl)
    clock: Callable[[], float] | None = attrs.field(default=None, repr=False)

    def link(self, inner: Layer) -> None:
        bottom = list(stack_from(inner))[-1]
        if not bottom.has_ttl():
            raise ConfigurationError(
                f"{type(bottom).__name__} cannot keep deadlines (it lacks the 'ttl' "
                "capability), so Expiry cannot sit above it"
            )
        if self.clock is not None:
            below = [*stack_from(inner)]
            below += [front for layer in below if (front := getattr(layer, "front", None))]
            clocked = [layer for layer in below if hasattr(layer, "clock")]
            if not any(layer is bottom for layer in clocked):
                raise ConfigurationError(
                    f"{type(bottom).__name__} expires entries by its own clock: a clock "
                    "cannot be given here"
                )
            for layer in clocked:
                object.__setattr__(layer, "clock", self.clock)
        super().link(inner)

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self._inner.set(key, value, self.ttl if ttl is None else ttl)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        return self._inner.add(key, value, self.ttl if ttl is None else ttl)

    def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        # The TTL of an entry the change creates; an existing one keeps its deadline.
        return self._inner.modify(key, change, self.ttl if ttl is None else ttl)

    def counters(self) -> dict[str, int]:
        counts = self._inner.counters()
        counts.setdefault("expirations", 0)  # counted by the backends that remove them
        return counts

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        self._inner.set_many(items, self.ttl if ttl is None else ttl)
