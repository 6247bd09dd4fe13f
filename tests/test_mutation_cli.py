"""The ``pystorage`` command, run in this process (issue 24: `make mutation MODULE=cli`).

``tests/test_cli.py`` runs the command as a user does, in a child process, which mutmut
cannot map to the code it runs. These tests call ``main`` here, with stdin, stdout and
stderr of their own, and pin what a user sees: the output, every error line word for word,
the exit status, and what is stored, copied or removed. The parts a command line cannot
reach at will (the progress at a given time, a batch that fails, the summary of every
count) are driven directly with a clock of the test's own.

No test name (or parameter id) says "redis" or "s3": the mutation selection
(pyproject.toml) leaves those out as tests of servers. The Redis tests start the
session's own server (``redis_url``), as every Redis test does.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import math
import os
import pickle
import re
import shutil
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis

import pystorage
from pystorage import cli
from pystorage.cli import batches, common, copy, get, identity, ls, progress
from pystorage.cli.batches import BatchResult, Plan, Tally
from pystorage.cli.common import Failure, UsageError
from pystorage.errors import (
    BackendError,
    ConfigurationError,
    InvalidKeyError,
    UnsupportedError,
)
from pystorage.layers import Files, Memory
from pystorage.storage import Storage
from pystorage.testing import free_port
from pystorage.urls import parse
from tests.helpers import unique

ERROR = "pystorage: error: "
#: How long a batch waits for another thread (seconds): moments at rest, and a mutant
#: that never lets it go fails after this long.
WAIT = 10


@attrs.frozen
class Ran:
    """What one command line did: its exit status, stdout (bytes) and stderr."""

    status: int
    out: bytes
    err: str

    @property
    def text(self) -> str:
        return self.out.decode("utf-8")


@pytest.fixture
def run(capsysbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``run(*args, stdin=b"")``: the command line run by ``main`` in this process."""

    def run(*args: str, stdin: bytes = b"") -> Ran:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        capsysbinary.readouterr()
        try:
            status = cli.main(list(args))
        except SystemExit as exit:  # argparse: --help, --version, a usage error
            status = int(exit.code or 0)
        out, err = capsysbinary.readouterr()
        return Ran(status, out, err.decode("utf-8"))

    monkeypatch.setenv("COLUMNS", "1000")  # help text on one line: its words, not its wrapping
    return run


def failed(ran: Ran, status: int) -> str:
    """The one error line of a command that failed with ``status``, without its prefix."""
    assert ran.status == status, ran
    assert ran.out == b""
    lines = ran.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(ERROR), ran.err
    return lines[0][len(ERROR) :]


def fill(url: str, items: dict[str, Any], ttl: float | None = None) -> None:
    with pystorage.open(url) as storage:
        storage.set_many(items, ttl=ttl)


def remaining(storage: Storage, key: str) -> float:
    """The seconds ``key`` has left in ``storage`` (it must have a deadline)."""
    ttl = storage.get_with_ttl(key)[1]
    assert ttl is not None
    return ttl


def contents(url: str) -> dict[str, Any]:
    with pystorage.open(url) as storage:
        return storage.get_many(list(storage))


def records(count: int) -> dict[str, Any]:
    return {f"key-{i}": {"n": i} for i in range(count)}


@pytest.fixture
def folder(tmp_path: Path) -> str:
    """A JSON folder URL holding three entries."""
    url = f"file://{tmp_path}/store?codec=json"
    fill(url, {"a": 1, "b": "two", "c": [3]})
    return url


# -- main: statuses, errors, --debug ----------------------------------------------------


