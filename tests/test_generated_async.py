"""The async twins are generated from the sync layers; CI fails while they differ."""

from __future__ import annotations

import runpy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_async_layers_are_generated_from_the_current_sync_layers() -> None:
    generator = runpy.run_path(str(ROOT / "tools" / "generate_async.py"))
    committed = (ROOT / "pystorage" / "aio" / "layers.py").read_text()
    assert committed == generator["generate"](), "run `make generate` and commit the result"
