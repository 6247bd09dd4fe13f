"""Prometheus: a collector of PyStorage's counters for ``prometheus_client``.

::

    from prometheus_client import REGISTRY
    from pystorage.metrics.prometheus import StorageCollector

    REGISTRY.register(StorageCollector({"sessions": sessions, "pages": pages}))

Counters are read at each scrape (nothing is paid per operation); see ``pystorage.metrics``
for the list.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

try:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError as exc:  # the hint, as every optional backend gives it
    raise ImportError(
        "pystorage.metrics.prometheus needs prometheus_client: "
        "pip install 'pystorage-layers[prometheus]'"
    ) from exc

from pystorage.metrics import ENTRIES, METRICS, Counted, checked, metric_of, samples
from pystorage.metrics import Metric as MetricName  # prometheus_client has a Metric too


class StorageCollector(Collector):
    """The counters of each storage, labelled ``storage=<its name>``; with
    ``entries=True`` also the gauge ``pystorage_entries`` (``len(storage)`` at each
    scrape: a count below, which on files or S3 lists every entry)."""

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

    def collect(self) -> Iterator[Metric]:
        yield from self._families(samples(self._storages, self._entries)).values()

    def _families(
        self, found: Iterable[tuple[MetricName, str, int]]
    ) -> dict[str, CounterMetricFamily | GaugeMetricFamily]:
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for metric, name, value in found:
            family = families.get(metric.name)
            extra = [label for label, _ in metric.labels]
            if family is None:
                kind = GaugeMetricFamily if metric is ENTRIES else CounterMetricFamily
                family = families[metric.name] = kind(
                    metric.name, metric.help, labels=["storage", *extra], unit=metric.unit
                )
            if name:  # describe() names the families only
                family.add_metric([name, *(value for _, value in metric.labels)], value)
        return families