def test_main_reads_the_command_line_of_the_process(
    folder: str, monkeypatch: pytest.MonkeyPatch, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    monkeypatch.setattr(sys, "argv", ["pystorage", "ls", folder, "--sort"])
    assert cli.main() == 0
    assert capsysbinary.readouterr().out == b"a\nb\nc\n"


def test_a_missing_key_is_one_line_naming_it(run: Any, folder: str) -> None:
    assert failed(run("get", folder, "nope"), 1) == "no such key 'nope'"


def _raising(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> None:
    """Make ``pystorage ls`` raise ``error``, as a failure deep in a command would."""

    def raise_it(args: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr(ls, "run", raise_it)


@pytest.mark.parametrize(
    ("error", "status", "line"),
    [
        (KeyError(), 1, "no such key"),
        (KeyError("k\n1"), 1, "no such key 'k\\n1'"),
        (BackendError("cannot read\n  'k'"), 1, "cannot read 'k'"),
        (Failure("it went\twrong"), 1, "it went wrong"),
        (UsageError("use it\nthis way"), 2, "use it this way"),
        (ConfigurationError("bad option"), 2, "bad option"),
        (UnsupportedError("no TTL here"), 2, "no TTL here"),
        (InvalidKeyError("bad key"), 2, "bad key"),
        (
            OSError(2, "No such file or directory", "/no/file"),
            1,
            "/no/file: No such file or directory",
        ),
        (
            OSError(5, "Input/output error"),
            1,
            "unexpected OSError: [Errno 5] Input/output error (run with --debug for details)",
        ),
        (ImportError("boto3 is needed:\n pip install it"), 1, "boto3 is needed: pip install it"),
        (
            RuntimeError("it broke\nbadly"),
            1,
            "unexpected RuntimeError: it broke badly (run with --debug for details)",
        ),
        (KeyboardInterrupt(), 130, "interrupted"),
    ],
    # Plain ids: mutmut runs each test by its node id, which a "/" or a quote would break.
    ids=[
        "key-error-without-key",
        "key-error",
        "storage-error",
        "failure",
        "usage-error",
        "configuration-error",
        "unsupported",
        "invalid-key",
        "os-error-with-its-file",
        "os-error",
        "import-error",
        "unexpected",
        "interrupt",
    ],
)
def test_each_failure_is_one_line_with_its_status(
    run: Any, monkeypatch: pytest.MonkeyPatch, error: BaseException, status: int, line: str
) -> None:
    _raising(monkeypatch, error)
    assert failed(run("ls", "memory://"), status) == line


def test_an_os_error_without_its_reason_shows_the_error(
    run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    error = OSError()
    error.filename = "/some/file"
    _raising(monkeypatch, error)
    assert failed(run("ls", "memory://"), 1) == "/some/file: [Errno None] None: '/some/file'"


def test_debug_before_or_after_the_command_shows_the_traceback(run: Any, folder: str) -> None:
    for args in (["--debug", "get", folder, "nope"], ["get", folder, "nope", "--debug"]):
        with pytest.raises(KeyError, match="nope"):
            cli.main(args)
    assert run("--debug", "get", folder, "a").out == b"1\n"


def test_a_reader_gone_away_ends_quietly_with_stdout_on_dev_null(
    folder: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # `pystorage ls URL | head`: the pipe's reader is gone before the keys are written.
    read_end, write_end = os.pipe()
    os.close(read_end)
    pipe = io.TextIOWrapper(io.FileIO(write_end, "w"))
    opened = set(os.listdir("/proc/self/fd"))
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stdout", pipe)
        try:
            assert cli.main(["ls", folder]) == 0
            after = os.fstat(write_end)
            left = set(os.listdir("/proc/self/fd"))
        finally:
            pipe.close()  # its descriptor with it (now /dev/null's: no error at the flush)
    null = os.stat(os.devnull)
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == null.st_rdev
    assert capsys.readouterr().err == ""
    assert left == opened  # /dev/null was opened to take the pipe's place, then closed


# -- the parser: help, version, usage errors ---------------------------------------------


def _words(text: bytes | str) -> str:
    """The text with its whitespace made single spaces, between two spaces: a phrase is
    found in it as whole words (``f" {phrase} " in ...``)."""
    return f" {common.one_line(text.decode() if isinstance(text, bytes) else text)} "


def test_the_help_names_every_command_and_the_exit_statuses(run: Any) -> None:
    ran = run("--help")
    assert ran.status == 0
    shown = _words(ran.out)
    for expected in [
        "usage: pystorage [-h] [--version] [--debug] COMMAND ...",
        "Look into, edit and copy storages given as URLs (see pystorage.open): memory://, "
        "file:///path, sqlite:///path/file.db, redis://host:port/db (rediss:// for TLS, "
        "unix:///path/redis.sock), s3://bucket/folder, with options such as "
        "?codec=json&prefix=app:.",
        "--version show program's version number and exit",
        "--debug show tracebacks of errors",
        "commands: COMMAND ls list the keys get print a value put store a value rm remove "
        "keys stats count entries copy copy every entry to another storage",
        "Exit status: 0 on success, 1 on a failure at run time, 2 on a usage or URL error. "
        "Errors are one line on stderr; --debug shows the traceback.",
    ]:
        assert f" {expected} " in shown, expected


COMMAND_HELP = {
    "ls": [
        "usage: pystorage ls [-h] [--debug] [-s] [-0] URL",
        "Print every key, one a line.",
        "-s, --sort sort the keys",
        "-0, --null end each key with NUL instead of a newline",
    ],
    "get": [
        "usage: pystorage get [-h] [--debug] [-o FILE] URL KEY",
        "Write the value of KEY to stdout: bytes as they are, str as UTF-8, other objects "
        "as JSON (one line) if they can be, else as their repr.",
        "--output FILE write the value to FILE instead",
    ],
    "put": [
        "usage: pystorage put [-h] [--debug] [-f FILE] [--json] [--ttl SECONDS] URL KEY [VALUE]",
        "Store VALUE as a str, or the bytes of FILE (-f) or of stdin (-). With --json the "
        "text is parsed as JSON and the object stored.",
        "VALUE the value; - reads stdin",
        "--file FILE store the bytes of FILE",
        "--json parse the value as JSON",
        "--ttl SECONDS expire the entry (the stack must expire)",
    ],
    "rm": [
        "usage: pystorage rm [-h] [--debug] [-f] URL KEY [KEY ...]",
        "Remove each KEY.",
        "-f, --force ignore missing keys",
    ],
    "stats": [
        "usage: pystorage stats [-h] [--debug] URL",
        "Print the number of entries and the stack's counters, one 'name value' a line "
        "(counters count this process's operations only).",
    ],
    "copy": [
        "usage: pystorage copy [-h] [--debug] [--batch N] [--workers N] [--resume] "
        "[--delete] [-q] SRC DST",
        "Copy every entry of SRC to DST. Values are decoded by SRC's codec and encoded by "
        "DST's, so one copy changes codec or backend. Entries DST cannot take (e.g. a set "
        "into JSON) are counted as failed and named, and make the exit status 1; the others "
        "are copied, each with the time it has left.",
        "SRC the storage to read DST the storage to write",
        "--batch N keys per batch (100)",
        "--workers N batches in flight (4)",
        "--resume skip keys DST already has (listed once at start)",
        "--delete remove each entry from SRC once it is copied",
        "-q, --quiet no progress output",
        "Progress goes to stderr: a redrawn bar on a terminal, plain lines otherwise; a "
        "summary line ends every copy.",
    ],
}


@pytest.mark.parametrize("command", cli.COMMANDS)
def test_the_help_of_each_command(run: Any, command: str) -> None:
    ran = run(command, "--help")
    assert ran.status == 0
    shown = _words(ran.out)
    for expected in [*COMMAND_HELP[command], "--debug show tracebacks of errors"]:
        assert f" {expected} " in shown, expected


def test_version(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run("--version").out == f"pystorage {pystorage.__version__}\n".encode()
    monkeypatch.delattr(pystorage, "__version__")
    assert run("--version").out == b"pystorage unknown\n"


def test_a_command_line_without_a_command_or_with_a_typo_is_a_usage_error(run: Any) -> None:
    ran = run()
    assert ran.status == 2 and "the following arguments are required: COMMAND" in ran.err
    ran = run("--debug", "lss", "memory://")
    assert ran.status == 2 and "invalid choice: 'lss'" in ran.err
    for command in cli.COMMANDS:  # the whole parser, to list every command
        assert repr(command) in ran.err or f" {command}" in ran.err


def test_only_the_named_command_is_built(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[list[str]] = []
    build = cli.build_parser

    def recorded(only: str | None = None) -> argparse.ArgumentParser:
        parser = build(only)
        actions = parser._subparsers._group_actions  # type: ignore[union-attr]
        built.append(list(actions[0].choices))
        return parser

    monkeypatch.setattr(cli, "build_parser", recorded)
    run("--debug", "stats", "memory://")
    run("get")
    run("--help")
    run("-x")
    run("nothing")
    whole = list(cli.COMMANDS)
    assert built == [["stats"], ["get"], whole, whole, whole]


def test_a_parser_reads_two_command_lines_alike() -> None:
    parser = cli.build_parser()
    line = ["put", "memory://", "k", "--json", "[1]"]
    first, second = parser.parse_args(line), parser.parse_args(line)
    assert vars(first) == vars(second)
    assert (first.url, first.key, first.value, first.json) == ("memory://", "k", "[1]", True)


def test_options_and_arguments_mix_in_any_order(run: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/s?codec=json"
    assert run("put", url, "a", "--json", "[1]").status == 0
    assert run("put", "--json", url, "b", "[2]").status == 0
    assert run("put", url, "--json", "c", "[3]").status == 0
    assert contents(url) == {"a": [1], "b": [2], "c": [3]}


@pytest.mark.parametrize("value", ["0", "-1", "x", "1.5", ""], ids=["0", "-1", "x", "1.5", "empty"])
def test_counts_must_be_positive_whole_numbers(run: Any, value: str) -> None:
    for option in ("--batch", "--workers"):
        ran = run("copy", "memory://", "memory://", option, value)
        assert ran.status == 2
        expected = f"argument {option}: must be a positive whole number, not {value!r}"
        assert ran.err.splitlines()[-1] == f"pystorage copy: error: {expected}"


@pytest.mark.parametrize(
    "value",
    ["0", "-1", "-0.5", "x", "inf", "nan", ""],
    ids=["0", "-1", "-0.5", "x", "inf", "nan", "empty"],
)
def test_a_ttl_must_be_a_positive_finite_number(run: Any, value: str) -> None:
    ran = run("put", "memory://", "k", "v", "--ttl", value)
    assert ran.status == 2
    expected = f"argument --ttl: must be a positive number of seconds, not {value!r}"
    assert ran.err.splitlines()[-1] == f"pystorage put: error: {expected}"


def test_argument_types_take_their_smallest_values() -> None:
    assert common.positive_int("1") == 1 and common.positive_int("20") == 20
    assert common.seconds("0.25") == 0.25 and common.seconds("1e-9") == 1e-9
    assert common.seconds("1e300") == 1e300


# -- ls, get, put, rm, stats ---------------------------------------------------------------


def test_ls_lists_every_key_once(run: Any, folder: str) -> None:
    ran = run("ls", folder)
    assert ran.status == 0 and ran.err == ""
    assert sorted(ran.out.split(b"\n")) == [b"", b"a", b"b", b"c"]
    assert run("ls", folder, "-s").out == b"a\nb\nc\n"
    assert run("ls", folder, "--sort", "-0").out == b"a\0b\0c\0"
    assert run("ls", folder, "--null").out.count(b"\0") == 3


def test_ls_writes_a_key_utf8_cannot_hold_as_escapes(run: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/s?codec=json"
    fill(url, {"caf\u00e9 \udcff": 1})
    assert run("ls", url).out == "caf\u00e9 ".encode() + b"\\udcff\n"


def test_ls_of_an_empty_or_missing_folder(run: Any, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert run("ls", f"file://{tmp_path}/empty").out == b""
    missing = f"file://{tmp_path}/missing?codec=json"
    line = failed(run("ls", missing), 1)
    assert line == f"no such folder '{tmp_path}/missing' (in '{missing}')"
    assert not (tmp_path / "missing").exists()


def test_get_renders_each_kind_of_value(run: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/s?codec=pickle"
    fill(
        url,
        {
            "bytes": b"\x00\xff raw",
            "text": "caf\u00e9",
            "object": {"name": "caf\u00e9", "n": [1, 2.5, None, True]},
            "set": {7},
            "nan": math.nan,
            "surrogate": {"k": "\udcff"},
        },
    )
    assert run("get", url, "bytes").out == b"\x00\xff raw"
    assert run("get", url, "text").out == "caf\u00e9\n".encode()
    assert run("get", url, "object").out == (
        '{"name": "caf\u00e9", "n": [1, 2.5, null, true]}\n'.encode()
    )
    assert run("get", url, "set").out == b"{7}\n"
    assert run("get", url, "nan").out == b"nan\n"  # JSON has no NaN: its repr
    assert run("get", url, "surrogate").out == b'{"k": "\\udcff"}\n'


def test_get_writes_a_file_exactly(run: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/s?codec=pickle"
    fill(url, {"bytes": b"\x00\n", "text": "line\n", "object": [1]})
    for key, expected in [("bytes", b"\x00\n"), ("text", b"line\n"), ("object", b"[1]\n")]:
        out = tmp_path / f"{key}.out"
        ran = run("get", url, key, "-o", str(out))
        assert (ran.status, ran.out, ran.err) == (0, b"", "")
        assert out.read_bytes() == expected


def test_render_takes_every_kind_of_bytes() -> None:
    assert get.render(bytearray(b"ab")) == b"ab"
    assert get.render(memoryview(b"cd")) == b"cd"
    assert get.render("x", line=False) == b"x"
    assert get.render(["x"], line=False) == b'["x"]\n'


def test_reading_a_pickle_needs_the_codec_named(run: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/s"
    fill(url, {"k": 1})
    refusal = (
        f"'{url}' stores pickles (the default codec), and reading a pickle runs any code its "
        "writer put in it: add codec=pickle to the URL if you trust everyone who can write "
        "there, or secret= to accept signed values only"
    )
    assert failed(run("get", url, "k"), 2) == refusal
    assert failed(run("put", url, "k", "v"), 2) == refusal
    assert run("get", f"{url}?codec=pickle", "k").out == b"1\n"
    assert run("ls", url).out == b"k\n"  # keys only: no value is read
    assert run("stats", url).out == b"entries 1\n"
    assert run("rm", url, "k") == Ran(0, b"", "")
    assert contents(f"{url}?codec=pickle") == {}


class Planted:
    """Unpickling it makes a folder: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def test_keys_only_commands_decode_nothing(run: Any, tmp_path: Path) -> None:
    folder, marker = tmp_path / "store", tmp_path / "code-ran"
    Files(folder)
    (folder / "k").write_bytes(pickle.dumps(Planted(marker)))
    url = f"file://{folder}?codec=pickle&ttl=60&limit=5&stats=1"  # Expiry would read values
    assert run("ls", url).out == b"k\n"
    assert run("stats", url).text.splitlines()[0] == "entries 1"
    assert run("rm", url, "k").status == 0
    assert not marker.exists() and not (folder / "k").exists()


def test_reading_never_trims_a_count_limited_folder(run: Any, tmp_path: Path) -> None:
    plain = f"file://{tmp_path}/s?codec=json"
    fill(plain, records(8))
    limited = f"{plain}&limit=5"
    assert run("get", limited, "key-0").out == b'{"n": 0}\n'
    assert run("ls", limited).out.count(b"\n") == 8
    assert run("stats", limited).text.splitlines()[0] == "entries 8"
    assert len(contents(plain)) == 8
    assert run("put", limited, "new", "1").status == 0  # writing goes through the limit
    assert len(contents(plain)) == 5


def test_every_command_closes_its_storage(
    run: Any, folder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[Storage] = []
    close = Storage.close

    def recorded(self: Storage) -> None:
        closed.append(self)
        close(self)

    monkeypatch.setattr(Storage, "close", recorded)
    assert run("get", folder, "nope").status == 1
    assert run("stats", folder).status == 0
    assert len(closed) == 2


def test_put_stores_a_string_or_json(run: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/s?codec=json"
    assert run("put", url, "s", "[1]") == Ran(0, b"", "")
    assert run("put", url, "j", "[1]", "--json").status == 0
    assert contents(url) == {"s": "[1]", "j": [1]}
    line = failed(run("put", url, "x", "{nope", "--json"), 2)
    assert (
        line == "the value is not valid JSON: Expecting property name enclosed in double "
        "quotes: line 1 column 2 (char 1)"
    )
    assert "x" not in contents(url)


def test_put_reads_stdin_or_a_file(run: Any, tmp_path: Path) -> None:
    raw = f"file://{tmp_path}/raw?codec=raw"
    source = tmp_path / "value.bin"
    source.write_bytes(b"\xff\x00 bytes")
    assert run("put", raw, "stdin", "-", stdin=b"\xfe in").status == 0
    assert run("put", raw, "file", "-f", str(source)).status == 0
    assert run("put", raw, "file2", "--file", str(source)).status == 0
    assert contents(raw) == {
        "stdin": b"\xfe in",
        "file": source.read_bytes(),
        "file2": source.read_bytes(),
    }
    line = failed(run("put", raw, "x", "-f", str(tmp_path / "none")), 1)
    assert line == f"{tmp_path}/none: No such file or directory"


def test_put_of_bytes_into_a_text_codec(run: Any, tmp_path: Path) -> None:
    text, as_json = f"file://{tmp_path}/t?codec=text", f"file://{tmp_path}/j?codec=json"
    document = b'{"debug": true}'
    assert run("put", text, "k", "-", stdin=document).status == 0
    assert run("put", as_json, "k", "-", stdin=document).status == 0
    assert run("put", as_json, "s", "-", "--json", stdin=b'"x"').status == 0
    assert contents(text) == {"k": '{"debug": true}'}  # text: the string as it is
    assert contents(as_json) == {"k": {"debug": True}, "s": "x"}  # JSON: the document
    for url, label in [
        (text, "text"),
        (as_json, "json"),
        (f"file://{tmp_path}/g?codec=gzip-json", None),
    ]:
        ran = run("put", url, "bad", "-", stdin=b"\xff\xfe")
        if label is None:
            label = parse(url).codec.label  # type: ignore[union-attr]
        assert failed(ran, 2) == (
            f"the value is not UTF-8 text, and codec={label} stores text: use codec=raw "
            "(or msgpack, pickle) for bytes"
        )
    memory_value = cli.build_parser("put").parse_args(["put", "memory://", "k", "-"])
    assert memory_value.value == "-"


def test_put_into_a_memory_stores_bytes_as_they_are(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # memory:// has no codec: it takes any object, bytes too.
    from pystorage.cli import put

    source = tmp_path / "v"
    source.write_bytes(b"\xff{}")
    args = cli.build_parser("put").parse_args(["put", "memory://", "k", "-f", str(source)])
    assert put._value_to_put(args, None) == b"\xff{}"
    args = cli.build_parser("put").parse_args(["put", "memory://", "k", "[1]", "--json"])
    assert put._value_to_put(args, None) == [1]
    assert put._stores_bytes(None) and put._serializer(None) == ""


def test_put_takes_one_value(run: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/s?codec=json"
    assert failed(run("put", url, "k"), 2) == "put needs a VALUE, -f FILE, or - to read stdin"
    line = failed(run("put", url, "k", "v", "-f", str(tmp_path)), 2)
    assert line == "put takes a VALUE or -f FILE, not both"
    assert not (tmp_path / "s").exists() or contents(url) == {}


def test_put_with_a_ttl(run: Any, tmp_path: Path) -> None:
    url = f"file://{tmp_path}/s?codec=json"
    assert run("put", url, "k", "v", "--ttl", "30").status == 0
    assert run("put", url, "lasting", "v").status == 0
    with pystorage.open(url) as storage:
        assert 29 < remaining(storage, "k") <= 30
        assert storage.get_with_ttl("lasting") == ("v", None)


def test_rm_removes_keys_and_names_the_missing_ones(run: Any, folder: str) -> None:
    assert run("rm", folder, "a") == Ran(0, b"", "")
    assert sorted(contents(folder)) == ["b", "c"]
    assert failed(run("rm", folder, "b", "x"), 1) == "no such key 'x'"
    assert failed(run("rm", folder, "c", "y", "z"), 1) == "no such keys 'y', 'z'"
    assert contents(folder) == {}
    fill(folder, {"d": 4})
    assert run("rm", folder, "-f", "d", "e") == Ran(0, b"", "")
    assert run("rm", folder, "--force", "e") == Ran(0, b"", "")
    assert contents(folder) == {}


def test_stats_prints_the_entries_and_each_counter(run: Any, folder: str) -> None:
    assert run("stats", folder).text == "entries 3\n"
    counted = run("stats", folder + "&stats=1").text.splitlines()
    assert counted[0] == "entries 3"
    assert counted[1:] == [
        "hits 0",
        "misses 0",
        "writes 0",
        "deletes 0",
        "bytes_read 0",
        "bytes_written 0",
    ]


# -- copy ---------------------------------------------------------------------------------


SUMMARY = re.compile(r"pystorage: (.*) in \d+\.\d\d s \([\d,]+ entries/s\)$")


def summary_of(ran: Ran) -> str:
    """The counts of a copy's summary line (without the time it took)."""
    lines = [line for line in ran.err.splitlines() if SUMMARY.match(line)]
    assert len(lines) == 1, ran.err
    return SUMMARY.match(lines[0]).group(1)  # type: ignore[union-attr]


@pytest.fixture
def pair(tmp_path: Path) -> tuple[str, str]:
    """A SRC folder of 12 records and a DST folder, both JSON."""
    src, dst = f"file://{tmp_path}/src?codec=json", f"file://{tmp_path}/dst?codec=json"
    fill(src, records(12))
    return src, dst


def test_copy_writes_every_entry_and_reports_in_lines(run: Any, pair: tuple[str, str]) -> None:
    src, dst = pair
    ran = run("copy", src, dst, "--batch", "5", "--workers", "2")
    assert ran.status == 0 and ran.out == b""
    assert contents(dst) == records(12) and contents(src) == records(12)
    lines = ran.err.splitlines()
    assert lines[0] == "pystorage: copying 12 entries"
    assert all(
        re.fullmatch(r"pystorage: copy \d+/12 \d+% [\d,]+ entries/s ETA \S+", line)
        for line in lines[1:-1]
    ), lines
    assert lines[-2].startswith("pystorage: copy 12/12 100% ")
    assert summary_of(ran) == "copied 12, skipped 0, failed 0"


def test_copy_quietly_prints_the_summary_only(run: Any, pair: tuple[str, str]) -> None:
    src, dst = pair
    for quiet in ("-q", "--quiet"):
        ran = run("copy", src, dst, quiet, "--batch", "1")
        assert ran.status == 0 and len(ran.err.splitlines()) == 1
        assert summary_of(ran) == "copied 12, skipped 0, failed 0"


def test_copy_of_one_entry_says_entry(run: Any, tmp_path: Path) -> None:
    src = f"file://{tmp_path}/src?codec=json"
    fill(src, {"only": 1})
    ran = run("copy", src, f"file://{tmp_path}/dst?codec=json")
    assert ran.err.splitlines()[0] == "pystorage: copying 1 entry"
    empty = f"file://{tmp_path}/empty?codec=json"
    (tmp_path / "empty").mkdir()
    ran = run("copy", empty, f"file://{tmp_path}/dst2?codec=json")
    assert ran.err.splitlines()[0] == "pystorage: copying 0 entries"
    assert summary_of(ran) == "copied 0, skipped 0, failed 0" and ran.status == 0


def test_copy_resume_skips_what_dst_has(run: Any, pair: tuple[str, str]) -> None:
    src, dst = pair
    fill(dst, {"key-0": "mine", "key-1": "mine", "other": 0})
    ran = run("copy", src, dst, "--resume", "--batch", "4")
    assert ran.status == 0
    assert ran.err.splitlines()[0] == "pystorage: copying 12 entries (2 already in DST)"
    assert summary_of(ran) == "copied 10, skipped 2, failed 0"
    assert contents(dst) == {**records(12), "key-0": "mine", "key-1": "mine", "other": 0}
    ran = run("copy", src, dst)  # without --resume: everything again
    assert summary_of(ran) == "copied 12, skipped 0, failed 0"
    assert contents(dst)["key-0"] == {"n": 0}


def test_copy_keeps_the_time_each_entry_has_left(run: Any, tmp_path: Path) -> None:
    src, dst = f"file://{tmp_path}/src?codec=json", f"file://{tmp_path}/dst?codec=json"
    fill(src, {"short": 1, "short2": 2}, ttl=100)
    fill(src, {"lasting": 3})
    assert run("copy", src, dst, "-q", "--batch", "3").status == 0
    with pystorage.open(dst) as storage:
        for key in ("short", "short2"):
            assert 90 < remaining(storage, key) <= 100
        assert storage.get_with_ttl("lasting") == (3, None)
        assert storage.get_many(["short", "short2", "lasting"]) == {
            "short": 1,
            "short2": 2,
            "lasting": 3,
        }


def test_copy_names_what_dst_cannot_take(run: Any, tmp_path: Path) -> None:
    src, dst = f"file://{tmp_path}/src?codec=pickle", f"file://{tmp_path}/dst?codec=json"
    fill(src, {**{f"set-{i}": {i} for i in range(7)}, "fine": [1]})
    fill(src, {"timed": {1.5}}, ttl=100)
    ran = run("copy", src, dst, "-q", "--batch", "20")
    assert ran.status == 1
    assert summary_of(ran) == "copied 1, skipped 0, failed 8"
    assert contents(dst) == {"fine": [1]}
    failures = [line for line in ran.err.splitlines() if line.startswith("pystorage: failed")]
    assert len(failures) == 5
    assert all(
        re.fullmatch(
            r"pystorage: failed '(set-\d|timed)': the value for key '\1' \(set\) cannot be "
            r"encoded as json: TypeError: Object of type set is not JSON "
            r"serializable",
            line,
        )
        for line in failures
    ), failures
    assert ran.err.splitlines()[-1] == "pystorage: ... and 3 more failed"


def test_copy_names_what_src_cannot_decode(run: Any, tmp_path: Path) -> None:
    src, dst = f"file://{tmp_path}/src?codec=json", f"file://{tmp_path}/dst?codec=json"
    fill(src, {"good": 1})
    (tmp_path / "src" / "bad").write_bytes(b"{not json")
    Files(tmp_path / "src")
    ran = run("copy", src, dst, "-q")
    assert ran.status == 1 and summary_of(ran) == "copied 1, skipped 0, failed 1"
    line = ran.err.splitlines()[-1]
    assert line.startswith("pystorage: failed 'bad': ") and "'bad'" in line[25:]
    assert contents(dst) == {"good": 1}


def test_copy_refuses_a_missing_src_and_pickles_on_either_side(run: Any, tmp_path: Path) -> None:
    missing = f"file://{tmp_path}/missing?codec=json"
    dst = f"file://{tmp_path}/dst?codec=json"
    assert failed(run("copy", missing, dst), 1) == (
        f"no such folder '{tmp_path}/missing' (in '{missing}')"
    )
    src = f"file://{tmp_path}/src?codec=json"
    fill(src, {"k": 1})
    pickles = f"file://{tmp_path}/p"
    assert failed(run("copy", src, pickles), 2).startswith(f"'{pickles}' stores pickles")
    assert not (tmp_path / "p").exists()
    fill(pickles, {"k": 1})
    assert failed(run("copy", src, pickles), 2).startswith(f"'{pickles}' stores pickles")
    assert failed(run("copy", pickles, dst), 2).startswith(f"'{pickles}' stores pickles")
    assert not (tmp_path / "dst").exists()


def test_copy_into_the_same_folder_is_refused(run: Any, tmp_path: Path) -> None:
    src = f"file://{tmp_path}/src?codec=json"
    fill(src, records(3))
    (tmp_path / "link").symlink_to(tmp_path / "src")
    for same in (f"file://{tmp_path}/./src?codec=pickle", f"file://{tmp_path}/link?codec=raw"):
        line = failed(run("copy", src, same, "--delete"), 2)
        assert line == "SRC and DST are the same storage: copy to another place"
    assert contents(src) == records(3)


@pytest.mark.parametrize("dst", ["memory://", "memory://?lru=10"], ids=["memory", "lru"])
def test_delete_into_a_memory_is_refused(run: Any, pair: tuple[str, str], dst: str) -> None:
    src, _ = pair
    line = failed(run("copy", src, dst, "--delete"), 2)
    assert line == "DST is a memory of this command, gone when it ends: no --delete"
    ran = run("copy", src, dst, "-q")  # a copy into it is allowed (and gone)
    assert ran.status == 0 and summary_of(ran).startswith("copied 12, skipped 0, failed 0")
    assert contents(src) == records(12)


def test_copy_delete_moves_every_entry(run: Any, pair: tuple[str, str]) -> None:
    src, dst = pair
    ran = run("copy", src, dst, "--delete", "--batch", "5")
    assert ran.status == 0
    assert "pystorage: deleting from SRC what DST holds" in ran.err.splitlines()
    assert summary_of(ran) == ("copied 12, skipped 0, failed 0, deleted from SRC 12, kept in SRC 0")
    assert contents(dst) == records(12) and contents(src) == {}
    ran = run("copy", src, dst, "--delete", "-q")
    assert ran.err.splitlines()[0].startswith("pystorage: copied 0, skipped 0, failed 0, ")


def test_copy_delete_keeps_what_dst_evicted(run: Any, pair: tuple[str, str]) -> None:
    src, dst = pair
    ran = run("copy", src, f"{dst}&limit=5", "--delete", "--batch", "4", "--workers", "1")
    assert ran.status == 1
    counts = summary_of(ran)
    assert counts == (
        "copied 12, skipped 0, failed 0, deleted from SRC 5, kept in SRC 7, "
        "evicted by DST's limit 7"
    )
    kept = [line for line in ran.err.splitlines() if "kept in SRC '" in line]
    assert len(kept) == 5 and all(
        re.fullmatch(
            r"pystorage: kept in SRC 'key-\d+': not readable in DST at the end of "
            r"the copy",
            line,
        )
        for line in kept
    ), kept
    assert ran.err.splitlines()[-1] == "pystorage: ... and 2 more kept in SRC"
    assert len(contents(src)) == 7 and len(contents(dst)) == 5
    assert set(contents(src)).isdisjoint(contents(dst))


def test_copy_reports_evictions_without_delete(run: Any, pair: tuple[str, str]) -> None:
    src, dst = pair
    ran = run("copy", src, f"{dst}&limit=10", "-q", "--batch", "12")
    assert ran.status == 0
    assert summary_of(ran) == "copied 12, skipped 0, failed 0, evicted by DST's limit 2"


def test_delete_resume_removes_what_dst_holds_alike(run: Any, pair: tuple[str, str]) -> None:
    src, dst = pair
    fill(dst, {"key-0": {"n": 0}, "key-1": "another value"})
    ran = run("copy", src, dst, "--delete", "--resume", "-q")
    assert ran.status == 1
    assert summary_of(ran) == ("copied 10, skipped 2, failed 0, deleted from SRC 11, kept in SRC 1")
    assert ran.err.splitlines()[-1] == (
        "pystorage: kept in SRC 'key-1': DST already has another value (--resume keeps it)"
    )
    assert contents(src) == {"key-1": {"n": 1}}
    assert contents(dst) == {**records(12), "key-1": "another value"}


def test_delete_resume_keeps_what_dst_cannot_read(
    run: Any, pair: tuple[str, str], tmp_path: Path
) -> None:
    src, dst = pair
    fill(dst, {"key-0": {"n": 0}})
    (tmp_path / "dst" / "key-1").write_bytes(b"{broken")
    ran = run("copy", src, dst, "--delete", "--resume", "-q")
    assert ran.status == 1
    assert ran.err.splitlines()[-1] == (
        "pystorage: kept in SRC 'key-1': DST has a value that cannot be read"
    )
    assert contents(src) == {"key-1": {"n": 1}}


# -- copy's parts, driven directly ---------------------------------------------------------


def _memory(items: dict[str, Any] | None = None) -> Storage:
    storage = Storage(Memory())
    storage.set_many(items or {})
    return storage


def test_summary_names_every_count() -> None:
    tally = Tally(
        total=40,
        present=1,
        copied=10,
        skipped=1,
        gone=3,
        deleted=4,
        evicted=6,
        failed=[("f", "bad")],
        kept=[("k", "why")],
        unwritten=1,
        undeleted=5,
    )
    assert copy.summary(tally, True, 2.0) == (
        "pystorage: copied 10, skipped 1, failed 2, stopped by the error below, gone from "
        "SRC 3, deleted from SRC 4, kept in SRC 1, deleting stopped by the error below, 5 "
        "entries held by DST perhaps still in SRC, evicted by DST's limit 6 in 2.00 s "
        "(5 entries/s)"
    )
    assert copy.summary(Tally(total=0), False, 0.0) == (
        "pystorage: copied 0, skipped 0, failed 0 in 0.00 s (0 entries/s)"
    )
    assert copy.summary(Tally(total=5000, copied=5000), False, 0.5) == (
        "pystorage: copied 5000, skipped 0, failed 0 in 0.50 s (10,000 entries/s)"
    )
    assert copy.summary(Tally(total=1, gone=1), True, 1.0) == (
        "pystorage: copied 0, skipped 0, failed 0, gone from SRC 1, deleted from SRC 0, "
        "kept in SRC 0 in 1.00 s (0 entries/s)"
    )


def test_report_names_five_of_each_and_counts_the_others(
    capsys: pytest.CaptureFixture[str],
) -> None:
    failures = [(f"f{i}", f"cannot\n encode {i}") for i in range(6)]
    kept = [(f"k{i}", "gone") for i in range(5)]
    assert copy._report(Tally(total=11, failed=failures, kept=kept)) == 1
    assert capsys.readouterr().err.splitlines() == [
        *(f"pystorage: failed 'f{i}': cannot encode {i}" for i in range(5)),
        "pystorage: ... and 1 more failed",
        *(f"pystorage: kept in SRC 'k{i}': gone" for i in range(5)),
    ]
    assert copy._report(Tally(total=1, kept=[("k", "gone")])) == 1
    assert copy._report(Tally(total=1, failed=[("f", "bad")])) == 1
    capsys.readouterr()
    assert copy._report(Tally(total=1, copied=1)) == 0
    assert capsys.readouterr().err == ""


def test_a_tally_adds_results_and_counts_what_an_error_stopped() -> None:
    tally = Tally(total=20)
    tally.add(
        BatchResult(
            copied=2,
            skipped=3,
            gone=1,
            deleted=4,
            failed=[("f", "x")],
            held=["h"],
            kept=[("k", "y")],
        )
    )
    tally.add(BatchResult(copied=1, failed=[("g", "z")], held=["i"]))
    assert (tally.copied, tally.skipped, tally.gone, tally.deleted) == (3, 3, 1, 4)
    assert (tally.failed, tally.held, tally.kept) == (
        [("f", "x"), ("g", "z")],
        ["h", "i"],
        [("k", "y")],
    )
    assert (tally.failures, tally.done) == (2, 9)
    tally.stop(4)
    assert (tally.unwritten, tally.undeleted, tally.failures, tally.done) == (4, 0, 6, 13)
    tally.deleting = True
    tally.stop(3)
    assert (tally.unwritten, tally.undeleted, tally.failures, tally.done) == (4, 3, 6, 13)


def test_copy_batch_reads_and_writes_with_each_ttl() -> None:
    src = _memory({"a": 1, "b": 2, "skip": 3})
    src.set("t", 4, ttl=50)
    dst = _memory()
    plan = Plan(present=frozenset({"skip"}), delete=False)
    result = batches.copy_batch(src, dst, ["a", "b", "skip", "t", "gone"], plan)
    assert (result.copied, result.skipped, result.gone, result.deleted) == (3, 1, 1, 0)
    assert sorted(result.held) == ["a", "b", "t"] and result.failed == result.kept == []
    assert list(result.ttls) == ["t"] and 49 < result.ttls["t"] <= 50
    assert dst.get_many(["a", "b", "t", "skip"]) == {"a": 1, "b": 2, "t": 4}
    assert 49 < remaining(dst, "t") <= 50 and dst.get_with_ttl("a") == (1, None)


def test_copy_batch_names_each_value_dst_refuses(tmp_path: Path) -> None:
    src = _memory({"fine": [1], "set": {1}, "late": {2}})
    src.set("timed", {3}, ttl=50)
    src.set("timed-fine", [2], ttl=50)
    with pystorage.open(f"file://{tmp_path}/dst?codec=json") as dst:
        result = batches.copy_batch(
            src,
            dst,
            ["fine", "set", "timed", "timed-fine", "late"],
            Plan(present=frozenset(), delete=False),
        )
        assert sorted(result.held) == ["fine", "timed-fine"] and result.copied == 2
        assert [key for key, _ in result.failed] == ["set", "timed", "late"]
        assert all(
            f"the value for key {key!r} (set) cannot be encoded as json" in message
            for key, message in result.failed
        )
        assert dst.get_many(["fine", "timed-fine", "set"]) == {"fine": [1], "timed-fine": [2]}
        assert 49 < remaining(dst, "timed-fine") <= 50


def test_copy_batch_names_each_value_src_cannot_decode(tmp_path: Path) -> None:
    with pystorage.open(f"file://{tmp_path}/src?codec=json") as src:
        src.set_many({"a": 1, "b": 2})
        src.set("t", 3, ttl=50)
        (tmp_path / "src" / "bad").write_bytes(b"{oops")
        dst = _memory()
        result = batches.copy_batch(
            src, dst, ["a", "bad", "gone", "t", "b"], Plan(present=frozenset(), delete=False)
        )
        assert [key for key, _ in result.failed] == ["bad"]
        assert "'bad'" in result.failed[0][1]
        assert (result.copied, result.gone) == (3, 1)
        assert dst.get_many(["a", "b", "t"]) == {"a": 1, "b": 2, "t": 3}
        assert 49 < remaining(dst, "t") <= 50


def test_copy_batch_with_delete_compares_what_dst_had() -> None:
    src = _memory({"same": [1], "other": 2, "new": 3, "broken": 4})
    dst = _memory({"same": [1], "other": 20})
    plan = Plan(present=frozenset({"same", "other", "broken"}), delete=True)
    result = batches.copy_batch(src, dst, ["same", "other", "new", "broken"], plan)
    assert (result.copied, result.skipped) == (1, 3)
    assert result.held == ["new", "same"]
    assert result.kept == [
        ("other", "DST already has another value (--resume keeps it)"),
        ("broken", "DST has a value that cannot be read"),
    ]
    assert dst.get_many(["same", "other", "new"]) == {"same": [1], "other": 20, "new": 3}


def test_delete_batch_removes_what_dst_holds() -> None:
    src = _memory({"a": 1, "b": 2, "c": 3})
    dst = _memory({"a": 1, "c": 30})
    plan = Plan(present=frozenset(), delete=True)
    result = batches.delete_batch(src, dst, ["a", "b", "c"], plan, True)
    assert result.deleted == 2 and result.held == [] and result.copied == 0
    assert result.kept == [("b", "not readable in DST at the end of the copy")]
    assert dict(src.items()) == {"b": 2} and dst.get_many(["a", "c"]) == {"a": 1, "c": 30}
    nothing = batches.delete_batch(src, dst, ["b"], plan, True)
    assert nothing.deleted == 0 and dict(src.items()) == {"b": 2}


def test_delete_batch_finds_one_storage_reached_two_ways(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/one?codec=json"
    fill(url, {"a": 1, "b": 2, "c": 3})
    with pystorage.open(url) as src, pystorage.open(url) as dst:
        with pytest.raises(Failure) as error:
            batches.delete_batch(src, dst, ["a", "b"], Plan(frozenset(), True), True)
        assert str(error.value) == (
            "SRC and DST are one storage: deleting from SRC removed the entries from DST "
            "too. The 2 entries concerned were written back through DST, and nothing else "
            "was deleted"
        )
        assert contents(url) == {"a": 1, "b": 2, "c": 3}
        with pytest.raises(Failure, match="The 1 entries concerned were written back"):
            batches.delete_batch(src, dst, ["c"], Plan(frozenset(), True), True)
        assert contents(url) == {"a": 1, "b": 2, "c": 3}
        result = batches.delete_batch(src, dst, ["c"], Plan(frozenset(), True), False)
        assert result.deleted == 1 and contents(url) == {"a": 1, "b": 2}


def test_read_back_leaves_out_what_dst_cannot_decode(tmp_path: Path) -> None:
    with pystorage.open(f"file://{tmp_path}/dst?codec=json") as dst:
        dst.set_many({"a": 1, "b": 2})
        (tmp_path / "dst" / "bad").write_bytes(b"{oops")
        assert batches._read_back(dst, ["a", "bad", "gone", "b"]) == {"a": 1, "b": 2}
        assert batches._read_back(dst, ["a"]) == {"a": 1}
        assert batches._read_back(dst, []) == {}


def test_values_whose_comparison_raises_are_not_equal() -> None:
    class Strict:
        def __eq__(self, other: object) -> bool:
            raise ValueError("ambiguous")

        __hash__ = object.__hash__

    assert not batches._equal(Strict(), Strict())
    assert batches._equal([1], [1]) is True and batches._equal(1, 2) is False


def test_read_names_keys_src_refuses() -> None:
    class Refusing(Memory):
        def get_many_with_ttl(self, keys: Any) -> Any:
            keys = list(keys)
            if "bad" in keys:  # a batch holding it is refused whole
                raise InvalidKeyError(
                    f"refused {len(keys)} keys" if len(keys) > 1 else "refused 'bad'"
                )
            return super().get_many_with_ttl(keys)

    src = Storage(Refusing())
    src.set_many({"a": 1, "bad": 2})
    result = BatchResult()
    assert batches._read(src, ["a", "bad", "gone"], result) == {"a": 1}
    assert result.failed == [("bad", "refused 'bad'")]


def test_write_names_keys_dst_refuses() -> None:
    class Refusing(Memory):
        def set_many(self, items: Any, ttl: float | None = None) -> None:
            if "bad" in items:  # a batch holding it is refused whole
                raise InvalidKeyError("refused 'bad'")
            super().set_many(items, ttl)

        def set(self, key: str, value: Any, ttl: float | None = None) -> None:
            self.set_many({key: value}, ttl)

    dst = Storage(Refusing())
    result = BatchResult(ttls={"t": 30.0})
    written = batches._write(dst, {"a": 1, "bad": 2, "t": 3}, result)
    assert written == ["a", "t"] and result.failed == [("bad", "refused 'bad'")]
    assert dst.get_many(["a", "bad", "t"]) == {"a": 1, "t": 3}
    assert 29 < remaining(dst, "t") <= 30


@attrs.define
class Recorder:
    """A batch that records the keys of each call, and raises for the keys named."""

    fail_on: str | None = None
    #: A key counted as failed (DST refused it), the others copied.
    refuse: str | None = None
    calls: list[tuple[list[str], bool]] = attrs.Factory(list)
    lock: threading.Lock = attrs.Factory(threading.Lock)

    def __call__(self, src: Any, dst: Any, keys: list[str], plan: Plan, first: bool) -> BatchResult:
        with self.lock:
            self.calls.append((keys, first))
        if self.fail_on in keys:
            raise BackendError(f"failed at {self.fail_on}")
        copied = [key for key in keys if key != self.refuse]
        failed = [(key, "refused") for key in keys if key == self.refuse]
        return BatchResult(copied=len(copied), held=copied, failed=failed)


@attrs.define
class Updates(progress.Progress):
    seen: list[tuple[int, int]] = attrs.Factory(list)

    def __init__(self) -> None:
        super().__init__(io.StringIO(), 0, lambda: 0.0)
        self.seen = []

    def update(self, done: int, failed: int = 0) -> None:
        self.seen.append((done, failed))


def _keys(count: int) -> list[str]:
    return [f"k{i:02}" for i in range(count)]


def test_run_batches_splits_the_keys_and_runs_the_first_alone() -> None:
    batch, tally, updates = Recorder(), Tally(total=11), Updates()
    args = argparse.Namespace(batch=3, workers=2)
    plan = Plan(frozenset(), False)
    batches.run_batches(batch, None, None, _keys(11), args, plan, tally, updates)  # type: ignore[arg-type]
    assert batch.calls[0] == (["k00", "k01", "k02"], True)
    assert sorted(batch.calls[1:]) == [
        (["k03", "k04", "k05"], False),
        (["k06", "k07", "k08"], False),
        (["k09", "k10"], False),
    ]
    assert tally.copied == 11 and sorted(tally.held) == _keys(11)
    assert updates.seen[0] == (3, 0) and updates.seen[-1] == (11, 0)
    refused = Recorder(refuse="k01")
    first = Updates()
    batches.run_batches(refused, None, None, _keys(3), args, plan, Tally(total=3), first)  # type: ignore[arg-type]
    assert first.seen == [(3, 1)]  # the failures of the first batch are shown at once
    assert [done for done, _ in updates.seen] == sorted(done for done, _ in updates.seen)
    batches.run_batches(batch, None, None, [], args, plan, tally, updates)  # type: ignore[arg-type]
    assert len(batch.calls) == 4


def test_run_batches_of_one_batch_runs_no_thread() -> None:
    batch, tally = Recorder(), Tally(total=2)
    args = argparse.Namespace(batch=2, workers=4)
    before = threading.active_count()
    batches.run_batches(
        batch,
        None,
        None,
        ["a", "b"],
        args,
        Plan(frozenset(), False),
        tally,  # type: ignore[arg-type]
        Updates(),
    )
    assert batch.calls == [(["a", "b"], True)] and tally.copied == 2
    assert threading.active_count() == before


def test_an_error_in_the_first_batch_stops_everything() -> None:
    batch, tally = Recorder(fail_on="k01"), Tally(total=9)
    args = argparse.Namespace(batch=3, workers=2)
    with pytest.raises(BackendError, match="failed at k01"):
        batches.run_batches(
            batch,
            None,
            None,
            _keys(9),
            args,
            Plan(frozenset(), False),  # type: ignore[arg-type]
            tally,
            Updates(),
        )
    assert len(batch.calls) == 1 and (tally.copied, tally.unwritten) == (0, 9)


def test_an_error_in_a_later_batch_cancels_those_not_begun() -> None:
    # One worker, batches of two: the third batch fails; the fourth, running by then,
    # waits until the failure is counted (the progress is updated after it), so that the
    # fifth and sixth have not begun and are cancelled.
    counted = threading.Event()

    class Waiting(Updates):
        def update(self, done: int, failed: int = 0) -> None:
            super().update(done, failed)
            if failed:
                counted.set()

    def batch(src: Any, dst: Any, keys: list[str], plan: Plan, first: bool) -> BatchResult:
        if keys[0] == "k06":
            assert counted.wait(timeout=WAIT)
        return failing(src, dst, keys, plan, first)

    failing, tally, updates = Recorder(fail_on="k04"), Tally(total=12), Waiting()
    args = argparse.Namespace(batch=2, workers=1)
    with pytest.raises(BackendError, match="failed at k04"):
        batches.run_batches(
            batch,
            None,
            None,
            _keys(12),
            args,
            Plan(frozenset(), False),  # type: ignore[arg-type]
            tally,
            updates,
        )
    assert [keys[0] for keys, _ in failing.calls] == ["k00", "k02", "k04", "k06"]
    assert (tally.copied, tally.unwritten, tally.undeleted) == (6, 6, 0)
    assert sorted(tally.held) == [*_keys(4), "k06", "k07"]
    assert updates.seen[-1] == (12, 6)


def test_workers_run_at_once() -> None:
    # Three batches after the first, three workers: each waits for the other two.
    barrier = threading.Barrier(3, timeout=WAIT)

    def batch(src: Any, dst: Any, keys: list[str], plan: Plan, first: bool) -> BatchResult:
        if not first:
            barrier.wait()
        return BatchResult(copied=len(keys))

    tally = Tally(total=4)
    args = argparse.Namespace(batch=1, workers=3)
    batches.run_batches(
        batch,
        None,
        None,
        _keys(4),
        args,
        Plan(frozenset(), False),
        tally,  # type: ignore[arg-type]
        Updates(),
    )
    assert tally.copied == 4


def test_the_progress_is_redrawn_while_no_batch_ends() -> None:
    # The second batch ends only once the progress has been updated twice more while it
    # ran (a terminal's bar shows the time going by, every REDRAW_INTERVAL).
    class Counting(Updates):
        def update(self, done: int, failed: int = 0) -> None:
            super().update(done, failed)
            if len(self.seen) >= 3:
                redrawn.set()

    redrawn = threading.Event()

    def batch(src: Any, dst: Any, keys: list[str], plan: Plan, first: bool) -> BatchResult:
        if not first:
            assert redrawn.wait(timeout=WAIT)
        return BatchResult(copied=len(keys))

    updates, tally = Counting(), Tally(total=2)
    args = argparse.Namespace(batch=1, workers=1)
    batches.run_batches(
        batch,
        None,
        None,
        ["a", "b"],
        args,
        Plan(frozenset(), False),
        tally,  # type: ignore[arg-type]
        updates,
    )
    assert tally.copied == 2 and updates.seen[:3] == [(1, 0), (1, 0), (1, 0)]


def test_an_interrupt_cancels_the_batches_not_begun_and_waits_for_the_running_one() -> None:
    # Ctrl-C reaches the main thread while it redraws the progress, with one batch
    # running and four waiting: those four never begin, and the running one ends before
    # the interrupt goes on.
    release, ended = threading.Event(), threading.Event()

    class Interrupted(Updates):
        def update(self, done: int, failed: int = 0) -> None:
            super().update(done, failed)
            if len(self.seen) == 2:  # the first redraw while the second batch runs
                release.set()
                raise KeyboardInterrupt

    def batch(src: Any, dst: Any, keys: list[str], plan: Plan, first: bool) -> BatchResult:
        result = recorder(src, dst, keys, plan, first)
        if keys == ["k01"]:
            assert release.wait(timeout=WAIT)
            ended.set()
        return result

    recorder, tally = Recorder(), Tally(total=6)
    args = argparse.Namespace(batch=1, workers=1)
    with pytest.raises(KeyboardInterrupt):
        batches.run_batches(
            batch,
            None,
            None,
            _keys(6),
            args,
            Plan(frozenset(), False),  # type: ignore[arg-type]
            tally,
            Interrupted(),
        )
    assert ended.is_set()  # waited for
    assert [keys for keys, _ in recorder.calls] == [["k00"], ["k01"]]  # the others cancelled


def test_a_copy_runs_batches_of_100_four_at_once_in_threads_named_copy(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = f"sqlite://{tmp_path}/src.db?codec=json"
    fill(src, {f"k{i:03}": i for i in range(750)})
    # The four batches after the first wait for each other: four threads, no fifth.
    barrier = threading.Barrier(4, timeout=WAIT)
    sizes, threads, waiting = [], set(), {"k100", "k200", "k300", "k400"}
    lock = threading.Lock()

    def batch(src: Any, dst: Any, keys: list[str], plan: Plan, first: bool) -> BatchResult:
        with lock:
            sizes.append(len(keys))
            if not first:
                threads.add(threading.current_thread().name)
        if keys[0] in waiting:
            barrier.wait()
        return BatchResult(copied=len(keys))

    pools: list[int] = []

    class Pool(concurrent.futures.ThreadPoolExecutor):  # how many threads each copy may run at once
        def __init__(self, max_workers: int, thread_name_prefix: str) -> None:
            super().__init__(max_workers, thread_name_prefix)
            pools.append(max_workers)

    monkeypatch.setattr(copy, "copy_batch", batch)
    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", Pool)
    ran = run("copy", src, "memory://", "-q")
    assert ran.status == 0 and summary_of(ran) == "copied 750, skipped 0, failed 0"
    assert sorted(sizes) == [50] + [100] * 7
    assert threads == {f"copy_{n}" for n in range(4)} and pools == [4]
    sizes.clear()
    waiting.clear()
    assert run("copy", src, "memory://", "-q", "--workers", "2", "--batch", "300").status == 0
    assert sorted(sizes) == [150, 300, 300] and pools == [4, 2]


def test_refusing_one_storage_opens_no_limit(run: Any, tmp_path: Path) -> None:
    plain = f"file://{tmp_path}/s?codec=json"
    fill(plain, records(8))
    for src, dst in [(plain, f"{plain}&limit=5"), (f"{plain}&limit=5", plain)]:
        line = failed(run("copy", src, dst), 2)
        assert line == "SRC and DST are the same storage: copy to another place"
        assert contents(plain) == records(8)  # nothing evicted by opening a limit


def test_one_folder_under_a_longer_stack_is_one_storage(run: Any, tmp_path: Path) -> None:
    src = f"file://{tmp_path}/s?codec=json"
    fill(src, records(3))
    for dst in (f"{src}&stats=1&ttl=60", f"{src}&lru=10&stats=1"):
        line = failed(run("copy", src, dst, "--delete"), 2)
        assert line == "SRC and DST are the same storage: copy to another place"
        assert failed(run("copy", dst, src), 2) == line
    assert contents(src) == records(3)


def test_the_summary_gives_the_time_the_copy_took(run: Any, pair: tuple[str, str]) -> None:
    src, dst = pair
    began = time.monotonic()
    ran = run("copy", src, dst, "-q")
    took = time.monotonic() - began
    found = re.search(r" in (\d+\.\d\d) s \(([\d,]+) entries/s\)$", ran.err.strip())
    assert found, ran.err
    seconds, rate = float(found.group(1)), int(found.group(2).replace(",", ""))
    assert 0 <= seconds <= took + 0.01
    # The rate is of the time before it was rounded to the hundredth shown.
    assert 12 / (seconds + 0.005) - 1 <= rate
    assert seconds <= 0.005 or rate <= 12 / (seconds - 0.005) + 1


def test_a_copy_on_a_terminal_ends_its_bar_with_the_failures(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dst = f"file://{tmp_path}/src?codec=pickle", f"file://{tmp_path}/dst?codec=json"
    fill(src, {"a": 1, "b": 2, "s1": {1}, "s2": {2}})
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert cli.main(["copy", src, dst, "--batch", "2"]) == 1
    shown = terminal.getvalue()
    bar, _, rest = shown.rpartition("\x1b[K\n")
    assert re.fullmatch(
        r"\[#{24}\] 4/4 100% [\d,]+ entries/s ETA 0:00 \(2 failed\)", bar.rpartition("\r")[2]
    ), shown
    assert rest.startswith("pystorage: copied 2, skipped 0, failed 2 in ")


# -- progress -------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_describe_says_how_far_how_fast_and_how_long() -> None:
    clock = Clock()
    line = progress.Progress(io.StringIO(), 1000, clock)
    assert line.describe(0) == "0/1000 0% 0 entries/s ETA --:--"
    clock.now += 10
    assert line.describe(450) == "450/1000 45% 45 entries/s ETA 0:12"
    assert line.describe(450, 3) == "450/1000 45% 45 entries/s ETA 0:12 (3 failed)"
    assert line.describe(0, 2) == "0/1000 0% 0 entries/s ETA --:-- (2 failed)"
    many = progress.Progress(io.StringIO(), 100_000, Clock(0.0))
    many.clock = Clock(2.0)
    assert many.describe(5000) == "5000/100000 5% 2,500 entries/s ETA 0:38"
    assert progress.Progress(io.StringIO(), 0, clock).describe(0) == (
        "0/0 100% 0 entries/s ETA --:--"
    )
    still = progress.Progress(io.StringIO(), 10, clock)
    assert still.describe(5) == "5/10 50% 0 entries/s ETA --:--"  # no time has passed
    assert progress.Progress(io.StringIO(), 10, clock).describe(9) == (
        "9/10 90% 0 entries/s ETA --:--"
    )
    quiet = progress.Progress(io.StringIO(), 10, clock)
    quiet.update(5)
    quiet.finish(10)
    assert quiet.stream.getvalue() == ""  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0, "0:00"),
        (0.49, "0:00"),
        (0.5, "0:01"),
        (7, "0:07"),
        (59.5, "1:00"),
        (750, "12:30"),
        (3599.4, "59:59"),
        (3600, "1:00:00"),
        (11045, "3:04:05"),
        (36000, "10:00:00"),
    ],
    ids=lambda value: str(value).replace(":", "."),  # no ":" in a node id
)
def test_durations(seconds: float, shown: str) -> None:
    assert progress._duration(seconds) == shown


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_redrawn_at_most_ten_times_a_second() -> None:
    stream, clock = Terminal(), Clock(0.0)
    bar = progress.make_progress(stream, Tally(total=48), clock=clock)
    assert isinstance(bar, progress.BarProgress)
    empty = "[" + "-" * 24 + "]"
    assert stream.getvalue() == f"\r{empty} 0/48 0% 0 entries/s ETA --:--\x1b[K"
    stream.truncate(0), stream.seek(0)
    clock.now = 0.05
    bar.update(12)
    assert stream.getvalue() == ""  # too soon
    clock.now = 0.1
    bar.update(12, 1)
    half = "[" + "#" * 6 + "-" * 18 + "]"
    assert stream.getvalue() == f"\r{half} 12/48 25% 120 entries/s ETA 0:00 (1 failed)\x1b[K"
    stream.truncate(0), stream.seek(0)
    clock.now = 0.15
    bar.update(24)
    assert stream.getvalue() == ""
    clock.now = 0.2
    bar.finish(48)
    full = "[" + "#" * 24 + "]"
    assert stream.getvalue() == f"\r{full} 48/48 100% 240 entries/s ETA 0:00\x1b[K\n"
    nothing = progress.BarProgress(Terminal(), 0, clock)
    assert nothing.stream.getvalue().startswith(f"\r{full} 0/0 100%")  # type: ignore[attr-defined]


def test_a_pipe_gets_a_line_at_each_tenth_or_every_ten_seconds() -> None:
    stream, clock = io.StringIO(), Clock(0.0)
    lines = progress.make_progress(stream, Tally(total=100, present=0), clock=clock)
    assert isinstance(lines, progress.LineProgress)

    def written() -> list[str]:
        text = stream.getvalue()
        stream.truncate(0), stream.seek(0)
        return text.splitlines()

    assert written() == ["pystorage: copying 100 entries"]
    clock.now = 1.0
    lines.update(9)
    assert written() == []  # still in the first tenth
    lines.update(10)
    assert written() == ["pystorage: copy 10/100 10% 10 entries/s ETA 0:09"]
    lines.update(10)
    lines.update(19)
    assert written() == []
    clock.now = 10.99
    lines.update(19)
    assert written() == []
    clock.now = 11.0  # ten seconds since the last line
    lines.update(19)
    assert written() == ["pystorage: copy 19/100 19% 2 entries/s ETA 0:47"]
    clock.now = 21.0
    lines.update(19)  # nothing new: no line, however long
    assert written() == []
    lines.update(45, 2)
    assert written() == ["pystorage: copy 45/100 45% 2 entries/s ETA 0:26 (2 failed)"]
    lines.finish(45, 2)
    assert written() == []  # already said
    lines.finish(50)
    assert written() == ["pystorage: copy 50/100 50% 2 entries/s ETA 0:21"]
    silent = progress.LineProgress(stream, 10, clock)
    silent.finish(0)
    assert written() == []


def test_a_line_progress_of_nothing_to_copy() -> None:
    stream, clock = io.StringIO(), Clock(5.0)
    lines = progress.LineProgress(stream, 0, clock)
    lines.update(0)
    assert stream.getvalue() == "pystorage: copy 0/0 100% 0 entries/s ETA --:--\n"
    lines.update(0)
    lines.finish(0)
    assert stream.getvalue().count("\n") == 1  # said once


def test_quiet_progress_says_nothing_even_on_a_terminal() -> None:
    stream = Terminal()
    quiet = progress.make_progress(stream, Tally(total=5, present=2), quiet=True)
    assert type(quiet) is progress.Progress and stream.getvalue() == ""
    assert quiet.total == 5 and quiet.clock is progress.time.monotonic


def test_streams_that_cannot_say_whether_they_are_terminals() -> None:
    closed = io.StringIO()
    closed.close()
    assert progress._is_terminal(closed) is False
    assert progress._is_terminal(object()) is False  # type: ignore[arg-type]
    assert progress._is_terminal(Terminal()) is True


class Flushed(io.StringIO):
    """A stream that remembers what it held each time it was flushed."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []

    def flush(self) -> None:
        self.flushed.append(self.getvalue())


def test_progress_lines_are_flushed_at_once() -> None:
    # A log or a pipe is block-buffered: each line is flushed as it is written.
    stream, clock = Flushed(), Clock(0.0)
    lines = progress.make_progress(stream, Tally(total=10), clock=clock)  # type: ignore[arg-type]
    assert stream.flushed == ["pystorage: copying 10 entries\n"]
    clock.now = 1.0
    lines.update(5)
    assert stream.flushed[-1].endswith("pystorage: copy 5/10 50% 5 entries/s ETA 0:01\n")
    assert len(stream.flushed) == 2


def test_the_first_entry_done_is_reported() -> None:
    stream, clock = io.StringIO(), Clock(0.0)
    lines = progress.LineProgress(stream, 10, clock)
    clock.now = 1.0
    lines.update(1)
    assert stream.getvalue() == "pystorage: copy 1/10 10% 1 entries/s ETA 0:09\n"
    ended = progress.LineProgress(io.StringIO(), 10, clock)
    ended.finish(1)
    assert ended.stream.getvalue().startswith("pystorage: copy 1/10 10% ")  # type: ignore[attr-defined]


def test_the_last_progress_names_the_failures() -> None:
    stream, clock = io.StringIO(), Clock(0.0)
    lines = progress.LineProgress(stream, 10, clock)
    clock.now = 2.0
    lines.finish(6, 3)
    assert stream.getvalue() == "pystorage: copy 6/10 60% 3 entries/s ETA 0:01 (3 failed)\n"
    terminal = Terminal()
    bar = progress.BarProgress(terminal, 10, clock)
    bar.finish(10, 2)
    assert terminal.getvalue().endswith(" 10/10 100% 0 entries/s ETA --:-- (2 failed)\x1b[K\n")


# -- identity: one storage, however it is spelled -----------------------------------------------


def _backend(url: str) -> Any:
    return parse(url).build(limit=False, values=False).layers[-1]


def test_one_folder_through_links_and_dots(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    real = _backend(f"file://{tmp_path}/real")
    for other in ("link", "real/../real", "./real"):
        assert identity.same_storage(real, _backend(f"file://{tmp_path}/{other}"))
    assert not identity.same_storage(real, _backend(f"file://{tmp_path}/other"))


def test_one_folder_with_two_suffixes_is_two_storages(tmp_path: Path) -> None:
    def files(suffix: str) -> Files:
        return Files(tmp_path / "s", suffix=suffix)

    assert identity.same_storage(files("json"), files(".json"))
    assert identity.same_storage(files(""), files(""))
    assert not identity.same_storage(files("json"), files("txt"))
    assert not identity.same_storage(files("json"), files(""))
    assert (identity._ending(""), identity._ending("."), identity._ending("..")) == ("", "", "")
    assert (identity._ending("json"), identity._ending("..json")) == (".json", ".json")
    assert (identity._ending("X"), identity._ending(".Xml")) == (".X", ".Xml")
    assert not identity.same_storage(files("X"), files(""))
    assert not identity.same_storage(files("Xml"), files("ml"))


def test_a_folder_gone_cannot_be_compared(tmp_path: Path) -> None:
    a, b = Files(tmp_path / "a"), Files(tmp_path / "b")
    shutil.rmtree(tmp_path / "b")
    with pytest.raises(BackendError) as error:
        identity.same_storage(a, b)
    assert str(error.value).startswith(
        f"cannot compare the folders '{tmp_path}/a' and '{tmp_path}/b': [Errno 2] "
    )


def test_memories_are_never_one_storage(tmp_path: Path) -> None:
    memory = Memory()
    assert identity.same_storage(memory, memory)
    assert not identity.same_storage(memory, Memory())
    assert not identity.same_storage(memory, _backend(f"file://{tmp_path}"))


def test_one_bucket_and_folder_reached_by_two_host_names() -> None:
    def bucket(url: str) -> Any:
        return _backend(url)

    here = bucket("s3://b/f?endpoint_url=http://127.0.0.1:9000")
    assert identity.same_storage(here, bucket("s3://b/f?endpoint_url=http://localhost:9000"))
    assert identity.same_storage(here, bucket("s3://b/f/?endpoint_url=http://127.0.0.1:9000"))
    assert not identity.same_storage(here, bucket("s3://c/f?endpoint_url=http://127.0.0.1:9000"))
    assert not identity.same_storage(here, bucket("s3://b/g?endpoint_url=http://127.0.0.1:9000"))
    assert not identity.same_storage(here, bucket("s3://b/f?endpoint_url=http://127.0.0.1:9001"))
    assert not identity.same_storage(
        here, bucket("s3://b/f?endpoint_url=http://nowhere.invalid:9000")
    )


def test_endpoints_compare_by_port_and_address() -> None:
    same = identity._same_endpoint
    assert same("https://localhost", "https://127.0.0.1:443")
    assert same("http://localhost", "http://127.0.0.1:80")
    assert not same("https://localhost", "http://localhost")
    assert not same("http://localhost:80", "http://localhost:8080")
    assert same("http://nowhere.invalid:1", "http://nowhere.invalid:1")  # the same name
    assert not same("http://nowhere.invalid:1", "http://other.invalid:1")
    assert not same("http://nowhere.invalid:1", "http://127.0.0.1:1")
    assert not same("http://127.0.0.1:1", "http://nowhere.invalid:1")
    assert not same("http://a..b:1", "http://a..b.c:1")  # no address for either (idna)
    assert identity._addresses("127.0.0.1", 80) == frozenset({"127.0.0.1"})
    assert identity._addresses("a..b", 80) == frozenset()
    assert identity._addresses("nowhere.invalid", 80) == frozenset()


def test_copy_within_one_bucket_is_refused_before_connecting(run: Any) -> None:
    src = "s3://b/f?endpoint_url=http://127.0.0.1:1&codec=json"
    dst = "s3://b/f?endpoint_url=http://localhost:1&codec=json"
    assert failed(run("copy", src, dst), 2) == (
        "SRC and DST are the same storage: copy to another place"
    )


def test_one_server_database_and_prefix_spelled_two_ways(redis_url: str) -> None:
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    prefix = unique("same:") + ":"

    def backend(url: str, option: str = "") -> Any:
        return _backend(f"{url}?prefix={prefix}{option}")

    here = backend(f"redis://127.0.0.1:{port}/0")
    assert identity.same_storage(here, backend(f"redis://localhost:{port}"))
    assert identity.same_storage(here, backend(f"redis://localhost:{port}/", "&db=0"))
    assert not identity.same_storage(here, backend(f"redis://127.0.0.1:{port}/1"))
    assert not identity.same_storage(here, _backend(f"redis://127.0.0.1:{port}/0?prefix=x:"))


def test_a_server_that_refuses_info_is_told_by_its_address(redis_url: str) -> None:
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    user, password = unique("noinfo"), "a-password"
    admin = redis.Redis.from_url(redis_url)
    admin.acl_setuser(
        user, enabled=True, passwords=[f"+{password}"], keys=["*"], commands=["+@all", "-info"]
    )
    try:

        def backend(host: str, db: int = 0) -> Any:
            return _backend(f"redis://{user}:{password}@{host}:{port}/{db}?prefix=p:")

        with pytest.raises(redis.ResponseError):
            backend("127.0.0.1").client.info("server")
        here = backend("127.0.0.1")
        assert identity._redis_identity(here) == (frozenset({"127.0.0.1"}), int(port), 0)
        assert identity._redis_identity(backend("127.0.0.1", 2)) == (
            frozenset({"127.0.0.1"}),
            int(port),
            2,
        )
        assert identity.same_storage(here, backend("127.0.0.1"))
        assert not identity.same_storage(here, backend("127.0.0.1", 2))
    finally:
        admin.acl_deluser(user)
        admin.close()


def test_backends_of_two_kinds_are_two_storages(tmp_path: Path) -> None:
    # Made without connecting: the kinds differ, nothing is asked of a server.
    folder = _backend(f"file://{tmp_path}/s")
    for url in (f"redis://127.0.0.1:{free_port()}/0", "s3://b/f?endpoint_url=http://127.0.0.1:1"):
        other = _backend(url)
        assert not identity.same_storage(folder, other)
        assert not identity.same_storage(other, folder)


def test_a_server_without_info_is_told_by_its_socket_or_address(tmp_path: Path) -> None:
    from pystorage.testing import RedisServer

    socket = tmp_path / "r.sock"
    refusing = ["--unixsocket", str(socket), "--rename-command", "INFO", ""]
    with RedisServer(extra_args=refusing) as server:
        by_socket = _backend(f"unix://{socket}?db=3&prefix=p:")
        by_port = _backend(f"redis://127.0.0.1:{server.port}/2?prefix=p:")
        with pytest.raises(redis.ResponseError):
            by_port.client.info("server")
        assert identity._redis_identity(by_socket) == (str(socket), None, 3)
        assert identity._redis_identity(by_port) == (frozenset({"127.0.0.1"}), server.port, 2)
        assert identity.same_storage(by_socket, _backend(f"unix://{socket}?db=3&prefix=p:"))
        assert not identity.same_storage(by_socket, by_port)


def test_a_server_out_of_reach_cannot_be_compared() -> None:
    here = _backend(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(BackendError) as error:
        identity.same_storage(here, here)
    assert str(error.value).startswith("cannot ask Redis which server it is: ")
    assert "Connection refused" in str(error.value) or "connect" in str(error.value)
