"""The async twins are generated from the sync layers, and the Django backend's async API
from its sync methods; CI fails while they differ."""

from __future__ import annotations

import ast
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_async_layers_are_generated_from_the_current_sync_layers() -> None:
    generator = runpy.run_path(str(ROOT / "tools" / "generate_async.py"))
    committed = (ROOT / "pystorage" / "aio" / "layers.py").read_text()
    assert committed == generator["generate"](), "run `make generate` and commit the result"


def test_the_django_async_api_is_generated_from_the_current_sync_methods() -> None:
    generator = runpy.run_path(str(ROOT / "tools" / "generate_django_async.py"))
    committed = (ROOT / "pystorage" / "contrib" / "django.py").read_text()
    assert committed == generator["generate"](), "run `make generate` and commit the result"


def test_a_sync_method_that_reaches_the_storage_another_way_is_refused() -> None:
    # The rules name what they translate: anything else stops the generator, rather than
    # leaving a sync call on the Storage inside an async method.
    generator = runpy.run_path(str(ROOT / "tools" / "generate_django_async.py"))
    method = ast.parse(
        "def pop(self, key):\n    return self._storage.pop(key) if len(self._storage) else None"
    ).body[0]
    with pytest.raises(SystemExit, match=r"pop: reaches self\._storage"):
        generator["twin"](method)
    plain = ast.parse("def get(self, key):\n    return key in self._storage").body[0]
    assert "await self._async.contains(key)" in ast.unparse(generator["twin"](plain))
