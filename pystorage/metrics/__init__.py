"""Metrics export: the counters of ``storage.stats()`` for Prometheus and OpenTelemetry.

Both exporters read the counters when the metrics are collected (a scrape, an export
interval), so an application pays nothing per operation beyond the ``Stats`` layer's
counting, and nothing at all where no exporter is set up: this package and the client
libraries are imported only by those who use them.

- ``pystorage.metrics.prometheus.StorageCollector`` (``pip install
  'pystorage-layers[prometheus]'``): a collector to register with prometheus_client.
- ``pystorage.metrics.opentelemetry.instrument`` (``pip install
  'pystorage-layers[opentelemetry]'``): observable counters on an OpenTelemetry meter.

Each storage is labelled by the name it is registered under. ``METRICS`` lists what is
exported; counters a layer adds that it does not list are exported too, as
``pystorage_<counter>_total``. A stack with a ``Timed`` layer also has its operations'
durations exported, as the histogram ``DURATIONS`` labelled by operation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, NamedTuple, Protocol

if TYPE_CHECKING:
    from pystorage.layers.timed import Histogram, Timed


class Metric(NamedTuple):
    """One exported counter: its name (Prometheus's, without ``_total``; OpenTelemetry's
    is the same with dots), the labels that tell it from its kin, and what it counts."""

    name: str
    labels: tuple[tuple[str, str], ...]
    unit: str
    help: str


#: Each counter of ``storage.stats()`` with the metric it is exported as.
METRICS: dict[str, Metric] = {
    "hits": Metric(
        "pystorage_reads", (("outcome", "hit"),), "", "Reads, by whether they found the key"
    ),
    "misses": Metric(
        "pystorage_reads", (("outcome", "miss"),), "", "Reads, by whether they found the key"
    ),
    "writes": Metric("pystorage_writes", (), "", "Values written (set, add that stored, incr)"),
    "deletes": Metric("pystorage_deletes", (), "", "Keys deleted"),
    "bytes_read": Metric("pystorage_read", (), "bytes", "Bytes of encoded values read"),
    "bytes_written": Metric("pystorage_written", (), "bytes", "Bytes of encoded values written"),
    "evictions": Metric("pystorage_evictions", (), "", "Entries removed to keep a bound"),
    "expirations": Metric("pystorage_expirations", (), "", "Entries removed at their deadline"),
    "refused": Metric(
        "pystorage_refused_admissions", (), "", "New keys that W-TinyLFU did not admit"
    ),
}

#: The gauge of entries, exported with ``entries=True``.
ENTRIES = Metric("pystorage_entries", (), "", "Entries held (len(storage): a count below)")
#: Each gauge of a stack's ``gauges()`` (what a layer tallies) with its metric.
GAUGES: dict[str, Metric] = {
    "bytes": Metric(
        "pystorage_held",
        (),
        "bytes",
        "Bytes of encoded values held, where a layer tallies them",
    ),
}


#: The histogram of a ``Timed`` layer's durations (seconds), labelled ``operation``.
DURATIONS = Metric(
    "pystorage_operation_duration", (), "seconds", "Time taken by each operation of a storage"
)


def metric_of(counter: str) -> Metric:
    """The metric a counter is exported as (one of ``METRICS``, or a name from its own)."""
    known = METRICS.get(counter)
    if known is not None:
        return known
    return Metric(f"pystorage_{counter}", (), "", f"The {counter!r} counter of storage.stats()")


class Counted(Protocol):
    """What an exporter reads: a ``Storage`` or an ``AsyncStorage`` (``stats()`` is sync;
    the gauges come from the ``top`` layer's ``gauges()`` where there is one)."""

    def stats(self) -> dict[str, int]: ...


def samples(storages: Mapping[str, Counted], entries: bool) -> Iterator[tuple[Metric, str, int]]:
    """Each metric of each storage now: (metric, the storage's name, value)."""
    for name, storage in storages.items():
        for counter, value in storage.stats().items():
            yield metric_of(counter), name, value
        top = getattr(storage, "top", None)
        for gauge, value in (top.gauges() if top is not None else {}).items():
            if gauge in GAUGES:  # a gauge of a layer of one's own: not yet exported
                yield GAUGES[gauge], name, value
        if entries:
            yield ENTRIES, name, len(storage)  # type: ignore[arg-type]  # checked: a Storage


def timed_layer(storage: Counted) -> Timed | None:
    """The topmost ``Timed`` layer of a storage's stack, if it has one."""
    from pystorage.layers.timed import Timed

    for layer in getattr(storage, "layers", ()):
        if isinstance(layer, Timed):
            return layer
    return None


def durations(storages: Mapping[str, Counted]) -> Iterator[tuple[str, str, Histogram]]:
    """Each timed operation of each storage with a ``Timed`` layer: (the storage's name,
    the operation, its histogram)."""
    for name, storage in storages.items():
        timed = timed_layer(storage)
        if timed is not None:
            for operation, histogram in timed.histograms().items():
                yield name, operation, histogram


def checked(storages: Mapping[str, Counted], entries: bool) -> dict[str, Counted]:
    """The storages by name, checked before anything is registered: a name is a
    non-empty str; ``entries=True`` counts with ``len()``, which only a ``Storage`` has
    without an event loop."""
    from pystorage.errors import ConfigurationError
    from pystorage.storage import Storage

    for name, storage in storages.items():
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"a storage's metrics name is a non-empty str, not {name!r}")
        if not callable(getattr(storage, "stats", None)):
            raise ConfigurationError(f"{name!r}: {storage!r} has no stats() to export")
        if entries and not isinstance(storage, Storage):
            raise ConfigurationError(
                f"{name!r}: entries=True counts with len(), which needs a Storage (an "
                "AsyncStorage counts on its event loop); export the Storage it was built from"
            )
    return dict(storages)
