"""What every command of ``pystorage`` shares: exit statuses, the errors that pick them,
argument types, and opening a storage for a purpose."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from pystorage.codecs.serializers import Pickle
from pystorage.storage import Storage
from pystorage.urls import ParsedURL

PROG = "pystorage"
USAGE_ERROR = 2
FAILURE = 1

#: argparse's _SubParsersAction, to which each command adds its parser, is private.
Commands = Any


class UsageError(Exception):
    """A command line that cannot be run as given (exit status 2)."""


class Failure(Exception):
    """A run-time failure already described by its message (exit status 1)."""


def one_line(message: str) -> str:
    """``message`` with its runs of whitespace (newlines too) made single spaces."""
    return " ".join(message.split())


def encode_text(text: str) -> bytes:
    """``text`` as UTF-8; what UTF-8 cannot hold (lone surrogates) as backslash escapes."""
    return text.encode("utf-8", "backslashreplace")


# -- argument types ------------------------------------------------------------------


def positive_int(text: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text!r}")
    return int(text)


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


class IntermixedParser(argparse.ArgumentParser):
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
        check_folder(url)
    if purpose != "keys":
        check_codec(url)
    storage = url.build(limit=purpose == "write", values=purpose != "keys")
    try:
        yield storage
    finally:
        storage.close()


def check_folder(url: ParsedURL) -> None:
    """A ``Failure`` if ``url`` names a folder that does not exist."""
    if url.folder is not None and not url.folder.is_dir():
        raise Failure(f"no such folder {str(url.folder)!r} (in {url.shown!r})")


def check_codec(url: ParsedURL) -> None:
    """Refuse to unpickle unless the URL asks for it: a value planted by anyone who can
    write the storage would run its code here."""
    stages = url.codec.stages if url.codec is not None else ()
    if not url.codec_named and any(isinstance(stage, Pickle) for stage in stages):
        raise UsageError(
            f"{url.shown!r} stores pickles (the default codec), and reading a pickle runs "
            "any code its writer put in it: add codec=pickle to the URL if you trust "
            "everyone who can write there, or secret= to accept signed values only"
        )
