"""Prometheus: a collector of PyStorage's counters for ``prometheus_client``.

::

    from prometheus_client import REGISTRY
    from pystorage.metrics.prometheus import StorageCollector

    REGISTRY.register(StorageCollector({"sessions": sessions, "pages": pages}))

Counters are read at each scrape (nothing is paid per operation); see ``pystorage.metrics``
for the list.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING

try:
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
except ImportError as exc:  # the hint, as every optional backend gives it
    raise ImportError(
        "pystorage.metrics.prometheus needs prometheus_client: "
        "pip install 'pystorage-layers[prometheus]'"
    ) from exc

from pystorage.metrics import (
    DURATIONS,
    ENTRIES,
    GAUGES,
    METRICS,
    Counted,
    checked,
    durations,
    metric_of,
    samples,
    timed_layer,
)
from pystorage.metrics import Metric as MetricName  # prometheus_client has a Metric too

if TYPE_CHECKING:
    from pystorage.layers.timed import Histogram


class StorageCollector(Collector):
    """The counters of each storage, labelled ``storage=<its name>``; with
    ``entries=True`` also the gauge ``pystorage_entries`` (``len(storage)`` at each
    scrape: a count below, which on files or S3 lists every entry); the gauge
    ``pystorage_held_bytes`` where a layer tallies the bytes held (a ``SizeLimit``, a
    bounded SQLite); for a stack with a ``Timed`` layer, the histogram
    ``pystorage_operation_duration_seconds``."""

    def __init__(self, storages: Mapping[str, Counted], *, entries: bool = False) -> None:
        self._storages = checked(storages, entries)
        self._entries = entries

    def describe(self) -> Iterator[Metric]:
        """The metrics' names without reading a storage: registering the collector costs
        no ``stats()`` (nor, with ``entries=True``, a count of every entry)."""
        names = {metric_of(counter).name: metric_of(counter) for counter in METRICS}
        yield from self._families((metric, "", 0) for metric in names.values()).values()
        if self._entries:
            yield GaugeMetricFamily(ENTRIES.name, ENTRIES.help, labels=["storage"])
        for gauge in GAUGES.values():
            yield GaugeMetricFamily(gauge.name, gauge.help, labels=["storage"], unit=gauge.unit)
        if any(timed_layer(storage) is not None for storage in self._storages.values()):
            yield self._durations()

    def collect(self) -> Iterator[Metric]:
        yield from self._families(samples(self._storages, self._entries)).values()
        if any(timed_layer(storage) is not None for storage in self._storages.values()):
            yield self._durations(durations(self._storages))

    def _durations(self, found: Iterable[tuple[str, str, Histogram]] = ()) -> Metric:
        family = HistogramMetricFamily(
            DURATIONS.name, DURATIONS.help, labels=["storage", "operation"], unit=DURATIONS.unit
        )
        for name, operation, histogram in found:
            cumulative = list(itertools.accumulate(histogram.counts))
            bounds = [*map(repr, histogram.bounds), "+Inf"]  # repr: the text le= expects
            buckets = [(le, float(count)) for le, count in zip(bounds, cumulative, strict=True)]
            family.add_metric([name, operation], buckets, histogram.total)
        return family

    def _families(
        self, found: Iterable[tuple[MetricName, str, int]]
    ) -> dict[str, CounterMetricFamily | GaugeMetricFamily]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for metric, name, value in found:
            family = families.get(metric.name)
            extra = [label for label, _ in metric.labels]
            if family is None:
                gauge = metric is ENTRIES or metric in GAUGES.values()
                kind = GaugeMetricFamily if gauge else CounterMetricFamily
                family = families[metric.name] = kind(
                    metric.name, metric.help, labels=["storage", *extra], unit=metric.unit
                )
            if name:  # describe() names the families only
                family.add_metric([name, *(value for _, value in metric.labels)], value)
        return families
