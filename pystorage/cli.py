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
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal, TextIO
from urllib.parse import SplitResult, urlsplit

import attrs

import pystorage
from pystorage.codecs.serializers import Pickle
from pystorage.errors import (
    BackendError,
    CodecError,
    ConfigurationError,
    InvalidKeyError,
    StorageError,
    UnsupportedError,
)
from pystorage.storage import Storage
from pystorage.urls import ParsedURL, parse

# What a command needs beyond opening a storage (threads for copy, the backends' classes
# to compare two stores) is imported by that command: `pystorage get` starts quickly.
if TYPE_CHECKING:
    from concurrent.futures import Future

    from pystorage.codecs import BaseCodec
    from pystorage.layers import Layer, Redis

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
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_command_named(argv))
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


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of the whole command line; each sub-command sets ``args.run``.

    ``only`` names the one sub-command to add: a command parses its own arguments without
    building the five others (2-3 ms of CPU, of the 8 that argparse costs a command).
    """
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Look into, edit and copy storages given as URLs (see pystorage.open): "
        "memory://, file:///path, sqlite:///path/file.db, redis://host:port/db (rediss:// "
        "for TLS, unix:///path/redis.sock), s3://bucket/folder, with options such as "
        "?codec=json&prefix=app:.",
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
    for name, add in _COMMANDS.items():
        if only is None or name == only:
            add(commands, debug)
    return parser


def _command_named(argv: Sequence[str]) -> str | None:
    """The sub-command ``argv`` names, if it is one: the first word that is not an
    option (the options before it take no value). None for the whole parser: help,
    --version, a typo, which then list every command."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in _COMMANDS else None
    return None


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
        "status 1; the others are copied, each with the time it has left.",
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


_COMMANDS: dict[str, Callable[[Commands, argparse.ArgumentParser], None]] = {
    "ls": _add_ls,
    "get": _add_get,
    "put": _add_put,
    "rm": _add_rm,
    "stats": _add_stats,
    "copy": _add_copy,
}


# -- opening storages ----------------------------------------------------------------

#: What a command does with a storage, and so which layers it is opened with:
#: "keys" (ls, stats, rm) never decodes a value, evicts or expires anything: the backend
#: only (and Stats); "read" (get, copy's SRC) decodes values but leaves the CountLimit
#: out, so that reading never evicts; "write" (put, copy's DST) is the whole stack.
Purpose = Literal["keys", "read", "write"]


@contextmanager
def opened(url: ParsedURL, purpose: Purpose) -> Iterator[Storage]:
    """The storage at ``url``, built for ``purpose``, closed on exit.

    Except to write, a ``file://`` folder must already exist: a typo in a path to read
    is an error, not a new empty folder.
    """
    if purpose != "write":
        _check_folder(url)
    if purpose != "keys":
        _check_codec(url)
    storage = url.build(limit=purpose == "write", values=purpose != "keys")
    try:
        yield storage
    finally:
        storage.close()


def _check_folder(url: ParsedURL) -> None:
    if url.folder is not None and not url.folder.is_dir():
        raise Failure(f"no such folder {str(url.folder)!r} (in {url.shown!r})")


def _check_codec(url: ParsedURL) -> None:
    """Refuse to unpickle unless the URL asks for it: a value planted by anyone who can
    write the storage would run its code here."""
    stages = url.codec.stages if url.codec is not None else ()
    if not url.codec_named and any(isinstance(stage, Pickle) for stage in stages):
        raise UsageError(
            f"{url.shown!r} stores pickles (the default codec), and reading a pickle runs "
            "any code its writer put in it: add codec=pickle to the URL if you trust "
            "everyone who can write there, or secret= to accept signed values only"
        )


# -- the simple commands -------------------------------------------------------------


