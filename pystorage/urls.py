"""``pystorage.open(url)``: a stack from a URL, so that a storage can live in configuration.

::

    memory://                                   objects in a dict of this process
    file:///var/cache/app?codec=msgpack          one file per key
    sqlite:///var/cache/app.db?limit=10000       one row per key in an SQLite database
    redis://localhost:6379/0?prefix=app:&ttl=60  Redis (rediss:// for TLS, unix:// sockets)
    s3://bucket/folder?endpoint_url=http://127.0.0.1:8333

Options of every scheme: ``codec`` (a codec name; default ``pickle``, none for memory),
``secret`` (sign values; repeat it to rotate secrets, newest first), ``ttl`` (an Expiry
layer, seconds), ``lru`` (a memory tier of that many entries; on ``memory://``, the
memory itself holds at most that many),
``limit`` (a CountLimit), ``max_bytes`` (a SizeLimit on the encoded values),
``eviction`` (``used``, the default, ``stored`` or ``tinylfu``: which entries the limits
remove first; ``tinylfu`` makes the memory tier a ``TinyLFU``), ``stats`` (a Stats layer
on top), ``timed`` (a Timed layer below it: durations for ``pystorage.metrics``),
``tags`` (1: a Tags layer above it all, for ``set(..., tags=)`` and
``invalidate_tag``). Files also take ``suffix``;
SQLite ``synchronous`` (NORMAL or FULL) and ``timeout`` (seconds a writer waits);
Files, SQLite, Redis and S3 ``lock_timeout`` (seconds a memoized computation holds its
key's lease across processes; 60 by default);
Redis ``prefix``, ``autopipeline`` (1 or 0) and the options redis-py reads from URLs
(``socket_timeout``...); S3
``endpoint_url`` and ``region``.

A URL is checked whole before anything is built: a bad one raises
``StorageProviderError`` and leaves no folder behind.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, parse_qsl, unquote, unquote_plus, urlencode, urlsplit

import attrs

from pystorage import layers
from pystorage.errors import ConfigurationError, StorageProviderError
from pystorage.eviction import POLICIES
from pystorage.layers.base import Layer, ttl_error
from pystorage.layers.defaults import DEFAULT_PREFIX
from pystorage.layers.leases import LOCK_TIMEOUT
from pystorage.storage import Storage
from pystorage.storage_provider import memory_tier, positive_seconds, signed_codec

if TYPE_CHECKING:
    from pystorage.aio.storage import AsyncStorage
    from pystorage.codecs import BaseCodec
    from pystorage.layers.limit import Eviction

_SECRET_OPTIONS = ("secret", "password")
_FILE_URL = "a file URL names a local folder by its absolute path: file:///var/cache/app"


def open_url(url: str) -> Storage:
    """Build the storage that ``url`` describes; a bad URL raises StorageProviderError."""
    return parse(url).build()


def open_async(url: str) -> AsyncStorage:
    """The storage that ``url`` describes, as an ``AsyncStorage`` (the same stack, awaited)."""
    from pystorage.aio.storage import AsyncStorage

    return AsyncStorage(parse(url).build())


@attrs.frozen
class ParsedURL:
    """A storage URL, checked whole: what to build. Nothing is built or touched yet."""

    #: The URL fit for messages (see ``redact``).
    shown: str
    make_backend: Callable[[], Layer] = attrs.field(repr=False)
    #: The codec of the Codec layer (None: objects stored as they are).
    codec: BaseCodec | None
    #: Whether the URL chose the codec (``codec=`` or ``secret=``) rather than the scheme.
    codec_named: bool
    ttl: float | None
    limit: int | None
    max_bytes: int | None
    eviction: Eviction
    lru: int | None
    stats: bool
    timed: bool
    #: A Tags layer on top, its codec storing envelopes (``tags=1``).
    tags: bool
    #: The folder of a ``file://`` URL.
    folder: Path | None

    def memory_tier(self, maxsize: int) -> Layer:
        """The memory tier of ``lru=``: a TinyLFU with ``eviction=tinylfu``, else an LRU
        (a tier is ordered by use; ``stored`` is the limits' order)."""
        return memory_tier(maxsize, "tinylfu" if self.eviction == "tinylfu" else "used")

    def build(self, *, limit: bool = True, values: bool = True) -> Storage:
        """The stack, in the order of the options table of ``docs/urls.md``.

        ``limit=False`` leaves the CountLimit and SizeLimit out: opening and reading then
        never evict (for commands that only read). ``values=False`` also leaves out the layers that
        read values (Expiry, the memory tier) and puts ``raw`` in place of the codec: the
        stack lists, counts and deletes keys, never decodes, and returns values as stored.
        """
        # Tags on top: every read of a value checks its tags, whatever serves it below.
        stack: list[Layer] = [layers.Tags()] if self.tags and values else []
        if self.stats:
            stack.append(layers.Stats())
        if self.timed:
            stack.append(layers.Timed())
        if values and self.ttl is not None:
            stack.append(layers.Expiry(self.ttl))
        if limit and self.limit is not None:
            stack.append(layers.CountLimit(self.limit, eviction=self.eviction))
        sized = limit and self.max_bytes is not None
        # The memory tier goes below the layers that remove entries: under a SizeLimit
        # (which weighs encoded values) it keeps them encoded.
        tier = [] if not values or self.lru is None else [layers.Tier(self.memory_tier(self.lru))]
        if not sized:
            stack += tier
        if self.codec is not None:
            # Without values: bytes as stored (the backend still needs a Codec above it).
            stack.append(
                layers.Codec(self.codec, tagged=self.tags) if values else layers.Codec("raw")
            )
        if sized and self.max_bytes is not None:
            stack += [layers.SizeLimit(self.max_bytes, eviction=self.eviction), *tier]
        try:
            backend = self.make_backend()
        except ValueError as exc:  # ConfigurationError, or a library's own (botocore's region)
            raise StorageProviderError(f"{self.shown!r}: {exc}") from exc
        try:
            return Storage(*stack, backend)
        except BaseException:
            backend.close()
            raise


def parse(url: str) -> ParsedURL:
    """Check ``url`` whole; raises StorageProviderError naming the URL (redacted)."""
    if not isinstance(url, str):
        raise StorageProviderError(f"a storage URL is a str, not {url!r}")
    shown = redact(url)
    try:
        return _parse(url, shown)
    except ConfigurationError as exc:
        raise StorageProviderError(f"{shown!r}: {exc}") from exc


def _parse(url: str, shown: str) -> ParsedURL:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port out of range or not a number
    except ValueError as exc:
        raise ConfigurationError(f"not a valid URL: {exc}") from None
    builder = _BACKENDS.get(parts.scheme)
    if builder is None:
        known = ", ".join(f"{scheme}://" for scheme in sorted(_BACKENDS))
        raise ConfigurationError(f"unknown scheme; known: {known}")
    options = _options(parts.query)
    make_backend, default_codec = builder(parts, options)
    stats = _flag(options.pop("stats", "0"), "stats")
    timed = _flag(options.pop("timed", "0"), "timed")
    tags = _flag(options.pop("tags", "0"), "tags")
    ttl = _seconds(options.pop("ttl"), "ttl") if "ttl" in options else None
    limit = _count(options.pop("limit"), "limit") if "limit" in options else None
    max_bytes = _count(options.pop("max_bytes"), "max_bytes") if "max_bytes" in options else None
    eviction = options.pop("eviction", "used")
    if eviction not in POLICIES:
        raise ConfigurationError(
            f"eviction= must be one of {', '.join(POLICIES)}, not {eviction!r}"
        )
    lru = _count(options.pop("lru"), "lru") if "lru" in options else None
    name = options.pop("codec", None)
    # secret= may be repeated, newest first: values are written with the first and read
    # with any (rotation, see Signed).
    secrets = [
        value for key, value in parse_qsl(parts.query, keep_blank_values=True) if key == "secret"
    ]
    options.pop("secret", None)
    secret = None if not secrets else secrets[0] if len(secrets) == 1 else secrets
    codec = name if name is not None else default_codec
    if codec is None and secret is not None:
        raise ConfigurationError("secret= needs a codec= to sign")
    if codec is None and max_bytes is not None:
        raise ConfigurationError("max_bytes= weighs encoded values: it needs a codec=")
    if options:
        raise ConfigurationError(f"unknown options {', '.join(sorted(options))}")
    folder = Path(unquote(parts.path)) if parts.scheme == "file" else None
    return ParsedURL(
        shown=shown,
        make_backend=make_backend,
        codec=None if codec is None else signed_codec(codec, secret),
        codec_named=name is not None or secret is not None,
        ttl=ttl,
        limit=limit,
        max_bytes=max_bytes,
        eviction=eviction,  # type: ignore[arg-type]  # checked above
        lru=lru,
        stats=stats,
        timed=timed,
        tags=tags,
        folder=folder,
    )


def _options(query: str) -> dict[str, str]:
    """The options of a query; one given twice is an error (which one would win?), except
    ``secret``, a list of secrets newest first."""
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name in options and name != "secret":
            raise ConfigurationError(f"{name}= is given twice")
        options[name] = value
    return options


def redact(url: str) -> str:
    """``url`` fit for a message or a log: no password, no secret.

    Plain string work, so that a URL too broken to parse is still shown safely.
    """
    head, mark, query = url.partition("?")
    scheme, slashes, rest = head.partition("://")
    if slashes:
        authority, slash, path = rest.partition("/")
        userinfo, at, host = authority.rpartition("@")
        if at and ":" in userinfo:
            authority = f"{userinfo.partition(':')[0]}:***@{host}"
        head = f"{scheme}://{authority}{slash}{path}"
    pieces = []
    for piece in query.split("&") if query else []:
        name, equals, _ = piece.partition("=")
        pieces.append(f"{name}=***" if equals and unquote_plus(name) in _SECRET_OPTIONS else piece)
    return head + mark + "&".join(pieces)


# -- backends: each checks its part of the URL and returns how to build the backend ----

Builder = Callable[[SplitResult, dict[str, str]], tuple[Callable[[], Layer], str | None]]


def _memory(parts: SplitResult, options: dict[str, str]) -> tuple[Callable[[], Layer], None]:
    if parts.netloc or parts.path:
        raise ConfigurationError("memory:// takes no host or path")
    if "lru" in options:  # the memory is the tier: bound it rather than add one in front
        eviction = options.get("eviction", "used")
        if eviction == "stored":
            raise ConfigurationError(
                "memory://?lru= evicts by use (or eviction=tinylfu); for the oldest write "
                "first, use limit= with eviction=stored"
            )
        size = _count(options.pop("lru"), "lru")
        if eviction == "tinylfu":
            return functools.partial(layers.TinyLFU, size), None
        return functools.partial(layers.LRU, size), None
    return layers.Memory, None


def _file(parts: SplitResult, options: dict[str, str]) -> tuple[Callable[[], Layer], str]:
    path = unquote(parts.path)
    if parts.netloc not in ("", "localhost") or not path.startswith("/") or "\0" in path:
        raise ConfigurationError(_FILE_URL)
    suffix = options.pop("suffix", "")
    trust_others = _flag(options.pop("trust_others", "0"), "trust_others")
    return (
        functools.partial(
            layers.Files,
            Path(path),
            suffix,
            trust_others=trust_others,
            lock_timeout=_lease(options),
        ),
        "pickle",
    )


def _sqlite(parts: SplitResult, options: dict[str, str]) -> tuple[Callable[[], Layer], str]:
    path = unquote(parts.path)
    if parts.netloc not in ("", "localhost") or not path.startswith("/") or "\0" in path:
        raise ConfigurationError(
            "sqlite:// names a local database file by its absolute path: sqlite:///var/cache/app.db"
        )
    if path.endswith("/"):
        raise ConfigurationError("sqlite:// names a database file, not a folder")
    options_of_backend: dict[str, Any] = {"lock_timeout": _lease(options)}
    if "synchronous" in options:
        options_of_backend["synchronous"] = options.pop("synchronous").upper()
    if "timeout" in options:
        options_of_backend["timeout"] = _seconds(options.pop("timeout"), "timeout")
    trust_others = _flag(options.pop("trust_others", "0"), "trust_others")
    return (
        functools.partial(
            layers.SQLite, Path(path), trust_others=trust_others, **options_of_backend
        ),
        "pickle",
    )


def _redis(parts: SplitResult, options: dict[str, str]) -> tuple[Callable[[], Layer], str]:
    from redis.connection import URL_QUERY_ARGUMENT_PARSERS, parse_url

    prefix = options.pop("prefix", DEFAULT_PREFIX)
    pipelined = options.pop("autopipeline", None)
    autopipeline = True if pipelined is None else _flag(pipelined, "autopipeline")
    if parts.scheme == "unix":
        if not parts.path:
            raise ConfigurationError("unix:// needs the socket's path: unix:///run/redis.sock")
    else:
        if not parts.hostname:
            raise ConfigurationError(f"{parts.scheme}:// needs a host: redis://localhost:6379/0")
        if parts.port == 0:
            raise ConfigurationError("the port must be from 1 to 65535")
        database = parts.path.strip("/")
        if database and not (database.isascii() and database.isdigit()):
            raise ConfigurationError(
                f"the path of a {parts.scheme}:// URL is the database number (/0), "
                f"not {parts.path!r}"
            )
    # The options redis-py reads from a URL (socket_timeout=, ...) are passed on to it,
    # and checked by it now rather than at the first command.
    theirs = {
        name: options.pop(name) for name in list(options) if name in URL_QUERY_ARGUMENT_PARSERS
    }
    query = urlencode(theirs)
    # Not urlunsplit: it drops the "//" of schemes it does not know (unix:).
    url = f"{parts.scheme}://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")
    try:
        parse_url(url)  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    return (
        functools.partial(
            layers.Redis,
            url=url,
            prefix=prefix,
            autopipeline=autopipeline,
            lock_timeout=_lease(options),
        ),
        "pickle",
    )


