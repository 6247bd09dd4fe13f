"""The ``pystorage`` command: look into, edit and copy storages given as URLs.

::

    pystorage ls file:///var/cache/app
    pystorage get redis://localhost/0?prefix=app: session-7
    pystorage put file:///tmp/c?codec=json config --json '{"debug": true}'
    pystorage copy file:///var/cache/app?codec=json s3://bucket/app?codec=msgpack

URLs are those of ``open``. Errors are one line on stderr; the exit status
is 2 for a usage or URL error, 1 for a failure at run time (``--debug`` shows tracebacks).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TextIO
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs

import pystorage
from pystorage.errors import (
    CodecError,
    ConfigurationError,
    InvalidKeyError,
    StorageError,
    UnsupportedError,
)
from pystorage.layers.redis import DEFAULT_PREFIX
from pystorage.storage import Storage
from pystorage.urls import redact

PROG = "pystorage"
USAGE_ERROR = 2
FAILURE = 1
#: How many failed keys a copy names; the others are only counted.
SHOWN_FAILURES = 5
#: A terminal progress bar is redrawn at most this often (seconds).
REDRAW_INTERVAL = 0.1
#: Without a terminal, a progress line at each tenth of the work or after this long.
LINE_INTERVAL = 10.0
BAR_WIDTH = 24


class UsageError(Exception):
    """A command line that cannot be run as given (exit status 2)."""


class Failure(Exception):
    """A run-time failure already described by its message (exit status 1)."""


# -- entry point ---------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.debug:
        status: int = args.run(args)
        return status
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        # The reader went away (`pystorage ls URL | head`): not an error of ours.
        _silence_stdout()
        return 0
    except Exception as exc:  # every failure becomes one line, never a traceback
        return _fail(_describe(exc), _status_of(exc))


def _describe(exc: BaseException) -> str:
    """One line saying what went wrong, in the user's terms."""
    if isinstance(exc, KeyError) and not isinstance(exc, StorageError):
        return f"no such key {exc.args[0]!r}" if exc.args else "no such key"
    if isinstance(exc, (UsageError, Failure, StorageError)):
        return _one_line(str(exc))
    if isinstance(exc, OSError) and exc.filename is not None:
        return _one_line(f"{exc.filename}: {exc.strerror or exc}")
    if isinstance(exc, ImportError):
        return _one_line(str(exc))
    return _one_line(f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)")


def _status_of(exc: BaseException) -> int:
    """2 for what the user should change on the command line, 1 for everything else."""
    usage = (UsageError, ConfigurationError, UnsupportedError, InvalidKeyError)
    return USAGE_ERROR if isinstance(exc, usage) else FAILURE


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so that the exit flush is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


# -- the parser ----------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The parser of the whole command line; each sub-command sets ``args.run``."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Look into, edit and copy storages given as URLs (see pystorage.open): "
        "memory://, file:///path, redis://host:port/db, s3://bucket/folder, with options "
        "such as ?codec=json&prefix=app:.",
        epilog="Exit status: 0 on success, 1 on a failure at run time, 2 on a usage or "
        "URL error. Errors are one line on stderr; --debug shows the traceback.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    debug = argparse.ArgumentParser(add_help=False)
    debug.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors"
    )
    commands = parser.add_subparsers(
        title="commands", metavar="COMMAND", required=True, parser_class=_IntermixedParser
    )
    for add in (_add_ls, _add_get, _add_put, _add_rm, _add_stats, _add_copy):
        add(commands, debug)
    return parser


