"""The conformance suite shipped in the package (pystorage.conformance), run on a user's
own layers, sync and async, in one call."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from pystorage.conformance import check
from pystorage.errors import ConfigurationError
from pystorage.layers import Codec, Expiry, Files, Memory, Wrapper
from tests.user_layers import DictBackend, Envelope, HitCount, SlowLog

EVERY_CHECK = ["mapping", "random operations against a dict", "hostile keys", "ttl", "atomic"]


def test_the_three_wrappers_over_the_short_backend_pass_and_ttl_is_skipped_with_why() -> None:
    report = check(lambda: [SlowLog(threshold=60), Envelope(), HitCount(), DictBackend()])
    assert report.ok, str(report)
    kinds = ("sync", "async")
    assert sorted(report.passed) == sorted(
        f"{kind} {name}" for kind in kinds for name in EVERY_CHECK if name != "ttl"
    )
    assert sorted(report.skipped) == ["async ttl", "sync ttl"]
    assert "lacks the 'ttl' capability" in report.skipped["sync ttl"]
    assert list(report.lacking) == ["ttl", "tags"]  # it keeps no tags' tokens either


def test_a_backend_of_the_core_alone_skips_the_atomic_checks_too() -> None:
    from tests.test_protocol import Plain

    report = check(lambda: [Plain()]).assert_ok()
    assert "'atomic' capability (add, modify)" in report.skipped["async atomic"]
    assert sorted(report.lacking) == ["atomic", "tags", "ttl"]


def test_the_wrappers_over_library_backends_pass_every_check(tmp_path: Path) -> None:
    for make in (
        lambda: [SlowLog(threshold=60), Envelope(), HitCount(), Memory()],
        lambda: [Expiry(), Envelope(), Codec("json"), Files(tmp_path / "f")],
    ):
        report = check(make).assert_ok()
        assert len(report.passed) == 2 * len(EVERY_CHECK) and not report.skipped


def test_a_wrapper_that_forgets_an_operation_fails_the_suite_naming_the_check() -> None:
    @attrs.define(eq=False)
    class Forgetful(Envelope):
        def lookup(self, key: str, default: Any = None) -> Any:
            return self._inner.lookup(key, default)  # the envelope is not opened

    report = check(lambda: [Forgetful(), Memory()])
    assert not report.ok
    assert "sync mapping" in report.failed and "async mapping" in report.failed
    assert "reads back as written" in report.failed["sync mapping"]
    with pytest.raises(AssertionError, match="FAILED sync mapping"):
        report.assert_ok()


def test_a_stack_whose_twin_cannot_be_made_fails_its_async_checks_with_the_reason() -> None:
    @attrs.define(eq=False)
    class Mapped(Wrapper):
        def get_many(self, keys: Any) -> Any:
            return {key: self._inner.get(key) for key in keys if self._inner.contains(key)}

        def delete_many(self, keys: Any) -> None:
            list(map(lambda key: self._inner.delete_many([key]), keys))

    report = check(lambda: [Mapped(), Memory()])
    assert "sync mapping" in report.passed
    assert "cannot make the async twin" in report.failed["async mapping"]


def test_called_from_a_coroutine_it_says_to_run_it_in_a_thread() -> None:
    def make() -> list[Any]:
        return [Envelope(), DictBackend()]

    async def inside() -> None:
        check(make)

    with pytest.raises(ConfigurationError, match=r"asyncio\.to_thread"):
        asyncio.run(inside())
    assert asyncio.run(asyncio.to_thread(check, make)).ok


def test_the_suite_imports_without_pytest() -> None:
    code = "import sys; sys.modules['pytest'] = None; import pystorage.conformance"
    subprocess.run([sys.executable, "-c", code], check=True)
