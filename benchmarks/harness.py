"""The timing core: interleaved rounds timed with ``perf_counter_ns``, medians per op.

A *subject* is one thing to time (PyStorage, or an anchor). Its ``prepare`` runs
untimed before each round (to pick keys, refill a bucket, ...) and returns the thunk
that is timed; the thunk performs ``ops`` operations. :func:`compare` runs the rounds
of all subjects interleaved, rotating their order each round, so that machine noise
hits every subject alike; the first ``warmup`` rounds are discarded.
"""

from __future__ import annotations

import gc
import statistics
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from time import perf_counter_ns

Thunk = Callable[[], object]


@dataclass(frozen=True)
class Subject:
    """What to time: ``prepare()`` (untimed) returns a thunk doing ``ops`` operations."""

    prepare: Callable[[], Thunk]
    ops: int = 1


def fixed(thunk: Thunk, ops: int = 1) -> Subject:
    """A subject whose every round runs the same thunk."""
    return Subject(lambda: thunk, ops)


def repeated(call: Callable[[], object], times: int) -> Subject:
    """A subject whose round is ``times`` calls of ``call`` (for batch operations)."""

    def run() -> None:
        for _ in range(times):
            call()

    return fixed(run, times)


@dataclass(frozen=True)
class Samples:
    """Nanoseconds per operation, one sample per measured round."""

    per_op_ns: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.per_op_ns)

    @property
    def spread(self) -> float:
        """Interquartile range over median: how noisy the rounds were."""
        if len(self.per_op_ns) < 4:
            return 0.0
        low, _, high = statistics.quantiles(self.per_op_ns, n=4)
        return (high - low) / self.median


def time_once(thunk: Thunk) -> int:
    """Nanoseconds taken by one call of ``thunk``, with the cyclic GC paused (as timeit)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = perf_counter_ns()
        thunk()
        return perf_counter_ns() - start
    finally:
        if enabled:
            gc.enable()


def compare(subjects: Mapping[str, Subject], rounds: int, warmup: int = 1) -> dict[str, Samples]:
    """Time every subject for ``warmup + rounds`` interleaved rounds."""
    names = list(subjects)
    samples: dict[str, list[float]] = {name: [] for name in names}
    gc.collect()
    for index in range(warmup + rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            subject = subjects[name]
            elapsed = time_once(subject.prepare())
            if index >= warmup:
                samples[name].append(elapsed / subject.ops)
    return {name: Samples(tuple(values)) for name, values in samples.items()}


def paired_ratio(numerator: Samples, denominator: Samples) -> float:
    """Median of the per-round ratios: rounds that ran side by side are compared."""
    pairs: Iterable[tuple[float, float]] = zip(
        numerator.per_op_ns, denominator.per_op_ns, strict=True
    )
    return statistics.median(a / b for a, b in pairs)
