"""SizeLimit: at most ``max_bytes`` of stored values below, least recently used removed first."""

from __future__ import annotations

from typing import ClassVar, Literal

import attrs

from pystorage.layers.base import ValueKind
from pystorage.layers.limit import Limit, positive


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class SizeLimit(Limit):
    """Caps the total size of the values below at ``max_bytes``, on any backend.

    It sits below a ``Codec``: the size of an entry is the length of its encoded value
    as stored (keys, deadlines and the backend's own overhead are not counted). A value
    longer than ``max_bytes`` is refused with ``ValueTooLargeError``, and nothing is
    written. How it keeps the bound, and the ``eviction`` orders it offers, are
    ``Limit``'s.
    """

    accepts: ClassVar[ValueKind] = "bytes"
    measure: ClassVar[Literal["entries", "bytes"]] = "bytes"

    max_bytes: int = attrs.field(validator=positive)

    @property
    def bound(self) -> int:
        return self.max_bytes

    def weigh(self, value: bytes) -> int:
        return len(value)

    def weights_by_age(self) -> list[tuple[str, int]]:
        return self._inner.sizes_by_age()
