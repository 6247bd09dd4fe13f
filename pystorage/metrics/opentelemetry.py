"""OpenTelemetry: PyStorage's counters as observable instruments of a meter.

::

    from opentelemetry import metrics
    from pystorage.metrics.opentelemetry import instrument

    instrument({"sessions": sessions}, metrics.get_meter("myapp"))

The SDK's reader calls back at each collection (nothing is paid per operation); names
are those of ``pystorage.metrics`` with dots (``pystorage.reads``), with the attribute
``storage`` set to each storage's name. OpenTelemetry has no histogram read when
collected: the durations of a stack with a ``Timed`` layer are recorded as each
operation ends, into ``pystorage.operation.duration`` (seconds, attribute ``operation``),
from the call of ``instrument`` on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

try:
    from opentelemetry.metrics import CallbackOptions, Histogram, Meter, Observation
except ImportError as exc:  # the hint, as every optional backend gives it
    raise ImportError(
        "pystorage.metrics.opentelemetry needs opentelemetry-api: "
        "pip install 'pystorage-layers[opentelemetry]'"
    ) from exc

from pystorage.metrics import (
    DURATIONS,
    ENTRIES,
    GAUGES,
    METRICS,
    Counted,
    Metric,
    checked,
    metric_of,
    samples,
    timed_layer,
)


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
    observed = [(meter.create_observable_counter, metric, False) for metric in metrics.values()] + [
        (meter.create_observable_gauge, gauge, False) for gauge in GAUGES.values()
    ]
    if entries:
        observed.append((meter.create_observable_gauge, ENTRIES, True))
    for create, metric, counted in observed:
        create(
            metric.name.replace("_", "."),
            callbacks=[_observe(storages, metric.name, counted)],
            unit=metric.unit or "1",
            description=metric.help,
        )
    timed = {name: timed_layer(storage) for name, storage in storages.items()}
    histogram = None
    for name, layer in timed.items():
        if layer is None:
            continue
        if histogram is None:
            histogram = meter.create_histogram(
                DURATIONS.name.replace("_", "."),
                unit="s",
                description=DURATIONS.help,
                explicit_bucket_boundaries_advisory=layer.bounds,
            )
        layer.observe(_recorder(histogram, name))


def _recorder(histogram: Histogram, storage: str) -> Callable[[str, float], None]:
    def record(operation: str, seconds: float) -> None:
        histogram.record(seconds, {"storage": storage, "operation": operation})

    return record


def _observe(
    storages: Mapping[str, Counted], wanted: str, entries: bool
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    def observe(options: CallbackOptions) -> Iterable[Observation]:
        for metric, name, value in samples(storages, entries):
            if metric.name == wanted:
                yield Observation(value, {"storage": name, **dict(metric.labels)})

    return observe
