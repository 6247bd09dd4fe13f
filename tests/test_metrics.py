"""Metrics export: a scrape through prometheus_client (over HTTP too) and a collection
through the OpenTelemetry SDK read the counters of real stacks."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from prometheus_client.parser import text_string_to_metric_families

import pystorage
from pystorage import Storage
from pystorage.aio.storage import AsyncStorage
from pystorage.errors import ConfigurationError
from pystorage.layers import LRU, Codec, CountLimit, Files, Memory, Stats
from pystorage.metrics.opentelemetry import instrument
from pystorage.metrics.prometheus import StorageCollector


def _used(tmp_path: Path) -> dict[str, Storage]:
    """Two storages with known counts: sessions 2 hits, 1 miss, 3 writes, 1 delete;
    pages over a count limit of 2 with 3 writes: 1 eviction."""
    sessions = Storage(Stats(), Memory())
    for key in "abc":
        sessions[key] = key
    sessions.get("a"), sessions.get("b"), sessions.get("nope")
    del sessions["c"]
    pages = Storage(Stats(), CountLimit(2), Codec("pickle"), Files(tmp_path / "pages"))
    for key in "xyz":
        pages[key] = key
    return {"sessions": sessions, "pages": pages}


def _scraped(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_prometheus_scrape_gives_each_storages_counters(tmp_path: Path) -> None:
    storages = _used(tmp_path)
    registry = CollectorRegistry()
    registry.register(StorageCollector(storages, entries=True))
    got = _scraped(registry)
    assert got[("pystorage_reads_total", (("outcome", "hit"), ("storage", "sessions")))] == 2
    assert got[("pystorage_reads_total", (("outcome", "miss"), ("storage", "sessions")))] == 1
    assert got[("pystorage_writes_total", (("storage", "sessions"),))] == 3
    assert got[("pystorage_deletes_total", (("storage", "sessions"),))] == 1
    assert got[("pystorage_writes_total", (("storage", "pages"),))] == 3
    assert got[("pystorage_evictions_total", (("storage", "pages"),))] == 1
    assert got[("pystorage_entries", (("storage", "sessions"),))] == 2
    assert got[("pystorage_entries", (("storage", "pages"),))] == 2
    # Read at each scrape: later operations show in the next one.
    storages["sessions"].get("a")
    again = _scraped(registry)
    assert again[("pystorage_reads_total", (("outcome", "hit"), ("storage", "sessions")))] == 3


def test_a_scrape_over_http_reads_the_counters(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    registry.register(StorageCollector(_used(tmp_path)))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        port = server.server_address[1]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as reply:
            text = reply.read().decode()
    finally:
        server.shutdown()
        thread.join(30)
    assert 'pystorage_reads_total{outcome="miss",storage="sessions"} 1.0' in text
    assert 'pystorage_evictions_total{storage="pages"} 1.0' in text
    assert "pystorage_entries" not in text  # not asked for: no count below at each scrape


def test_an_opentelemetry_collection_gives_each_storages_counters(tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    instrument(_used(tmp_path), meter, entries=True)
    points: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    labels = tuple(sorted((point.attributes or {}).items()))
                    points[(metric.name, labels)] = point.value
    assert points[("pystorage.reads", (("outcome", "hit"), ("storage", "sessions")))] == 2
    assert points[("pystorage.reads", (("outcome", "miss"), ("storage", "sessions")))] == 1
    assert points[("pystorage.evictions", (("storage", "pages"),))] == 1
    assert points[("pystorage.entries", (("storage", "pages"),))] == 2


def test_an_async_storage_is_exported_and_a_bad_registration_refused(tmp_path: Path) -> None:
    async_storage = AsyncStorage(Stats(), LRU(10))

    async def use() -> None:
        await async_storage.set("k", 1)
        await async_storage.get("k")

    asyncio.run(use())
    registry = CollectorRegistry()
    registry.register(StorageCollector({"async": async_storage}))
    got = _scraped(registry)
    assert got[("pystorage_reads_total", (("outcome", "hit"), ("storage", "async")))] == 1
    with pytest.raises(ConfigurationError, match="entries=True counts with len"):
        StorageCollector({"async": async_storage}, entries=True)
    with pytest.raises(ConfigurationError, match="non-empty str"):
        StorageCollector({"": Storage(Memory())})
    with pytest.raises(ConfigurationError, match="no stats"):
        StorageCollector({"x": object()})  # type: ignore[dict-item]


def test_a_url_with_stats_is_exported_without_a_stats_layer_by_hand() -> None:
    storage = pystorage.open("memory://?stats=1&lru=10")
    storage["a"] = 1
    registry = CollectorRegistry()
    registry.register(StorageCollector({"cache": storage}))
    assert _scraped(registry)[("pystorage_writes_total", (("storage", "cache"),))] == 1


def test_importing_pystorage_loads_no_metrics_library() -> None:
    code = (
        "import sys, pystorage; print(any(m.split('.')[0] in "
        "('prometheus_client', 'opentelemetry') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_registering_reads_no_storage_and_a_scrape_reads_each_once() -> None:
    class Watched(Storage):
        reads = 0

        def stats(self) -> dict[str, int]:
            Watched.reads += 1
            return super().stats()

        def __len__(self) -> int:
            Watched.reads += 1000
            return super().__len__()

    watched = Watched(Stats(), Memory())
    registry = CollectorRegistry(auto_describe=True)  # as prometheus_client's REGISTRY
    registry.register(StorageCollector({"watched": watched}, entries=True))
    assert Watched.reads == 0  # describe() named the metrics without reading anything
    _scraped(registry)
    assert Watched.reads == 1001  # one stats() and one len() per scrape
