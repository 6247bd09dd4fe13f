"""``pystorage.open(url)``: a stack from a URL, so that a storage can live in configuration.

::

    memory://                                   objects in a dict of this process
    file:///var/cache/app?codec=msgpack          one file per key
    redis://localhost:6379/0?prefix=app:&ttl=60  Redis (rediss:// for TLS)
    s3://bucket/folder?endpoint_url=http://127.0.0.1:8333

Options of every scheme: ``codec`` (a codec name; default ``pickle``, none for memory),
``secret`` (sign values), ``ttl`` (an Expiry layer, seconds), ``lru`` (a memory tier of
that many entries), ``limit`` (a CountLimit), ``stats`` (a Stats layer on top). Files also
take ``suffix``; Redis ``prefix`` and the options redis-py reads from URLs
(``socket_timeout``...); S3 ``endpoint_url`` and ``region``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from pystorage.errors import ConfigurationError, StorageProviderError
from pystorage.layers import (
    LRU,
    S3,
    CountLimit,
    Expiry,
    Files,
    Layer,
    Memory,
    Redis,
    Stats,
    Tier,
)
from pystorage.layers.redis import DEFAULT_PREFIX
from pystorage.storage import Storage
from pystorage.storage_provider import codec_layer

_LAYER_OPTIONS = {"codec", "secret", "ttl", "lru", "limit", "stats"}


def open_url(url: str) -> Storage:
    """Build the storage that ``url`` describes; a bad URL raises StorageProviderError."""
    if not isinstance(url, str):
        raise StorageProviderError(f"a storage URL is a str, not {url!r}")
    parts = urlsplit(url)
    url = redact(url)  # from here on the URL only appears in messages
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    builder = _BACKENDS.get(parts.scheme)
    if builder is None:
        known = ", ".join(f"{scheme}://" for scheme in sorted(_BACKENDS))
        raise StorageProviderError(f"unknown scheme in {url!r}; known: {known}")
    try:
        backend, default_codec = builder(parts, options)
        layers = _layers(options, default_codec)
    except ConfigurationError as exc:
        raise StorageProviderError(f"{url!r}: {exc}") from exc
    leftover = set(options) - _LAYER_OPTIONS
    if leftover:
        raise StorageProviderError(f"{url!r}: unknown options {', '.join(sorted(leftover))}")
    return Storage(*layers, backend)


def redact(url: str) -> str:
    """``url`` fit for a message or a log: no password, no secret."""
    parts = urlsplit(url)
    secret_names = ("secret", "password")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if parts.password is None and not any(name in secret_names for name, _ in pairs):
        return url
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = urlencode(
        [(name, "***" if name in secret_names else value) for name, value in pairs], safe="*:/"
    )
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def _layers(options: dict[str, str], default_codec: str | None) -> list[Layer]:
    layers: list[Layer] = []
    if _flag(options, "stats"):
        layers.append(Stats())
    if "ttl" in options:
        layers.append(Expiry(_number(options, "ttl")))
    if "limit" in options:
        layers.append(CountLimit(_integer(options, "limit")))
    if "lru" in options:  # below the layers that remove entries, so it never serves them
        layers.append(Tier(LRU(_integer(options, "lru"))))
    codec = options.get("codec", default_codec)
    secret = options.get("secret")
    if codec is not None:
        layers.append(codec_layer(codec, secret))
    elif secret is not None:
        raise ConfigurationError("secret= needs a codec= to sign")
    return layers


def _memory(parts: Any, options: dict[str, str]) -> tuple[Layer, str | None]:
    if parts.netloc or parts.path:
        raise ConfigurationError("memory:// takes no host or path")
    return Memory(), None


def _file(parts: Any, options: dict[str, str]) -> tuple[Layer, str | None]:
    if parts.netloc not in ("", "localhost"):
        raise ConfigurationError("file:// URLs name a local folder: file:///path")
    if not parts.path:
        raise ConfigurationError("file:// needs a folder: file:///var/cache/app")
    return Files(Path(unquote(parts.path)), options.pop("suffix", "")), "pickle"


def _redis(parts: Any, options: dict[str, str]) -> tuple[Layer, str | None]:
    from redis.connection import URL_QUERY_ARGUMENT_PARSERS

    prefix = options.pop("prefix", DEFAULT_PREFIX)
    # The options redis-py reads from a URL (socket_timeout=, ...) are passed on to it.
    theirs = {key: value for key, value in options.items() if key in URL_QUERY_ARGUMENT_PARSERS}
    for key in theirs:
        del options[key]
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(theirs), ""))
    return Redis(url=url, prefix=prefix), "pickle"


def _s3(parts: Any, options: dict[str, str]) -> tuple[Layer, str | None]:
    if not parts.netloc:
        raise ConfigurationError("s3:// needs a bucket: s3://bucket/folder")
    endpoint = options.pop("endpoint_url", None)
    region = options.pop("region", None)
    folder = unquote(parts.path).lstrip("/")
    return S3(parts.netloc, folder, endpoint_url=endpoint, region=region), "pickle"


def _number(options: dict[str, str], name: str) -> float:
    try:
        return float(options[name])
    except ValueError:
        raise ConfigurationError(f"{name}= must be a number, not {options[name]!r}") from None


def _integer(options: dict[str, str], name: str) -> int:
    if not options[name].isdigit():
        raise ConfigurationError(f"{name}= must be a whole number, not {options[name]!r}")
    return int(options[name])


def _flag(options: dict[str, str], name: str) -> bool:
    value = options.get(name, "0").lower()
    if value in ("1", "true", "yes"):
        return True
    if value in ("0", "false", "no"):
        return False
    raise ConfigurationError(f"{name}= must be 1 or 0, not {value!r}")


_BACKENDS: dict[str, Callable[[Any, dict[str, str]], tuple[Layer, str | None]]] = {
    "memory": _memory,
    "file": _file,
    "redis": _redis,
    "rediss": _redis,
    "unix": _redis,
    "s3": _s3,
}
