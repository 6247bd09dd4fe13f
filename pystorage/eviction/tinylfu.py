"""Adaptive W-TinyLFU: which keys to keep, by how often and how recently they are asked for.

The design is the one of Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache
Admission Policy" (ACM TOS 2017), with the adaptive window of Caffeine (Manes, "Adaptive
Software Cache Management", Middleware 2018):

- A small *window* (LRU) takes every new key, so a burst of new keys is not refused at once.
- A *main* region keeps the rest, as a segmented LRU: keys enter on *probation*, and a
  second use moves them to *protected* (at most 80 % of main).
- When the window overflows, its least recent key is a *candidate* for main. If main has
  no room, the candidate gets in only if it was asked for more often than main's *victim*
  (probation's least recent key), as told by a frequency *sketch*; otherwise it goes.
- The sketch counts uses of every key ever seen, in little memory: a count-min sketch of
  4-bit counters (two rows here), behind a *doorkeeper* that absorbs the first use of each
  key, so that keys seen once do not fill the counters. Every ``10 x capacity`` uses all
  counters are halved and the doorkeeper cleared: old popularity fades.
- The window's share is tuned by hill climbing: after each sample of uses, if the hit
  ratio rose the window keeps moving the same way, else it turns back; the step shrinks
  as it settles and grows again when the workload shifts. Recency-heavy workloads end up
  with a large window, frequency-heavy ones with a small one.

Entries have weights (1 for a count limit, bytes for a byte limit); every size here is a
total weight. The policy holds keys and weights, never values: a layer asks it which keys
to remove and removes them itself.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections import OrderedDict
from collections.abc import Callable, Mapping

#: Counters saturate here: beyond, "asked for often" needs no finer degree.
_MAX_COUNT = 15
#: ``bytes.translate`` table that halves every counter at once (aging).
_HALVE = bytes(count >> 1 for count in range(256))
#: Hill climbing: the first step, as a share of the capacity; its decay after each
#: sample; the change of hit ratio that restarts it at full size (the workload changed).
_STEP = 0.0625
_DECAY = 0.98
_RESTART = 0.05
#: The window's share at the start (Caffeine's 1 %: frequency matters in most workloads).
_START_WINDOW = 0.01
#: Uses in a sample of the hill climber, at least: in fewer, the hit ratio's noise
#: (a few points over 100 uses) turns the climber at random.
_MIN_SAMPLE = 1000
#: The keys a new sketch is sized for; it grows with the keys held (``grow``).
_FIRST_SKETCH = 1024
#: A change of hit ratio smaller than this is noise: the climber keeps its direction,
#: so that it crosses a plateau (where every window size in reach does as well) instead
#: of turning at random on it.
_FLAT = 0.01
#: Protected's share of main.
_PROTECTED = 0.8


#: A saved sketch: magic, records since the last halving, width; then the salt, the two
#: rows of counters and the doorkeeper.
_SAVED = struct.Struct(">4sQI16s")
_MAGIC = b"PSK1"


class FrequencySketch:
    """How often each key was seen lately, approximately: a count-min sketch of two rows
    of 4-bit counters (one byte each here) with a doorkeeper, halved every ``sample``
    records. Estimates never fall short of the true count since the last halving (halved
    with it); collisions only make them larger.

    ``stable=True`` hashes keys with a salted BLAKE2b rather than ``hash()`` (which each
    process seeds anew), so that the sketch can be saved (``save``) and read back by
    another process (``load``); the salt, random and saved with it, keeps anyone from
    choosing keys that collide."""

    __slots__ = ("_counts", "_door", "_hash", "_mask", "_records", "_salt", "sample")

    def __init__(self, capacity: int, *, stable: bool = False) -> None:
        width = 16
        while width < 4 * capacity:
            width <<= 1
        self._mask = width - 1
        self._counts = bytearray(2 * width)  # two rows, side by side
        self._door = bytearray(width)
        self._records = 0
        self.sample = 10 * max(capacity, 1)
        self._salt = os.urandom(16) if stable else b""
        self._hash: Callable[[str], int] = self._stable_hash if stable else hash

    def _stable_hash(self, key: str) -> int:
        digest = hashlib.blake2b(
            key.encode("utf-8", "surrogatepass"), digest_size=8, key=self._salt
        ).digest()
        return int.from_bytes(digest, "little")

    def save(self) -> bytes | None:
        """The sketch as bytes, for ``load`` in another process; None unless
        ``stable=True`` (``hash()`` is seeded anew in each process)."""
        if not self._salt:
            return None
        width = self._mask + 1
        head = _SAVED.pack(_MAGIC, self._records, width, self._salt)
        return head + bytes(self._counts) + bytes(self._door)

    def load(self, saved: bytes) -> bool:
        """Take the counts of a saved sketch, at the wider of the two widths; False (and
        nothing changed) for anything else: another format, a damaged file."""
        if not self._salt or len(saved) < _SAVED.size:
            return False
        magic, records, saved_width, salt = _SAVED.unpack_from(saved)
        if (
            magic != _MAGIC
            or saved_width < 16
            or saved_width & (saved_width - 1)  # a power of two, as every width
            or len(saved) != _SAVED.size + 3 * saved_width
        ):
            return False
        width = self._mask + 1
        body = saved[_SAVED.size :]
        self._salt = salt
        self._counts = bytearray(body[: 2 * saved_width])
        self._door = bytearray(body[2 * saved_width :])
        self._mask = saved_width - 1
        self.sample = max(self.sample, 10 * self.capacity)
        while self._mask + 1 < width:
            self.grow()
        self._records = min(records, self.sample)
        return True

    @property
    def capacity(self) -> int:
        """How many keys it is sized for: a quarter of its width."""
        return (self._mask + 1) // 4

    def grow(self) -> None:
        """Twice the width, every estimate kept: a key's counter in a row twice as wide
        is at its place modulo the old width, so each row is laid twice end to end."""
        width = self._mask + 1
        first, second = self._counts[:width], self._counts[width:]
        self._counts = first + first + second + second
        self._door = self._door * 2
        self._mask = 2 * width - 1
        self.sample *= 2

    def record(self, key: str) -> None:
        h = self._hash(key)
        mask = self._mask
        door = h & mask
        if not self._door[door]:
            self._door[door] = 1
        else:
            counts = self._counts
            first = (h >> 17) & mask
            second = mask + 1 + (((h >> 34) ^ h) & mask)
            # Conservative update: raise only the smaller counter(s); the estimate is the
            # minimum, so raising the larger one would only add error.
            a, b = counts[first], counts[second]
            low = a if a < b else b
            if low < _MAX_COUNT:
                if a == low:
                    counts[first] = low + 1
                if b == low:
                    counts[second] = low + 1
        self._records += 1
        if self._records >= self.sample:
            self._age()

    def estimate(self, key: str) -> int:
        h = self._hash(key)
        mask = self._mask
        counts = self._counts
        a = counts[(h >> 17) & mask]
        b = counts[mask + 1 + (((h >> 34) ^ h) & mask)]
        return (a if a < b else b) + self._door[h & mask]

    def _age(self) -> None:
        self._counts = bytearray(self._counts.translate(_HALVE))
        self._door = bytearray(len(self._door))
        self._records //= 2


class WTinyLFU:
    """The adaptive W-TinyLFU policy over keys of a total weight of at most ``capacity``.

    A ``Policy`` (see ``pystorage.eviction``): ``hit(key)`` records a use of a key it
    holds; ``write(key, weight)`` a new key, or a rewrite; ``evict()`` removes and returns
    the keys that must go to stay within the capacity (a new key among them when main
    refused it); ``discard(key)`` forgets a key removed by someone else. Not thread-safe:
    the layer using it holds its lock around each call.
    """

    __slots__ = (
        "_direction",
        "_hits",
        "_last_ratio",
        "_misses",
        "_probation",
        "_protected",
        "_sample",
        "_step",
        "_weights",
        "_window",
        "capacity",
        "probation_weight",
        "protected_weight",
        "refused",
        "sketch",
        "window_limit",
        "window_weight",
    )

    def __init__(self, capacity: int, entries: int | None = None, *, stable: bool = False) -> None:
        self.capacity = capacity
        # Sized by the keys it holds, growing with them up to the number of entries it
        # may hold (the capacity itself when every entry weighs 1): a bound of a billion
        # bytes, or of entries never filled, costs no gigabytes of counters up front.
        entries = capacity if entries is None else entries
        self.sketch = FrequencySketch(min(entries, _FIRST_SKETCH), stable=stable)
        self._sample = max(self.sketch.capacity, _MIN_SAMPLE)
        self._window: OrderedDict[str, None] = OrderedDict()
        self._probation: OrderedDict[str, None] = OrderedDict()
        self._protected: OrderedDict[str, None] = OrderedDict()
        self._weights: dict[str, int] = {}
        self.window_weight = self.probation_weight = self.protected_weight = 0
        self.window_limit = max(1, round(capacity * _START_WINDOW))
        self._hits = self._misses = 0
        #: Keys that left the window and were refused by main: asked for less often than
        #: the entry they would have replaced.
        self.refused = 0
        self._last_ratio = 0.0
        self._step = _STEP * capacity
        self._direction = 1

    def __contains__(self, key: str) -> bool:
        return key in self._weights

    def __len__(self) -> int:
        return len(self._weights)

    @property
    def weight(self) -> int:
        """The total weight of the keys held."""
        return self.window_weight + self.probation_weight + self.protected_weight

    def keys(self) -> list[str]:
        """The keys held, those to go first first (probation, window, then protected)."""
        return [*self._probation, *self._window, *self._protected]

    def hit(self, key: str) -> None:
        self.sketch.record(key)
        self._hits += 1
        # Most hits land in protected, where the keys used more than once live.
        if key in self._protected:
            self._protected.move_to_end(key)
        elif key in self._window:
            self._window.move_to_end(key)
        elif key in self._probation:
            # A second use in main: protected, which may push its oldest back to probation.
            del self._probation[key]
            weight = self._weights[key]
            self.probation_weight -= weight
            self._protected[key] = None
            self.protected_weight += weight
            limit = _PROTECTED * (self.capacity - self.window_limit)
            while self.protected_weight > limit and len(self._protected) > 1:
                oldest, _ = self._protected.popitem(last=False)
                weight = self._weights[oldest]
                self.protected_weight -= weight
                self._probation[oldest] = None
                self.probation_weight += weight
        if self._hits + self._misses >= self._sample:
            self._climb()

    def write(self, key: str, weight: int) -> None:
        old = self._weights.get(key)
        if old is not None:  # a rewrite: a use, maybe of a new weight
            self._weights[key] = weight
            if key in self._window:
                self.window_weight += weight - old
            elif key in self._probation:
                self.probation_weight += weight - old
            else:
                self.protected_weight += weight - old
            self.hit(key)
            return
        self.sketch.record(key)
        self._misses += 1
        self._weights[key] = weight
        if len(self._weights) > self.sketch.capacity:
            self.sketch.grow()
            self._sample = max(self.sketch.capacity, _MIN_SAMPLE)
        self._window[key] = None
        self.window_weight += weight
        if self._hits + self._misses >= self._sample:
            self._climb()

    def discard(self, key: str) -> None:
        weight = self._weights.pop(key, None)
        if weight is None:
            return
        if self._window.pop(key, 0) is None:
            self.window_weight -= weight
        elif self._probation.pop(key, 0) is None:
            self.probation_weight -= weight
        else:
            del self._protected[key]
            self.protected_weight -= weight

    def evict(self) -> list[str]:
        """Move the window's overflow to main, each key admitted against main's victim or
        refused, until the whole weight fits; the keys removed."""
        removed: list[str] = []
        window, weights = self._window, self._weights
        while self.window_weight > self.window_limit and len(window) > 1:
            candidate, _ = window.popitem(last=False)
            weight = weights[candidate]
            self.window_weight -= weight
            self._probation[candidate] = None
            self.probation_weight += weight
            while self.weight > self.capacity:
                victim = self._victim(candidate)
                if victim is None:
                    break
                removed.append(victim)
                if victim == candidate:
                    break
        while self.weight > self.capacity:  # a heavy key, or a window that shrank
            victim = self._oldest()
            self.discard(victim)
            removed.append(victim)
        return removed

    def restore(self, weights: Mapping[str, int], keep_order: bool) -> None:
        """Hold exactly ``weights``. Keys new here go on probation, before those held (or
        before nothing, without ``keep_order``): no use of them is known. The sketch
        stays: what was learnt of a key's popularity outlives its entry."""
        if not keep_order:
            self._window.clear()
            self._probation.clear()
            self._protected.clear()
            self._weights.clear()
        for key in [key for key in self._weights if key not in weights]:
            self.discard(key)
        probation = OrderedDict.fromkeys(key for key in weights if key not in self._weights)
        probation.update(self._probation)
        self._probation = probation
        self._weights.update(weights)
        self.window_weight = sum(weights[key] for key in self._window)
        self.probation_weight = sum(weights[key] for key in probation)
        self.protected_weight = sum(weights[key] for key in self._protected)

    def counters(self) -> dict[str, int]:
        return {"refused": self.refused}

    def save(self) -> bytes | None:
        """What it learnt that the store's listing cannot tell: the sketch (``stable``
        only; None otherwise)."""
        return self.sketch.save()

    def load(self, saved: bytes) -> bool:
        return self.sketch.load(saved)

    def _victim(self, candidate: str) -> str | None:
        """Remove and return main's victim or the candidate, whichever was asked for less
        often; None when main holds nothing else."""
        probation = self._probation
        victim = next(iter(probation))
        if victim == candidate:
            if len(self._protected) == 0:
                return None
            victim = next(iter(self._protected))
        estimate = self.sketch.estimate
        loser = victim if estimate(candidate) > estimate(victim) else candidate
        self.discard(loser)
        self.refused += loser == candidate
        return loser

    def _oldest(self) -> str:
        for region in (self._probation, self._window, self._protected):
            if region:
                return next(iter(region))
        raise KeyError("nothing to evict")

    def _climb(self) -> None:
        """After each sample of uses (as many as the entries held: measured on the traces,
        a sample ten times longer adapted too slowly to recency-heavy workloads), move the
        window's share towards a higher hit ratio."""
        seen = self._hits + self._misses
        ratio = self._hits / seen
        change = ratio - self._last_ratio
        if change < -_FLAT:
            self._direction = -self._direction
        if abs(change) >= _RESTART:
            self._step = _STEP * self.capacity
        else:
            self._step *= _DECAY
        self._last_ratio = ratio
        self._hits = self._misses = 0
        limit = self.window_limit + self._direction * self._step
        low, high = 1, self.capacity * 0.8
        if not low <= limit <= high:
            # At a bound, a step that way changes nothing, and the hit ratio would stay
            # flat, giving the climber no reason to turn: it turns here.
            self._direction = -self._direction
        self.window_limit = int(min(max(limit, low), high))
