"""Prometheus: a collector of PyStorage's counters for ``prometheus_client``.

::

    from prometheus_client import REGISTRY
    from pystorage.metrics.prometheus import StorageCollector

    REGISTRY.register(StorageCollector({"sessions": sessions, "pages": pages}))

Counters are read at each scrape (nothing is paid per operation); see ``pystorage.metrics``
for the list.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pystorage.metrics import ENTRIES, Counted, checked, samples


class StorageCollector(Collector):
    """The counters of each storage, labelled ``storage=<its name>``; with
    ``entries=True`` also the gauge ``pystorage_entries`` (``len(storage)`` at each
    scrape: a count below, which on files or S3 lists every entry)."""

    def __init__(self, storages: Mapping[str, Counted], *, entries: bool = False) -> None:
        self._storages = checked(storages, entries)
        self._entries = entries

    def collect(self) -> Iterator[Metric]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for metric, name, value in samples(self._storages, self._entries):
            family = families.get(metric.name)
            extra = [label for label, _ in metric.labels]
            if family is None:
                kind = GaugeMetricFamily if metric is ENTRIES else CounterMetricFamily
                family = families[metric.name] = kind(
                    metric.name, metric.help, labels=["storage", *extra], unit=metric.unit
                )
            family.add_metric([name, *(value for _, value in metric.labels)], value)
        yield from families.values()