def _s3(parts: SplitResult, options: dict[str, str]) -> tuple[Callable[[], Layer], str]:
    if not parts.netloc:
        raise ConfigurationError("s3:// needs a bucket: s3://bucket/folder")
    if any(char in parts.netloc for char in ":@[]"):
        raise ConfigurationError(
            f"the host of an s3:// URL is the bucket's name, not {parts.netloc!r} "
            "(give the server as endpoint_url=)"
        )
    endpoint = _not_empty(options, "endpoint_url")
    if endpoint is not None:
        where = urlsplit(endpoint)
        if where.scheme not in ("http", "https") or not where.netloc:
            raise ConfigurationError(
                f"endpoint_url= must be an http:// or https:// URL, not {endpoint!r}"
            )
    region = _not_empty(options, "region")
    folder = unquote(parts.path).lstrip("/")
    return (
        functools.partial(
            layers.S3,
            parts.netloc,
            folder,
            endpoint_url=endpoint,
            region=region,
            lock_timeout=_lease(options),
        ),
        "pickle",
    )


_BACKENDS: dict[str, Builder] = {
    "memory": _memory,
    "file": _file,
    "sqlite": _sqlite,
    "redis": _redis,
    "rediss": _redis,
    "unix": _redis,
    "s3": _s3,
}


# -- option values -------------------------------------------------------------------


def _lease(options: dict[str, str]) -> float:
    """``lock_timeout=``: how long a memoized computation holds its key's lease (see
    ``pystorage.layers.leases``), 60 seconds unless given."""
    if "lock_timeout" not in options:
        return LOCK_TIMEOUT
    return _seconds(options.pop("lock_timeout"), "lock_timeout")


def _not_empty(options: dict[str, str], name: str) -> str | None:
    value = options.pop(name, None)
    if value is not None and not value.strip():
        raise ConfigurationError(f"{name}= must not be empty (leave it out for the default)")
    return value


def _seconds(text: str, name: str) -> float:
    # ASCII only: float() also takes "1_0", " 5 " and other scripts' digits.
    plain = text.isascii() and "_" not in text and text == text.strip()
    try:
        return positive_seconds(float(text) if plain else math.nan, name)
    except (ValueError, ConfigurationError):
        raise ttl_error(f"{name}=", text) from None


def _count(text: str, name: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise ConfigurationError(f"{name}= must be a positive whole number, not {text!r}")
    return int(text)


def _flag(text: str, name: str) -> bool:
    value = text.lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    raise ConfigurationError(f"{name}= must be 1 or 0, not {text!r}")
