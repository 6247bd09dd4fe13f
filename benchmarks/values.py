"""Values of a given encoded size, the same in every run."""

from __future__ import annotations

import functools
import itertools
import json
from typing import Any


def record_of_size(size: int) -> dict[str, Any]:
    """A small dict whose JSON is about ``size`` bytes (a string field pads it)."""
    record: dict[str, Any] = {"id": 12345, "name": "benchmark", "ok": True, "payload": ""}
    padding = max(size - len(json.dumps(record)), 0)
    record["payload"] = ("lorem ipsum dolor sit amet " * (padding // 27 + 1))[:padding]
    return record


@functools.cache
def _document(size: int) -> str:
    items: list[dict[str, Any]] = []
    doc: dict[str, Any] = {"version": 3, "source": "benchmark", "items": items}
    length = len(json.dumps(doc))
    while length < size:
        i = len(items)
        item = {
            "id": i,
            "name": f"item-{i}",
            "price": round(i * 1.37, 2),
            "tags": ["red", "large"] if i % 2 else ["blue"],
            "active": i % 3 == 0,
        }
        items.append(item)
        length += len(json.dumps(item)) + (2 if i else 0)  # ", " between items
    return json.dumps(doc)


def document(size: int) -> dict[str, Any]:
    """A nested dict of about ``size`` bytes of JSON: a list of records with mixed types."""
    doc: dict[str, Any] = json.loads(_document(size))
    return doc


class Versions:
    """Fresh copies of a record, each with an ``id`` of its own (all of the same width).

    Sets that overwrite a key with the bytes it already holds measure less than a write:
    SQLite leaves a page unwritten when an update leaves its bytes as they were, so such a
    set commits nothing. Every call returns values never handed out before.
    """

    def __init__(self, record: dict[str, Any]) -> None:
        self.record = record
        self.numbers = itertools.count(1_000_000_000)

    def __call__(self, count: int) -> list[dict[str, Any]]:
        return [dict(self.record, id=n) for n in itertools.islice(self.numbers, count)]
