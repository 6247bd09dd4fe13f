"""The ``pystorage`` command: look into, edit and copy storages given as URLs.

::

    pystorage ls file:///var/cache/app
    pystorage get redis://localhost/0?prefix=app: session-7
    pystorage put file:///tmp/c?codec=json config --json '{"debug": true}'
    pystorage copy file:///var/cache/app?codec=json s3://bucket/app?codec=msgpack

URLs are those of ``open``. Errors are one line on stderr; the exit status
is 2 for a usage or URL error, 1 for a failure at run time (``--debug`` shows tracebacks).

Each command is a module of this package with an ``add`` (its parser) and a ``run``;
``common`` holds what they share. Only the module of the command that runs is imported:
``pystorage get`` loads neither copy's threads nor its progress bars.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

import pystorage
from pystorage.cli.common import (
    FAILURE,
    PROG,
    USAGE_ERROR,
    Failure,
    IntermixedParser,
    UsageError,
    one_line,
)
from pystorage.errors import ConfigurationError, InvalidKeyError, StorageError, UnsupportedError

__all__ = ["build_parser", "main"]

#: The commands, in the order of the help, each the module ``pystorage.cli.<name>``.
COMMANDS = ("ls", "get", "put", "rm", "stats", "copy")


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
        return one_line(str(exc))
    if isinstance(exc, OSError) and exc.filename is not None:
        return one_line(f"{exc.filename}: {exc.strerror or exc}")
    if isinstance(exc, ImportError):
        return one_line(str(exc))
    return one_line(f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)")


def _status_of(exc: BaseException) -> int:
    """2 for what the user should change on the command line, 1 for everything else."""
    usage = (UsageError, ConfigurationError, UnsupportedError, InvalidKeyError)
    return USAGE_ERROR if isinstance(exc, usage) else FAILURE


def _fail(message: str, status: int) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return status


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so that the exit flush is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of the whole command line; each sub-command sets ``args.run``.

    ``only`` names the one sub-command to add: a command parses its own arguments without
    importing or building the five others (2-3 ms of CPU, of the 8 that argparse costs a
    command).
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
        title="commands", metavar="COMMAND", required=True, parser_class=IntermixedParser
    )
    for name in COMMANDS:
        if only is None or name == only:
            importlib.import_module(f"{__name__}.{name}").add(commands, debug)
    return parser


def _command_named(argv: Sequence[str]) -> str | None:
    """The sub-command ``argv`` names, if it is one: the first word that is not an
    option (the options before it take no value). None for the whole parser: help,
    --version, a typo, which then list every command."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def _version() -> str:
    return str(getattr(pystorage, "__version__", "unknown"))
