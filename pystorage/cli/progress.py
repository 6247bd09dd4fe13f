"""How far a ``copy`` is: a bar redrawn on a terminal, plain lines in logs and pipes."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, BinaryIO, TextIO

from pystorage.cli.common import PROG

if TYPE_CHECKING:
    from pystorage.cli.batches import Tally

#: A terminal progress bar is redrawn at most this often (seconds).
REDRAW_INTERVAL = 0.1
#: Without a terminal, a progress line at each tenth of the work or after this long.
LINE_INTERVAL = 10.0
BAR_WIDTH = 24


class Progress:
    """Reports how far a copy of ``total`` entries is; this one says nothing."""

    def __init__(self, stream: TextIO, total: int, clock: Callable[[], float]) -> None:
        self.stream = stream
        self.total = total
        self.clock = clock
        self.started = clock()

    def update(self, done: int, failed: int = 0) -> None:
        """Called often (about ten times a second and after each batch)."""

    def finish(self, done: int, failed: int = 0) -> None:
        """Called once at the end."""

    def describe(self, done: int, failed: int = 0) -> str:
        """``450/1000 45% 1,234 entries/s ETA 0:03`` (and the failures, if any)."""
        elapsed = self.clock() - self.started
        rate = done / elapsed if elapsed > 0 and done else 0.0
        percent = 100 * done // self.total if self.total else 100
        eta = _duration((self.total - done) / rate) if rate else "--:--"
        text = f"{done}/{self.total} {percent}% {rate:,.0f} entries/s ETA {eta}"
        return f"{text} ({failed} failed)" if failed else text


class BarProgress(Progress):
    """One line redrawn in place (``\\r``), at most every ``REDRAW_INTERVAL`` seconds."""

    def __init__(self, stream: TextIO, total: int, clock: Callable[[], float]) -> None:
        super().__init__(stream, total, clock)
        self.drawn_at = -REDRAW_INTERVAL
        self.update(0)

    def update(self, done: int, failed: int = 0) -> None:
        now = self.clock()
        if now - self.drawn_at >= REDRAW_INTERVAL:
            self.drawn_at = now
            self._draw(done, failed)

    def finish(self, done: int, failed: int = 0) -> None:
        self._draw(done, failed)
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self, done: int, failed: int) -> None:
        filled = BAR_WIDTH * done // self.total if self.total else BAR_WIDTH
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        # \x1b[K clears what a longer previous line left behind.
        self.stream.write(f"\r[{bar}] {self.describe(done, failed)}\x1b[K")
        self.stream.flush()


class LineProgress(Progress):
    """Plain lines for logs and pipes: at each tenth of the work, or every ``LINE_INTERVAL``."""

    def __init__(self, stream: TextIO, total: int, clock: Callable[[], float]) -> None:
        super().__init__(stream, total, clock)
        self.tenth = 0
        self.written_at = self.started
        self.last_done = -1

    def update(self, done: int, failed: int = 0) -> None:
        tenth = 10 * done // self.total if self.total else 10
        now = self.clock()
        stale = now - self.written_at >= LINE_INTERVAL
        if done != self.last_done and (tenth > self.tenth or stale):
            self.tenth = tenth
            self._write(done, failed, now)

    def finish(self, done: int, failed: int = 0) -> None:
        if done != self.last_done and done:
            self._write(done, failed, self.clock())

    def _write(self, done: int, failed: int, now: float) -> None:
        self.written_at = now
        self.last_done = done
        print(f"{PROG}: copy {self.describe(done, failed)}", file=self.stream, flush=True)


def make_progress(
    stream: TextIO, tally: Tally, quiet: bool = False, clock: Callable[[], float] = time.monotonic
) -> Progress:
    """A bar on a terminal, plain lines otherwise, nothing when ``quiet``."""
    total = tally.total
    if quiet:
        return Progress(stream, total, clock)
    if _is_terminal(stream):
        return BarProgress(stream, total, clock)
    skipped = f" ({tally.present} already in DST)" if tally.present else ""
    entries = "entry" if total == 1 else "entries"
    print(f"{PROG}: copying {total} {entries}{skipped}", file=stream, flush=True)
    return LineProgress(stream, total, clock)


def _is_terminal(stream: TextIO | BinaryIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _duration(seconds: float) -> str:
    """``0:07``, ``12:30`` or ``3:04:05``."""
    whole = int(seconds + 0.5)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"
