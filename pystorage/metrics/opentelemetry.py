"""OpenTelemetry: PyStorage's counters as observable instruments of a meter.

::

    from opentelemetry import metrics
    from pystorage.metrics.opentelemetry import instrument

    instrument({"sessions": sessions}, metrics.get_meter("myapp"))

The SDK's reader calls back at each collection (nothing is paid per operation); names
are those of ``pystorage.metrics`` with dots (``pystorage.reads``), with the attribute
``storage`` set to each storage's name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

try:
    from opentelemetry.metrics import CallbackOptions, Meter, Observation
except ImportError as exc:  # the hint, as every optional backend gives it
    raise ImportError(
        "pystorage.metrics.opentelemetry needs opentelemetry-api: "
        "pip install 'pystorage-layers[opentelemetry]'"
    ) from exc

from pystorage.metrics import ENTRIES, METRICS, Counted, Metric, checked, metric_of, samples


def instrument(storages: Mapping[str, Counted], meter: Meter, *, entries: bool = False) -> None:
    """Create on ``meter`` an observable counter per metric (and with ``entries=True`` an
    observable gauge of ``len(storage)``), each reading every storage when collected.

    Counters that a stack has beyond ``METRICS`` are observed too, if they exist when
    this is called."""
    storages = checked(storages, entries)
    names = set(METRICS) | {counter for each in storages.values() for counter in each.stats()}
    metrics: dict[str, Metric] = {}
    for counter in sorted(names):
        metric = metric_of(counter)
        metrics.setdefault(metric.name, metric)
    for metric in metrics.values():
        meter.create_observable_counter(
            metric.name.replace("_", "."),
            callbacks=[_observe(storages, metric.name, False)],
            unit=metric.unit or "1",
            description=metric.help,
        )
    if entries:
        meter.create_observable_gauge(
            ENTRIES.name.replace("_", "."),
            callbacks=[_observe(storages, ENTRIES.name, True)],
            description=ENTRIES.help,
        )


def _observe(
    storages: Mapping[str, Counted], wanted: str, entries: bool
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        for metric, name, value in samples(storages, entries):
            if metric.name == wanted:
                yield Observation(value, {"storage": name, **dict(metric.labels)})

    return observe
