"""One longest TTL for every backend, refused at the check (issue 17, item 9): ``ttl=1e300``
was accepted, then every Redis write of it failed with BackendError while Files, SQLite
and Memory took it."""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path

import pytest

import pystorage
from pystorage import AsyncStorage, Storage, StorageProvider
from pystorage.errors import ConfigurationError
from pystorage.layers import Codec, Expiry, Memory
from pystorage.layers.base import MAX_TTL, Backend
from tests.test_atomic import BACKENDS, Place

#: The message every check of a TTL gives, whatever the backend or the way in.
REFUSED = re.escape(f"must be a finite number of seconds above 0 and at most {MAX_TTL} (100 years)")
TOO_LONG = [MAX_TTL + 1, 1e300, math.inf, math.nan]


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    made = BACKENDS[request.param](Place(tmp_path / "store", request))
    request.addfinalizer(made.close)
    return made


def test_the_longest_ttl_is_one_round_figure() -> None:
    assert MAX_TTL == 100 * 365.25 * 24 * 3600


@pytest.mark.parametrize("ttl", TOO_LONG)
def test_a_ttl_beyond_the_longest_is_refused_before_anything_is_written(
    backend: Backend, ttl: float
) -> None:
    storage = Storage(Codec("pickle"), backend)
    with pytest.raises(ConfigurationError, match=REFUSED):
        storage.set("k", 1, ttl=ttl)
    with pytest.raises(ConfigurationError, match=REFUSED):
        storage.set_many({"k": 1}, ttl=ttl)
    with pytest.raises(ConfigurationError, match=REFUSED):
        storage.add("k", 1, ttl=ttl)
    with pytest.raises(ConfigurationError, match=REFUSED):
        storage.incr("n", ttl=ttl)
    with pytest.raises(ConfigurationError, match=REFUSED):
        Expiry(ttl)
    with pytest.raises(ConfigurationError, match=REFUSED):
        storage.memoize(ttl=ttl)
    assert len(storage) == 0

    async def awaited() -> None:
        refused = AsyncStorage(Codec("pickle"), backend)
        with pytest.raises(ConfigurationError, match=REFUSED):
            await refused.set("k", 1, ttl=ttl)
        with pytest.raises(ConfigurationError, match=REFUSED):
            await refused.set_many({"k": 1}, ttl=ttl)
        with pytest.raises(ConfigurationError, match=REFUSED):
            await refused.add("k", 1, ttl=ttl)
        with pytest.raises(ConfigurationError, match=REFUSED):
            await refused.incr("n", ttl=ttl)

    asyncio.run(awaited())
    assert len(storage) == 0


def test_the_longest_ttl_is_held_by_every_backend(backend: Backend) -> None:
    storage = Storage(Codec("pickle"), backend)
    storage.set("set", "v", ttl=MAX_TTL)
    storage.set_many({"many": "v"}, ttl=MAX_TTL)
    assert storage.add("add", "v", ttl=MAX_TTL) is True
    assert storage.incr("incr", ttl=MAX_TTL) == 1
    for key in ("set", "many", "add", "incr"):
        _, left = storage.get_with_ttl(key)
        assert left is not None and MAX_TTL - 600 < left <= MAX_TTL, key
    with_expiry = Storage(Expiry(MAX_TTL), Codec("pickle"), backend)
    with_expiry["default"] = "v"
    assert with_expiry.get_with_ttl("default")[1] is not None


def test_presets_and_urls_give_the_same_message() -> None:
    for make in (
        lambda: pystorage.open("memory://?ttl=1e300"),
        lambda: pystorage.open(f"memory://?ttl={MAX_TTL + 1}"),
        lambda: StorageProvider().create("volatile", expiration=1e300),
        lambda: StorageProvider().create("redis", url="redis://localhost", expiration=1e300),
        lambda: Storage(Expiry(1e300), Memory()),
    ):
        with pytest.raises(ConfigurationError, match=REFUSED):
            make()
    expiry = pystorage.open(f"memory://?ttl={MAX_TTL}").layers[0]
    assert isinstance(expiry, Expiry) and expiry.ttl == MAX_TTL