def run_ls(args: argparse.Namespace) -> int:
    """``pystorage ls URL``: every key, one a line."""
    end = b"\0" if args.null else b"\n"
    out = sys.stdout.buffer
    with opened(parse(args.url), "keys") as storage:
        keys: Iterator[str] | list[str] = iter(storage)
        if args.sort:
            keys = sorted(keys)
        for key in keys:
            out.write(_encode_text(key) + end)
    out.flush()
    return 0


def run_get(args: argparse.Namespace) -> int:
    """``pystorage get URL KEY``: the value on stdout or in a file."""
    with opened(parse(args.url), "read") as storage:
        value = storage[args.key]
    if args.output is None:
        sys.stdout.buffer.write(render(value))
        sys.stdout.buffer.flush()
    else:  # a str exactly as stored, so that put -f and get -o round-trip
        Path(args.output).write_bytes(render(value, line=False))
    return 0


def render(value: Any, line: bool = True) -> bytes:
    """Bytes as they are; str as UTF-8, ending with a newline when ``line``; other
    objects as a JSON line if they can be, else as their repr."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return _encode_text(value) + (b"\n" if line else b"")
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        text = repr(value)
    return _encode_text(text) + b"\n"


def _encode_text(text: str) -> bytes:
    return text.encode("utf-8", "backslashreplace")


def run_put(args: argparse.Namespace) -> int:
    """``pystorage put URL KEY [VALUE | -f FILE | -]``: store one value."""
    url = parse(args.url)
    value = _value_to_put(args, url.codec)
    with opened(url, "write") as storage:
        storage.set(args.key, value, ttl=args.ttl)
    return 0


def _value_to_put(args: argparse.Namespace, codec: BaseCodec | None) -> Any:
    """The value a ``put`` command line describes for a stack with ``codec``: str, bytes
    or (with --json, or a JSON codec given a file) an object."""
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
    parse_json = args.json
    if isinstance(data, bytes) and not _stores_bytes(codec):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(
                f"the value is not UTF-8 text, and codec={_label(codec)} stores text: "
                "use codec=raw (or msgpack, pickle) for bytes"
            ) from None
        # A file given to a JSON storage is a JSON document, not a string to quote.
        parse_json = parse_json or _serializer(codec) == "json"
    if not parse_json:
        return data
    try:
        return json.loads(data)
    except ValueError as exc:
        raise UsageError(f"the value is not valid JSON: {exc}") from None


def _stores_bytes(codec: BaseCodec | None) -> bool:
    """Whether ``codec`` takes bytes as a value (raw, pickle, msgpack do; text, json don't)."""
    if codec is None:
        return True
    try:
        codec.encode(b"")
    except Exception:  # the codec's own refusal, whatever its type
        return False
    return True


def _serializer(codec: BaseCodec | None) -> str:
    return codec.stages[0].name if codec is not None else ""


def _label(codec: BaseCodec | None) -> str:
    return codec.label if codec is not None else "none"


def run_rm(args: argparse.Namespace) -> int:
    """``pystorage rm URL KEY...``: remove keys; a missing one is an error unless --force."""
    missing = []
    with opened(parse(args.url), "keys") as storage, storage.top.exclusive():
        # In the storage's exclusive section: processes keeping a count of its entries
        # (limit=) learn that it changed.
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
    with opened(parse(args.url), "keys") as storage:
        lines = [("entries", len(storage)), *storage.stats().items()]
    for name, value in lines:
        print(name, value)
    return 0


# -- copy ----------------------------------------------------------------------------


@attrs.frozen
class Plan:
    """What a copy does with each key."""

    #: Keys DST had at the start (with --resume): not written again.
    present: frozenset[str]
    #: Remove from SRC, once every batch is written, what DST then holds.
    delete: bool


@attrs.define
class BatchResult:
    """What became of one batch of keys."""

    copied: int = 0
    #: Keys DST already had (--resume): not written.
    skipped: int = 0
    #: Keys listed in SRC but gone by the time they were read.
    gone: int = 0
    #: Keys removed from SRC (--delete).
    deleted: int = 0
    failed: list[tuple[str, str]] = attrs.Factory(list)
    #: Keys DST holds with SRC's value (written, or already there): --delete may remove them.
    held: list[str] = attrs.Factory(list)
    #: Keys --delete leaves in SRC, and why.
    kept: list[tuple[str, str]] = attrs.Factory(list)
    #: The seconds left to the keys read with a deadline: DST gets the same.
    ttls: dict[str, float] = attrs.Factory(dict)


@attrs.define
class Tally:
    """The running totals of a copy."""

    total: int
    #: How many keys DST had at the start (--resume).
    present: int = 0
    copied: int = 0
    skipped: int = 0
    gone: int = 0
    deleted: int = 0
    #: Entries DST's limit evicted while it was open: what it holds is fewer than copied.
    evicted: int = 0
    failed: list[tuple[str, str]] = attrs.Factory(list)
    held: list[str] = attrs.Factory(list)
    kept: list[tuple[str, str]] = attrs.Factory(list)
    #: Set once the copy is written and the deletes from SRC begin (--delete).
    deleting: bool = False
    #: Keys an error stopped the copy before it wrote them (the keys of the batch that
    #: raised, whose write may have been cut short, and of the batches never begun).
    unwritten: int = 0
    #: Keys an error stopped --delete before it removed them from SRC (for the batch that
    #: raised, perhaps some were): each is held by DST, and perhaps still in SRC.
    undeleted: int = 0

    @property
    def done(self) -> int:
        return self.copied + self.skipped + self.gone + self.failures

    @property
    def failures(self) -> int:
        """The keys the copy did not write: refused one by one, or stopped by an error."""
        return len(self.failed) + self.unwritten

    def stop(self, keys: int) -> None:
        """An error stopped the copy with ``keys`` not done by the current phase."""
        if self.deleting:
            self.undeleted += keys
        else:
            self.unwritten += keys

    def add(self, result: BatchResult) -> None:
        self.copied += result.copied
        self.skipped += result.skipped
        self.gone += result.gone
        self.deleted += result.deleted
        self.failed.extend(result.failed)
        self.held.extend(result.held)
        self.kept.extend(result.kept)


def run_copy(args: argparse.Namespace) -> int:
    """``pystorage copy SRC DST``: every entry of SRC into DST, in concurrent batches;
    with --delete, then removes from SRC what DST holds at the end."""
    src_url, dst_url = parse(args.src), parse(args.dst)
    _check_folder(src_url)
    _check_codec(src_url)
    _check_codec(dst_url)
    _refuse_one_storage(src_url, dst_url, args.delete)
    with (
        opened(src_url, "read") as src,
        opened(dst_url, "write") as dst,
        opened(src_url, "keys") as src_keys,
    ):
        keys = list(dict.fromkeys(src))  # a Redis SCAN may list a key twice
        present = frozenset(dst).intersection(keys) if args.resume else frozenset()
        plan = Plan(present=present, delete=args.delete)
        tally = Tally(total=len(keys), present=len(present))
        progress = make_progress(sys.stderr, tally, quiet=args.quiet)
        started = time.monotonic()
        try:
            try:
                run_batches(copy_batch, src, dst, keys, args, plan, tally, progress)
            finally:
                progress.finish(tally.done, tally.failures)
            if args.delete:
                # Only now: a later batch may have evicted an earlier one from DST. The
                # deletes go through SRC's keys-only stack: no layer of it decodes a value.
                if not args.quiet:
                    print(f"{PROG}: deleting from SRC what DST holds", file=sys.stderr)
                tally.deleting = True
                silent = Progress(sys.stderr, len(tally.held), time.monotonic)
                run_batches(delete_batch, src_keys, dst, tally.held, args, plan, tally, silent)
        finally:
            # Also when an error stops the copy (main prints it last): the counts then
            # say what was done before it, and what it left undone.
            tally.evicted = dst.stats().get("evictions", 0)
            print(summary(tally, args.delete, time.monotonic() - started), file=sys.stderr)
            status = _report(tally)
    return status


def _refuse_one_storage(src_url: ParsedURL, dst_url: ParsedURL, delete: bool) -> None:
    """A usage error if SRC and DST hold the same entries, however their URLs are spelled,
    or if --delete would move entries into a memory that ends with this command.

    Only their backends are opened: a DST with limit= would evict at its opening.
    """
    from pystorage.layers import LRU, Memory

    with (
        src_url.build(limit=False, values=False) as src,
        dst_url.build(limit=False, values=False) as dst,
    ):
        if same_storage(src.layers[-1], dst.layers[-1]):
            raise UsageError("SRC and DST are the same storage: copy to another place")
        if delete and isinstance(dst.layers[-1], (Memory, LRU)):
            raise UsageError("DST is a memory of this command, gone when it ends: no --delete")


Batch = Callable[[Storage, Storage, list[str], Plan, bool], BatchResult]


def run_batches(
    batch: Batch,
    src: Storage,
    dst: Storage,
    keys: list[str],
    args: argparse.Namespace,
    plan: Plan,
    tally: Tally,
    progress: Progress,
) -> None:
    """Run ``batch`` on ``keys`` split in batches of ``args.batch``, ``args.workers`` of
    them at a time; the first one alone, and told that it is the first.

    If a batch raises, the batches not begun are cancelled, those running finish and are
    counted, the keys of the one that raised and of the cancelled ones go to
    ``tally.stop``, and the first error is raised again.
    """
    batches = [keys[i : i + args.batch] for i in range(0, len(keys), args.batch)]
    if not batches:
        return
    try:
        tally.add(batch(src, dst, batches[0], plan, True))
    except Exception:
        tally.stop(len(keys))
        raise
    progress.update(tally.done, tally.failures)
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    executor = ThreadPoolExecutor(max_workers=args.workers, thread_name_prefix="copy")
    error: Exception | None = None
    try:
        sizes: dict[Future[BatchResult], int] = {
            executor.submit(batch, src, dst, chunk, plan, False): len(chunk)
            for chunk in batches[1:]
        }
        pending = set(sizes)
        while pending:
            finished, pending = wait(pending, timeout=REDRAW_INTERVAL, return_when=FIRST_COMPLETED)
            for future in finished:
                if future.cancelled():
                    tally.stop(sizes[future])
                    continue
                try:
                    tally.add(future.result())
                except Exception as exc:
                    tally.stop(sizes[future])
                    if error is None:
                        error = exc
                        for waiting in pending:
                            waiting.cancel()  # those already running cannot be, and finish
            progress.update(tally.done, tally.failures)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    if error is not None:
        raise error


def copy_batch(
    src: Storage, dst: Storage, keys: list[str], plan: Plan, first: bool = False
) -> BatchResult:
    """Read ``keys`` from ``src`` and write them to ``dst``: one get_many and one set_many,
    unless a value cannot be decoded or encoded; then key by key, to name the culprits.

    With ``plan.delete``, keys DST already has are read on both sides and compared: the
    ones that match were copied by an interrupted ``copy --delete`` and can go from SRC.
    """
    result = BatchResult()
    if not plan.delete:
        todo = [key for key in keys if key not in plan.present]
        result.skipped = len(keys) - len(todo)
        keys = todo
    values = _read(src, keys, result)
    result.gone = len(keys) - len(values) - len(result.failed)
    fresh = {key: value for key, value in values.items() if key not in plan.present}
    result.held = _write(dst, fresh, result)
    result.copied = len(result.held)
    if plan.delete:
        already = [key for key in values if key in plan.present]
        result.skipped = len(already)
        theirs = _read_back(dst, already)
        for key in already:
            if key not in theirs:
                result.kept.append((key, "DST has a value that cannot be read"))
            elif _equal(theirs[key], values[key]):
                result.held.append(key)
            else:
                result.kept.append((key, "DST already has another value (--resume keeps it)"))
    return result


def delete_batch(
    src: Storage, dst: Storage, keys: list[str], plan: Plan, first: bool = False
) -> BatchResult:
    """Remove from ``src`` those ``keys`` that ``dst`` returns now; the others stay.

    The ``first`` batch is checked after its delete: if the entries went from DST too,
    SRC and DST are one storage reached two ways that ``same_storage`` cannot tell apart
    (a network share mounted twice); they are written back and the copy stops.
    """
    result = BatchResult()
    held = _read_back(dst, keys)
    movable = [key for key in keys if key in held]
    result.kept = [
        (key, "not readable in DST at the end of the copy") for key in keys if key not in held
    ]
    if not movable:
        return result
    with src.top.exclusive():  # processes counting SRC's entries (limit=) learn of it
        src.delete_many(movable)
    result.deleted = len(movable)
    if first and movable[0] not in dst:
        dst.set_many({key: held[key] for key in movable})
        raise Failure(
            "SRC and DST are one storage: deleting from SRC removed the entries from DST "
            f"too. The {len(movable)} entries concerned were written back through DST, and "
            "nothing else was deleted"
        )
    return result


def _read_back(dst: Storage, keys: list[str]) -> dict[str, Any]:
    """The values of ``keys`` that ``dst`` returns now; a value it cannot decode is left out."""
    if not keys:
        return {}
    try:
        return dst.get_many(keys)
    except CodecError:
        pass
    found = {}
    for key in keys:
        try:
            found[key] = dst[key]
        except (KeyError, CodecError):
            continue
    return found


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # an == that raises (arrays...) proves nothing: not equal
        return False


def _read(src: Storage, keys: list[str], result: BatchResult) -> dict[str, Any]:
    """The values of ``keys`` in ``src``; those with a deadline go to ``result.ttls``."""
    try:
        found = src.get_many_with_ttl(keys)
    except (CodecError, InvalidKeyError):
        found = {}
        for key in keys:
            try:
                found[key] = src.get_with_ttl(key)
            except KeyError:
                continue
            except (CodecError, InvalidKeyError) as exc:
                result.failed.append((key, str(exc)))
    result.ttls = {key: ttl for key, (_, ttl) in found.items() if ttl is not None}
    return {key: value for key, (value, _) in found.items()}


def _write(dst: Storage, values: dict[str, Any], result: BatchResult) -> list[str]:
    """Store ``values`` in ``dst``, each with the time it had left in SRC; the keys
    written (failures go to ``result``)."""
    lasting = {key: value for key, value in values.items() if key not in result.ttls}
    try:
        dst.set_many(lasting)
        written = list(lasting)
        singles = {key: value for key, value in values.items() if key in result.ttls}
    except (CodecError, InvalidKeyError):
        written, singles = [], values  # key by key, to name the culprits
    for key, value in singles.items():
        try:
            dst.set(key, value, ttl=result.ttls.get(key))
        except (CodecError, InvalidKeyError) as exc:
            result.failed.append((key, str(exc)))
        else:
            written.append(key)
    return written


def summary(tally: Tally, delete: bool, elapsed: float) -> str:
    """The last line of a copy: what was copied, skipped, failed, deleted and evicted,
    and how fast."""
    parts = [
        f"copied {tally.copied}",
        f"skipped {tally.skipped}",
        f"failed {tally.failures}",
    ]
    if tally.unwritten:
        parts.append("stopped by the error below")
    if tally.gone:
        parts.append(f"gone from SRC {tally.gone}")
    if delete:
        parts += [f"deleted from SRC {tally.deleted}", f"kept in SRC {len(tally.kept)}"]
    if tally.undeleted:
        parts.append(
            f"deleting stopped by the error below, {tally.undeleted} entries held by DST "
            "perhaps still in SRC"
        )
    if tally.evicted:
        parts.append(f"evicted by DST's limit {tally.evicted}")
    rate = tally.copied / elapsed if elapsed > 0 else 0.0
    return f"{PROG}: {', '.join(parts)} in {elapsed:.2f} s ({rate:,.0f} entries/s)"


def _report(tally: Tally) -> int:
    """Name the first few failed and kept keys on stderr; the exit status of the copy."""
    for what, entries in (("failed", tally.failed), ("kept in SRC", tally.kept)):
        for key, message in entries[:SHOWN_FAILURES]:
            print(f"{PROG}: {what} {key!r}: {_one_line(message)}", file=sys.stderr)
        if len(entries) > SHOWN_FAILURES:
            more = len(entries) - SHOWN_FAILURES
            print(f"{PROG}: ... and {more} more {what}", file=sys.stderr)
    return FAILURE if tally.failed or tally.kept else 0


# -- which storage a backend is ------------------------------------------------------


def same_storage(a: Layer, b: Layer) -> bool:
    """Whether backends ``a`` and ``b`` hold the same entries, judged from what they are
    (the folder on disk, the Redis server, the S3 endpoint), never from URL text."""
    from pystorage.layers import S3, Files, Redis

    if isinstance(a, Files) and isinstance(b, Files):
        return _same_folder(a.path, b.path) and _ending(a.suffix) == _ending(b.suffix)
    if isinstance(a, Redis) and isinstance(b, Redis):
        return a.prefix == b.prefix and _redis_identity(a) == _redis_identity(b)
    if isinstance(a, S3) and isinstance(b, S3):
        return (
            a.bucket == b.bucket
            and a.folder == b.folder
            and _same_endpoint(a.client.meta.endpoint_url, b.client.meta.endpoint_url)
        )
    return a is b  # memory://: every open is a new, empty memory


def _same_folder(a: Path, b: Path) -> bool:
    """The same folder, through symlinks, ``..``, bind mounts: the same device and inode."""
    try:
        return os.path.samefile(a, b)
    except OSError as exc:
        raise BackendError(f"cannot compare the folders {str(a)!r} and {str(b)!r}: {exc}") from exc


def _ending(suffix: str) -> str:
    """The end of the file names of ``Files(path, suffix)``: ``json`` and ``.json`` agree."""
    return "." + suffix.lstrip(".") if suffix.strip(".") else ""


def _redis_identity(backend: Redis) -> tuple[object, ...]:
    """The server (its run id, whatever the host name or address used to reach it) and
    the database number."""
    import redis

    client = backend.client
    kwargs = getattr(client, "connection_pool", None)
    options = kwargs.connection_kwargs if kwargs is not None else {}
    db = int(options.get("db", 0) or 0)
    try:
        return (client.info("server")["run_id"], db)
    except redis.ResponseError:  # INFO refused (a managed server): where it is, then
        where = options.get("path") or _addresses(options.get("host"), options.get("port"))
        return (where, options.get("port"), db)
    except redis.RedisError as exc:
        raise BackendError(f"cannot ask Redis which server it is: {exc}") from exc


def _same_endpoint(a: str, b: str) -> bool:
    """Two S3 endpoints on one port whose host names are equal or resolve to a common
    address (``localhost`` and ``127.0.0.1``)."""
    x, y = urlsplit(a), urlsplit(b)
    if _port(x) != _port(y):
        return False
    if x.hostname == y.hostname:
        return True
    return bool(_addresses(x.hostname, _port(x)) & _addresses(y.hostname, _port(y)))


def _port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def _addresses(host: Any, port: Any) -> frozenset[str]:
    """The IP addresses ``host`` resolves to (none if it does not)."""
    import socket

    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return frozenset()
    return frozenset(str(sockaddr[0]) for *_, sockaddr in found)


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
