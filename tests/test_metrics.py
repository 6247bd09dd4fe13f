"""Metrics export: a scrape through prometheus_client (over HTTP too) and a collection
through the OpenTelemetry SDK read the counters of real stacks."""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
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
from pystorage.errors import BackendError, ConfigurationError
from pystorage.layers import LRU, Codec, CountLimit, Files, Memory, SizeLimit, Stats, Timed
from pystorage.layers.timed import Histogram
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


def _collected(reader: InMemoryMetricReader) -> Iterator[tuple[str, Any]]:
    """Each data point the SDK collected now, with its metric's name."""
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    assert point.attributes  # every metric of ours names its storage
                    yield metric.name, point


def test_an_opentelemetry_collection_gives_each_storages_counters(tmp_path: Path) -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    instrument(_used(tmp_path), meter, entries=True)
    points = {
        (name, tuple(sorted(point.attributes.items()))): point.value
        for name, point in _collected(reader)
    }
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


class _Clock:
    """perf_counter for Timed: each operation takes ``step`` seconds (read at its start
    and at its end), so that which bucket it lands in is known."""

    def __init__(self, step: float) -> None:
        self.now, self.step, self.reads = 100.0, step, 0

    def __call__(self) -> float:
        self.reads += 1
        if self.reads % 2 == 0:  # the end of an operation
            self.now += self.step
        return self.now


class _Failing(Memory):
    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        raise BackendError(f"set {key!r}: the disk is full")


def test_timed_puts_each_operation_in_its_bucket_failures_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("pystorage.layers.timed.perf_counter", _Clock(0.003))
    timed = Timed(bounds=(0.001, 0.005, 0.1))
    storage = Storage(timed, Memory())
    storage["a"] = 1
    assert storage.get("a") == 1 and storage.get("b") is None  # a hit and a miss: two gets
    assert "a" in storage
    storage.incr("n")
    storage.set_many({"x": 1, "y": 2})
    del storage["x"]
    got = timed.histograms()
    assert set(got) == {"set", "get", "contains", "modify", "set_many", "delete"}
    assert got["get"] == Histogram((0.001, 0.005, 0.1), (0, 2, 0, 0), pytest.approx(0.006))
    assert got["set_many"].counts == (0, 1, 0, 0)
    failing = Timed(bounds=(0.001,))
    with pytest.raises(BackendError, match="disk is full"):
        Storage(failing, _Failing())["k"] = 1
    assert failing.histograms()["set"].counts == (0, 1)  # beyond the last bound: 0.003 s


@pytest.mark.parametrize("bounds", [(), (0.1, 0.01), (0.0,), (float("inf"),), (True,), ("1",)])
def test_timed_refuses_bounds_that_make_no_histogram(bounds: tuple[Any, ...]) -> None:
    with pytest.raises(ConfigurationError, match="bounds"):
        Timed(bounds=bounds)


def test_a_scrape_gives_the_durations_of_a_timed_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pystorage.layers.timed.perf_counter", _Clock(0.0002))
    storage = pystorage.open("memory://?stats=1&timed=1")
    assert [type(layer).__name__ for layer in storage.layers] == ["Stats", "Timed", "Memory"]
    plain = Storage(Stats(), Memory())
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StorageCollector({"timed": storage, "plain": plain}))
    storage["a"] = 1
    storage.get("a")
    storage.get("a")
    got = _scraped(registry)
    labels = (("le", "0.00025"), ("operation", "get"), ("storage", "timed"))
    assert got[("pystorage_operation_duration_seconds_bucket", labels)] == 2
    below = (("le", "0.0001"), ("operation", "get"), ("storage", "timed"))
    assert got[("pystorage_operation_duration_seconds_bucket", below)] == 0
    every = (("le", "+Inf"), ("operation", "set"), ("storage", "timed"))
    assert got[("pystorage_operation_duration_seconds_bucket", every)] == 1
    total = (
        "pystorage_operation_duration_seconds_sum",
        (("operation", "get"), ("storage", "timed")),
    )
    assert got[total] == pytest.approx(0.0004)
    assert not any(labels and ("storage", "plain") in labels and "duration" in name
                   for name, labels in got)  # fmt: skip


def test_an_opentelemetry_histogram_records_each_duration_from_then_on() -> None:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("test")
    storage = Storage(Stats(), Timed(), Memory())
    storage["before"] = 0  # before instrument: in the layer's histogram, not in the SDK's
    instrument({"cache": storage}, meter)
    storage["a"] = 1
    storage.get("a")
    storage.get("b")
    counts = {
        point.attributes["operation"]: point.count
        for name, point in _collected(reader)
        if name == "pystorage.operation.duration" and point.attributes["storage"] == "cache"
    }
    assert counts == {"set": 1, "get": 2}


def test_an_async_stack_times_its_awaited_operations() -> None:
    storage = AsyncStorage(Timed(), LRU(10))

    async def use() -> None:
        await storage.set("k", 1)
        assert await storage.get("k") == 1
        assert await storage.get_many(["k", "nope"]) == {"k": 1}

    asyncio.run(use())
    timed = next(layer for layer in storage.layers if isinstance(layer, Timed))
    assert type(timed).__name__ == "AsyncTimed"
    assert {name: sum(h.counts) for name, h in timed.histograms().items()} == {
        "set": 1,
        "get": 1,
        "get_many": 1,
    }


def test_the_bytes_held_are_a_gauge_where_a_layer_tallies_them(tmp_path: Path) -> None:
    sized = Storage(Stats(), Codec("pickle"), SizeLimit(10_000), Memory())
    sqlite = pystorage.open(f"sqlite://{tmp_path / 'c.db'}?limit=100")
    plain = Storage(Stats(), Memory())
    for storage in (sized, sqlite, plain):
        storage["a"] = "x" * 100
        storage["b"] = "y" * 50
    del sized["b"], sqlite["b"]
    expected = len(pickle.dumps("x" * 100))
    assert sized.top.gauges() == sqlite.top.gauges() == {"bytes": expected}
    assert plain.top.gauges() == {}  # memory keeps no tally: no gauge rather than a guess
    registry = CollectorRegistry(auto_describe=True)
    storages = {"sized": sized, "sqlite": sqlite, "plain": plain}
    registry.register(StorageCollector(storages))
    got = _scraped(registry)
    assert got[("pystorage_held_bytes", (("storage", "sized"),))] == expected
    assert got[("pystorage_held_bytes", (("storage", "sqlite"),))] == expected
    assert ("pystorage_held_bytes", (("storage", "plain"),)) not in got
    reader = InMemoryMetricReader()
    instrument(storages, MeterProvider(metric_readers=[reader]).get_meter("test"))
    held = {
        point.attributes["storage"]: point.value
        for name, point in _collected(reader)
        if name == "pystorage.held"
    }
    assert held == {"sized": expected, "sqlite": expected}
