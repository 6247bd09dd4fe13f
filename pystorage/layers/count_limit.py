"""CountLimit: at most ``limit`` entries below, the least recently used removed first."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import attrs

from pystorage.layers.limit import Limit, positive


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class CountLimit(Limit):
    """Caps the number of entries of the layers below at ``limit``, on any backend.

    How it keeps the bound, and the ``eviction`` orders it offers, are ``Limit``'s.
    """

    measure: ClassVar[Literal["entries", "bytes"]] = "entries"

    limit: int = attrs.field(validator=positive)

    @property
    def bound(self) -> int:
        return self.limit

    def weigh(self, value: Any) -> int:
        return 1

    def weights_by_age(self) -> list[tuple[str, int]]:
        return [(key, 1) for key in self._inner.keys_by_age()]
