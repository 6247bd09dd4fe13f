"""Small things several test modules need."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pystorage import Storage, StorageProvider


def unique(prefix: str) -> str:
    """A name no other test (or example) uses."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


class FakeClock:
    """Seconds since the epoch that only move when a test says so."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class DiskStack:
    """A file preset, with the suffix that tells its entry files in the folder."""

    preset: str
    suffix: str
    limit: int = 0  # 0: no limit

    def open(self, folder: Path) -> Storage:
        options: dict[str, Any] = {"path": folder}
        if self.limit:
            options["limit"] = self.limit
        storage: Storage = StorageProvider().create(self.preset, **options)
        return storage