def _version() -> str:
    return str(getattr(pystorage, "__version__", "unknown"))


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text!r}")
    return int(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


Commands = Any  # argparse's _SubParsersAction is private


class _IntermixedParser(argparse.ArgumentParser):
    """A sub-command parser that lets options and positionals mix in any order.

    Plain argparse fills an optional positional early: in ``put URL KEY --json '[1]'``
    the VALUE would be left unmatched.
    """

    _intermixing = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        if self._intermixing:
            return super().parse_known_args(args, namespace)
        self._intermixing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._intermixing = False


def _add_ls(commands: Commands, debug: argparse.ArgumentParser) -> None:
    ls = commands.add_parser(
        "ls", parents=[debug], help="list the keys", description="Print every key, one a line."
    )
    ls.add_argument("url", metavar="URL")
    ls.add_argument("-s", "--sort", action="store_true", help="sort the keys")
    ls.add_argument(
        "-0", "--null", action="store_true", help="end each key with NUL instead of a newline"
    )
    ls.set_defaults(run=run_ls)


def _add_get(commands: Commands, debug: argparse.ArgumentParser) -> None:
    get = commands.add_parser(
        "get",
        parents=[debug],
        help="print a value",
        description="Write the value of KEY to stdout: bytes as they are, str as UTF-8, "
        "other objects as JSON (one line) if they can be, else as their repr.",
    )
    get.add_argument("url", metavar="URL")
    get.add_argument("key", metavar="KEY")
    get.add_argument("-o", "--output", metavar="FILE", help="write the value to FILE instead")
    get.set_defaults(run=run_get)


def _add_put(commands: Commands, debug: argparse.ArgumentParser) -> None:
    put = commands.add_parser(
        "put",
        parents=[debug],
        help="store a value",
        description="Store VALUE as a str, or the bytes of FILE (-f) or of stdin (-). "
        "With --json the text is parsed as JSON and the object stored.",
    )
    put.add_argument("url", metavar="URL")
    put.add_argument("key", metavar="KEY")
    put.add_argument("value", metavar="VALUE", nargs="?", help="the value; - reads stdin")
    put.add_argument("-f", "--file", metavar="FILE", help="store the bytes of FILE")
    put.add_argument("--json", action="store_true", help="parse the value as JSON")
    put.add_argument(
        "--ttl", type=_seconds, metavar="SECONDS", help="expire the entry (the stack must expire)"
    )
    put.set_defaults(run=run_put)


def _add_rm(commands: Commands, debug: argparse.ArgumentParser) -> None:
    rm = commands.add_parser(
        "rm", parents=[debug], help="remove keys", description="Remove each KEY."
    )
    rm.add_argument("url", metavar="URL")
    rm.add_argument("keys", metavar="KEY", nargs="+")
    rm.add_argument("-f", "--force", action="store_true", help="ignore missing keys")
    rm.set_defaults(run=run_rm)


def _add_stats(commands: Commands, debug: argparse.ArgumentParser) -> None:
    stats = commands.add_parser(
        "stats",
        parents=[debug],
        help="count entries",
        description="Print the number of entries and the stack's counters, one "
        "'name value' a line (counters count this process's operations only).",
    )
    stats.add_argument("url", metavar="URL")
    stats.set_defaults(run=run_stats)


def _add_copy(commands: Commands, debug: argparse.ArgumentParser) -> None:
    copy = commands.add_parser(
        "copy",
        parents=[debug],
        help="copy every entry to another storage",
        description="Copy every entry of SRC to DST. Values are decoded by SRC's codec and "
        "encoded by DST's, so one copy changes codec or backend. Entries DST cannot "
        "take (e.g. a set into JSON) are counted as failed and named, and make the exit "
        "status 1; the others are copied. TTLs are not carried over.",
        epilog="Progress goes to stderr: a redrawn bar on a terminal, plain lines "
        "otherwise; a summary line ends every copy.",
    )
    copy.add_argument("src", metavar="SRC", help="the storage to read")
    copy.add_argument("dst", metavar="DST", help="the storage to write")
    copy.add_argument(
        "--batch", type=_positive_int, default=100, metavar="N", help="keys per batch (100)"
    )
    copy.add_argument(
        "--workers", type=_positive_int, default=4, metavar="N", help="batches in flight (4)"
    )
    copy.add_argument(
        "--resume", action="store_true", help="skip keys DST already has (listed once at start)"
    )
    copy.add_argument(
        "--delete", action="store_true", help="remove each entry from SRC once it is copied"
    )
    copy.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    copy.set_defaults(run=run_copy)


# -- opening storages ----------------------------------------------------------------


@contextmanager
def opened(url: str, *, existing: bool = True) -> Iterator[Storage]:
    """The storage at ``url``, closed on exit.

    With ``existing``, a ``file://`` folder must already exist: a typo in a path to read
    is an error, not a new empty folder.
    """
    if existing:
        _check_folder(url)
    storage = pystorage.open(url)
    try:
        yield storage
    finally:
        storage.close()


def _check_folder(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.path and not Path(unquote(parts.path)).is_dir():
        raise Failure(f"no such folder {unquote(parts.path)!r} (in {redact(url)!r})")


def _location(url: str) -> tuple[str, ...]:
    """Where a URL's entries live: two URLs with the same location see the same entries."""
    parts = urlsplit(url)
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    if parts.scheme == "file":
        folder = os.path.realpath(unquote(parts.path))
        return ("file", folder, options.get("suffix", "").strip("."))
    if parts.scheme == "s3":
        return ("s3", parts.netloc, unquote(parts.path).strip("/"))
    if parts.scheme == "memory":
        return ("memory", url)  # every open is a new, empty memory
    return (
        parts.scheme,
        parts.netloc,
        parts.path.strip("/") or "0",
        options.get("prefix", DEFAULT_PREFIX),
    )


# -- the simple commands -------------------------------------------------------------


def run_ls(args: argparse.Namespace) -> int:
    """``pystorage ls URL``: every key, one a line."""
    end = b"\0" if args.null else b"\n"
    out = sys.stdout.buffer
    with opened(args.url) as storage:
        keys: Iterator[str] | list[str] = iter(storage)
        if args.sort:
            keys = sorted(keys)
        for key in keys:
            out.write(_encode_text(key) + end)
    out.flush()
    return 0


def run_get(args: argparse.Namespace) -> int:
    """``pystorage get URL KEY``: the value on stdout or in a file."""
    with opened(args.url) as storage:
        value = storage[args.key]
    data = render(value)
    if args.output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        Path(args.output).write_bytes(data)
    return 0


def render(value: Any) -> bytes:
    """Bytes as they are, str as UTF-8, others as a JSON line if they can be, else repr."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return _encode_text(value)
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        text = repr(value)
    return _encode_text(text) + b"\n"


def _encode_text(text: str) -> bytes:
    return text.encode("utf-8", "backslashreplace")


def run_put(args: argparse.Namespace) -> int:
    """``pystorage put URL KEY [VALUE | -f FILE | -]``: store one value."""
    value = _value_to_put(args)
    with opened(args.url, existing=False) as storage:
        storage.set(args.key, value, ttl=args.ttl)
    return 0


def _value_to_put(args: argparse.Namespace) -> Any:
    """The value a ``put`` command line describes: str, bytes or (with --json) an object."""
    if args.file is not None and args.value is not None:
        raise UsageError("put takes a VALUE or -f FILE, not both")
    if args.file is not None:
        data: bytes | str = Path(args.file).read_bytes()
    elif args.value == "-":
        data = sys.stdin.buffer.read()
    elif args.value is not None:
        data = args.value
    else:
        raise UsageError("put needs a VALUE, -f FILE, or - to read stdin")
    if not args.json:
        return data
    try:
        return json.loads(data)
    except ValueError as exc:
        raise UsageError(f"the value is not valid JSON: {exc}") from None


def run_rm(args: argparse.Namespace) -> int:
    """``pystorage rm URL KEY...``: remove keys; a missing one is an error unless --force."""
    missing = []
    with opened(args.url) as storage:
        for key in args.keys:
            try:
                del storage[key]
            except KeyError:
                missing.append(key)
    if missing and not args.force:
        names = ", ".join(map(repr, missing))
        raise Failure(f"no such key {names}" if len(missing) == 1 else f"no such keys {names}")
    return 0


def run_stats(args: argparse.Namespace) -> int:
    """``pystorage stats URL``: ``entries N`` and the stack's counters, one a line."""
    with opened(args.url) as storage:
        lines = [("entries", len(storage)), *storage.stats().items()]
    for name, value in lines:
        print(name, value)
    return 0


# -- copy ----------------------------------------------------------------------------


@attrs.define
class BatchResult:
    """What became of one batch of keys."""

    copied: int = 0
    #: Keys listed in SRC but gone by the time they were read.
    gone: int = 0
    failed: list[tuple[str, str]] = attrs.Factory(list)


@attrs.define
class Tally:
    """The running totals of a copy."""

    total: int
    skipped: int
    copied: int = 0
    gone: int = 0
    failed: list[tuple[str, str]] = attrs.Factory(list)

    @property
    def done(self) -> int:
        return self.copied + self.gone + len(self.failed)

    def add(self, result: BatchResult) -> None:
        self.copied += result.copied
        self.gone += result.gone
        self.failed.extend(result.failed)


def run_copy(args: argparse.Namespace) -> int:
    """``pystorage copy SRC DST``: every entry of SRC into DST, in concurrent batches."""
    if _location(args.src) == _location(args.dst):
        raise UsageError("SRC and DST are the same storage: copy to another place")
    with opened(args.src) as src, opened(args.dst, existing=False) as dst:
        keys = list(dict.fromkeys(src))  # a Redis SCAN may list a key twice
        skip = set(dst) if args.resume else set()
        todo = [key for key in keys if key not in skip]
        tally = Tally(total=len(todo), skipped=len(keys) - len(todo))
        progress = make_progress(sys.stderr, tally, quiet=args.quiet)
        started = time.monotonic()
        try:
            copy_batches(src, dst, todo, args, tally, progress)
        finally:
            progress.finish(tally.done)
            print(summary(tally, time.monotonic() - started), file=sys.stderr)
    return _report_failures(tally.failed)


def copy_batches(
    src: Storage,
    dst: Storage,
    keys: list[str],
    args: argparse.Namespace,
    tally: Tally,
    progress: Progress,
) -> None:
    """Copy ``keys`` in batches of ``args.batch``, ``args.workers`` of them at a time."""
    batches = [keys[i : i + args.batch] for i in range(0, len(keys), args.batch)]
    executor = ThreadPoolExecutor(max_workers=args.workers, thread_name_prefix="copy")
    try:
        pending: set[Future[BatchResult]] = {
            executor.submit(copy_batch, src, dst, batch, args.delete) for batch in batches
        }
        while pending:
            finished, pending = wait(pending, timeout=REDRAW_INTERVAL, return_when=FIRST_COMPLETED)
            for future in finished:
                tally.add(future.result())
            progress.update(tally.done, len(tally.failed))
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def copy_batch(src: Storage, dst: Storage, keys: list[str], delete: bool) -> BatchResult:
    """Read ``keys`` from ``src`` and write them to ``dst``: one get_many and one set_many,
    unless a value cannot be decoded or encoded; then key by key, to name the culprits."""
    result = BatchResult()
    values = _read(src, keys, result)
    result.gone = len(keys) - len(values) - len(result.failed)
    written = _write(dst, values, result)
    result.copied = len(written)
    if delete and written:
        src.delete_many(written)
    return result


def _read(src: Storage, keys: list[str], result: BatchResult) -> dict[str, Any]:
    try:
        return src.get_many(keys)
    except (CodecError, InvalidKeyError):
        pass
    values = {}
    for key in keys:
        try:
            values[key] = src[key]
        except KeyError:
            continue
        except (CodecError, InvalidKeyError) as exc:
            result.failed.append((key, str(exc)))
    return values


def _write(dst: Storage, values: dict[str, Any], result: BatchResult) -> list[str]:
    """Store ``values`` in ``dst``; the keys written (failures go to ``result``)."""
    try:
        dst.set_many(values)
        return list(values)
    except (CodecError, InvalidKeyError):
        pass
    written = []
    for key, value in values.items():
        try:
            dst[key] = value
        except (CodecError, InvalidKeyError) as exc:
            result.failed.append((key, str(exc)))
        else:
            written.append(key)
    return written


def summary(tally: Tally, elapsed: float) -> str:
    """The last line of a copy: what was copied, skipped and failed, and how fast."""
    parts = [
        f"copied {tally.copied}",
        f"skipped {tally.skipped}",
        f"failed {len(tally.failed)}",
    ]
    if tally.gone:
        parts.append(f"gone from SRC {tally.gone}")
    rate = tally.copied / elapsed if elapsed > 0 else 0.0
    return f"{PROG}: {', '.join(parts)} in {elapsed:.2f} s ({rate:,.0f} entries/s)"


def _report_failures(failed: list[tuple[str, str]]) -> int:
    """Name the first few failed keys on stderr; the exit status of the copy."""
    if not failed:
        return 0
    for key, message in failed[:SHOWN_FAILURES]:
        print(f"{PROG}: failed {key!r}: {_one_line(message)}", file=sys.stderr)
    if len(failed) > SHOWN_FAILURES:
        print(f"{PROG}: ... and {len(failed) - SHOWN_FAILURES} more failed", file=sys.stderr)
    return FAILURE


# -- progress ------------------------------------------------------------------------


class Progress:
    """Reports how far a copy of ``total`` entries is; this one says nothing."""

    def __init__(self, stream: TextIO, total: int, clock: Callable[[], float]) -> None:
        self.stream = stream
        self.total = total
        self.clock = clock
        self.started = clock()

    def update(self, done: int, failed: int = 0) -> None:
        """Called often (about ten times a second and after each batch)."""

    def finish(self, done: int) -> None:
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

    def finish(self, done: int) -> None:
        self._draw(done, 0)
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

    def finish(self, done: int) -> None:
        if done != self.last_done and done:
            self._write(done, 0, self.clock())

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
    skipped = f" ({tally.skipped} already in DST, skipped)" if tally.skipped else ""
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
