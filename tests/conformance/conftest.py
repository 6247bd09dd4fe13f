"""The random-operation runs over S3 (30 storages of round trips each, about a minute in
all) run in ``make test-long``; every other conformance test of the S3 stacks runs in
``make test``."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if (
            item.name.startswith("test_random_operations_match_a_dict[")
            and callspec is not None
            and str(callspec.params.get("factory", "")).removeprefix("async-").startswith("s3")
        ):
            item.add_marker(pytest.mark.long)
