"""StorageProvider: presets, registration, codec swapping, and clear errors."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path
from typing import Any

import msgpack
import pytest

from pystorage import ServiceProvider, Storage, StorageProvider
from pystorage.errors import StorageProviderError
from pystorage.layers import LRU, Tier


def test_the_readme_import_path_and_alias() -> None:
    from pystorage.storage_provider import StorageProvider as FromModule

    assert FromModule is StorageProvider
    assert ServiceProvider is StorageProvider


def test_register_then_create_passes_arguments() -> None:
    class MyStorageService:
        def __init__(self, size: int) -> None:
            self.size = size

    provider = ServiceProvider().register("my.service", MyStorageService)
    service = provider.create("my.service", 5)
    assert isinstance(service, MyStorageService) and service.size == 5


def test_registering_does_not_leak_into_other_providers() -> None:
    StorageProvider().register("only.here", dict)
    with pytest.raises(StorageProviderError, match=r"unknown storage 'only\.here'"):
        StorageProvider().create("only.here")


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(StorageProviderError) as error:
        StorageProvider().create("nope")
    assert "json" in str(error.value) and "lru" in str(error.value)


def test_wrong_arguments_name_the_preset() -> None:
    with pytest.raises(StorageProviderError, match="cannot create 'json'"):
        StorageProvider().create(StorageProvider.STORAGE_JSON, colour="blue")


def test_every_preset_name_builds(
    redis_url: str, s3_options: dict[str, Any], s3_bucket: str
) -> None:
    provider = StorageProvider()
    arguments: dict[str, dict[str, Any]] = {
        StorageProvider.STORAGE_REDIS: {"url": redis_url, "prefix": "names:"},
        StorageProvider.STORAGE_REDIS_JSON: {"url": redis_url, "prefix": "names:"},
        StorageProvider.STORAGE_S3: {
            "bucket": s3_bucket,
            "folder": "names",
            "endpoint_url": s3_options["endpoint_url"],
            "region": s3_options["region_name"],
            "aws_access_key_id": s3_options["aws_access_key_id"],
            "aws_secret_access_key": s3_options["aws_secret_access_key"],
        },
    }
    for name in provider.names():
        storage = provider.create(name, **arguments.get(name, {}))
        assert isinstance(storage, Storage) and len(storage) == 0, name


def test_codec_swap_on_a_file_preset(tmp_path: Path) -> None:
    storage = StorageProvider().create(StorageProvider.STORAGE_JSON, path=tmp_path, codec="msgpack")
    storage["k"] = {"a": [1, 2]}
    assert storage["k"] == {"a": [1, 2]}
    raw = (tmp_path / "k.storage.json").read_bytes()
    assert msgpack.unpackb(raw) == {"a": [1, 2]}


def test_pickle_presets_write_what_they_say(tmp_path: Path) -> None:
    provider = StorageProvider()
    plain = provider.create(StorageProvider.STORAGE_PICKLE, path=tmp_path)
    plain["k"] = (1, "x")
    assert pickle.loads((tmp_path / "k.storage.pkl").read_bytes()) == (1, "x")
    packed = provider.create(StorageProvider.STORAGE_PICKLE_GZIP, path=tmp_path, compresslevel=1)
    packed["k"] = (2, "y")
    assert pickle.loads(gzip.decompress((tmp_path / "k.storage.pkl.gz").read_bytes())) == (2, "y")
    assert len(plain) == 1 and len(packed) == 1  # each counts its own suffix only
    with pytest.raises(StorageProviderError, match="not both"):
        provider.create(StorageProvider.STORAGE_PICKLE_GZIP, compresslevel=1, codec="pickle")


def test_lru_preset_sizes_and_tier() -> None:
    provider = StorageProvider()
    bounded = provider.create(StorageProvider.STORAGE_LRU, memory_blocks=2)
    for key in "abc":
        bounded[key] = key
    assert sorted(bounded) == ["b", "c"]
    with pytest.raises(StorageProviderError, match="not both"):
        provider.create(StorageProvider.STORAGE_LRU, maxsize=2, memory_blocks=2)
    slow = provider.create(StorageProvider.STORAGE_MEMORY)
    tiered = provider.create(StorageProvider.STORAGE_LRU, maxsize=1, storage=slow)
    assert isinstance(tiered, Storage) and isinstance(tiered.layers[0], Tier)
    assert isinstance(tiered.layers[0].front, LRU)
    tiered["a"] = 1
    tiered["b"] = 2
    assert slow == {"a": 1, "b": 2}
