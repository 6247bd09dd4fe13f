"""StorageProvider: named presets, each a small function that builds a stack.

The table at the bottom of this module is the list of presets; each one reads as the
stack it builds.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from pystorage import codecs, layers
from pystorage.codecs.base import resolve
from pystorage.errors import BackendError, StorageProviderError
from pystorage.layers.base import checked_ttl
from pystorage.layers.defaults import DEFAULT_PREFIX
from pystorage.storage import Storage

if TYPE_CHECKING:
    from pystorage.aio.storage import AsyncStorage
    from pystorage.codecs import BaseCodec
    from pystorage.layers import Codec
    from pystorage.layers.base import Layer
    from pystorage.layers.limit import Eviction

Factory = Callable[..., Any]


#: A signing secret, or a list of them newest first (see ``Signed``).
Secret = str | bytes | Sequence[str | bytes] | None


def _default_path(path: str | Path | None, codec: str | BaseCodec = "json") -> Path:
    """``path``, or the default folder: the system temp folder, or for a codec that can
    run code (unsigned pickle) a folder only this user can enter: a file another user
    planted there could otherwise run code in this process when read."""
    if path is not None:
        return Path(path)
    import tempfile  # with shutil, bz2 and lzma: not for a preset given its path

    if not _runs_code(codec):
        return Path(tempfile.gettempdir())
    return _private_folder(Path(tempfile.gettempdir()) / f"pystorage-{os.getuid()}")


def _runs_code(codec: str | BaseCodec) -> bool:
    stages = resolve(codec).stages
    return any(isinstance(stage, codecs.Pickle) for stage in stages) and not any(
        isinstance(stage, codecs.Signed) for stage in stages
    )


def _private_folder(folder: Path) -> Path:
    """``folder``, created with mode 0700 if missing; refused unless this user owns it
    and no one else may enter it."""
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        info = folder.lstat()
    except OSError as exc:
        raise BackendError(f"cannot create the folder {folder}: {exc}") from exc
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise StorageProviderError(
            f"{folder}, the default folder for pickle files, must be a folder that only "
            "this user owns and enters (mode 0700): give path= to use another one"
        )
    return folder


def signed_codec(codec: str | BaseCodec, secret: Secret = None) -> BaseCodec:
    """``codec`` resolved; with a secret, values are signed (see ``Signed``)."""
    return resolve(codec) if secret is None else resolve(codec) | codecs.Signed(secret)


def codec_layer(codec: str | BaseCodec, secret: Secret = None) -> Codec:
    """The Codec layer of a preset; with a secret, values are signed (see ``Signed``)."""
    return layers.Codec(signed_codec(codec, secret))


def positive_seconds(value: float, name: str = "expiration") -> float:
    """``value`` if it is a number of seconds above 0 and at most ``MAX_TTL`` (100
    years): ``inf`` or ``1e300`` would be accepted here and refused by Redis at every
    write. The same check, and message, as every TTL's."""
    return checked_ttl(value, name)


def json_files(
    path: str | Path | None = None,
    suffix: str = "storage.json",
    codec: str | BaseCodec = "json",
    secret: Secret = None,
) -> Storage:
    """One JSON file per key: ``<path>/<key>.storage.json`` (path: the system temp dir)."""
    return Storage(codec_layer(codec, secret), layers.Files(_default_path(path, codec), suffix))


def pickle_files(
    path: str | Path | None = None,
    suffix: str = "storage.pkl",
    codec: str | BaseCodec = "pickle",
    secret: Secret = None,
) -> Storage:
    """One pickle file per key. Only read files that you (or a signed codec) wrote."""
    return Storage(codec_layer(codec, secret), layers.Files(_default_path(path, codec), suffix))


def gzip_pickle_files(
    path: str | Path | None = None,
    suffix: str = "storage.pkl.gz",
    compresslevel: int | None = None,
    codec: str | BaseCodec | None = None,
    secret: Secret = None,
) -> Storage:
    """One gzip-compressed pickle file per key: smaller files, slower writes."""
    if codec is not None and compresslevel is not None:
        raise StorageProviderError("give compresslevel= or codec=, not both")
    if codec is None:
        codec = codecs.Pickle() | codecs.Gzip(9 if compresslevel is None else compresslevel)
    return Storage(codec_layer(codec, secret), layers.Files(_default_path(path, codec), suffix))


def msgpack_files(
    path: str | Path | None = None,
    suffix: str = "storage.msgpack",
    codec: str | BaseCodec = "msgpack",
    secret: Secret = None,
) -> Storage:
    """One MessagePack file per key (``pip install 'pystorage-layers[msgpack]'``)."""
    return Storage(codec_layer(codec, secret), layers.Files(_default_path(path, codec), suffix))


def zstd_files(
    path: str | Path | None = None,
    suffix: str = "storage.pkl.zst",
    codec: str | BaseCodec = "zstd-pickle",
    secret: Secret = None,
) -> Storage:
    """One Zstandard-compressed pickle file per key (``pip install 'pystorage-layers[zstd]'``)."""
    return Storage(codec_layer(codec, secret), layers.Files(_default_path(path, codec), suffix))


def memory(codec: str | BaseCodec | None = None, secret: Secret = None) -> Storage:
    """A plain in-process dict; with ``codec=`` values are stored encoded (copied)."""
    if codec is None:
        if secret is not None:
            raise StorageProviderError("secret= signs encoded values: give a codec= too")
        return Storage(layers.Memory())
    return Storage(codec_layer(codec, secret), layers.Memory())


def memory_tier(maxsize: int, eviction: Eviction = "used") -> Layer:
    """At most ``maxsize`` entries in memory, chosen by ``eviction``: ``LRU`` for "used",
    ``TinyLFU`` for "tinylfu". "stored" is refused: the memory tier orders by use (a limit
    over ``Memory`` evicts by age of the write: ``CountLimit(n, eviction="stored")``)."""
    if eviction == "tinylfu":
        return layers.TinyLFU(maxsize)
    if eviction != "used":
        raise StorageProviderError(
            f"the memory tier evicts by 'used' or 'tinylfu', not {eviction!r} (for the "
            "oldest write first, bound Memory with CountLimit(n, eviction='stored'))"
        )
    return layers.LRU(maxsize)


def lru(
    maxsize: int | None = None,
    storage: Storage | None = None,
    memory_blocks: int | None = None,
    eviction: Eviction = "used",
) -> Storage:
    """At most ``maxsize`` entries in memory; with ``storage=``, a memory tier in front of it.
    ``eviction="tinylfu"`` keeps the entries asked for most (``TinyLFU``) rather than the
    most recent (``LRU``).

    ``memory_blocks`` is the original name of ``maxsize``.
    """
    if maxsize is not None and memory_blocks is not None:
        raise StorageProviderError("give maxsize= or memory_blocks= (its old name), not both")
    size = maxsize if maxsize is not None else memory_blocks
    if size is None:
        size = 128
    if storage is None:
        return Storage(memory_tier(size, eviction))
    return Storage(layers.Tier(memory_tier(size, eviction)), storage)


def disk_lru(
    limit: int = 100,
    path: str | Path | None = None,
    suffix: str = "storage.lru",
    codec: str | BaseCodec = "pickle",
    secret: Secret = None,
    eviction: Eviction = "used",
) -> Storage:
    """One file per key, at most ``limit`` files; the least recently used one goes first
    (``eviction="stored"``: the oldest write; ``"tinylfu"``: the one valued least)."""
    return Storage(
        layers.CountLimit(limit, eviction=eviction),
        codec_layer(codec, secret),
        layers.Files(_default_path(path, codec), suffix),
    )


def volatile(
    storage: Storage | None = None,
    expiration: float | None = None,
    clock: Callable[[], float] | None = None,
) -> Storage:
    """Entries of ``storage`` (default: memory) expire ``expiration`` seconds after a write."""
    if expiration is not None:
        positive_seconds(expiration)
    expiry = layers.Expiry(expiration) if clock is None else layers.Expiry(expiration, clock)
    return Storage(expiry, Storage(layers.Memory()) if storage is None else storage)


def redis_text(
    redis_client: Any = None,
    url: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    expiration: float | None = None,
    codec: str | BaseCodec = "text",
    secret: Secret = None,
) -> Storage:
    """Values in Redis as UTF-8 text (``codec="text"``), optionally expiring natively."""
    if expiration is None:
        return Storage(codec_layer(codec, secret), layers.Redis(redis_client, url, prefix))
    positive_seconds(expiration)
    stack = Storage(codec_layer(codec, secret), layers.Redis(redis_client, url, prefix))
    return Storage(layers.Expiry(expiration), stack)


def redis_json(
    redis_client: Any = None,
    url: str | None = None,
    prefix: str = DEFAULT_PREFIX,
    expiration: float | None = None,
    codec: str | BaseCodec = "json",
    secret: Secret = None,
) -> Storage:
    """Values in Redis as JSON."""
    return redis_text(redis_client, url, prefix, expiration, codec, secret)


def s3(
    bucket: str,
    folder: str = "",
    codec: str | BaseCodec = "raw",
    client: Any = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    secret: Secret = None,
    **client_options: Any,
) -> Storage:
    """One S3 object per key in ``bucket``, under ``folder``.

    Needs ``pip install 'pystorage-layers[s3]'``. The default ``raw`` codec stores bytes
    as they are. Without a ``client`` (a boto3 S3 client, used as it is), one is built
    from ``endpoint_url``, ``region`` and ``client_options`` (credentials, ``config=``,
    ``max_workers=``...).
    """
    backend = layers.S3(bucket, folder, client, endpoint_url, region, **client_options)
    return Storage(codec_layer(codec, secret), backend)


def sqlite(
    path: str | Path | None = None,
    codec: str | BaseCodec = "pickle",
    secret: Secret = None,
    limit: int | None = None,
    expiration: float | None = None,
    synchronous: str = "NORMAL",
    max_bytes: int | None = None,
    eviction: Eviction = "used",
) -> Storage:
    """One row per key in the SQLite database ``path`` (default: ``cache.db`` in the
    temp folder, or in a private one for pickles); ``limit`` caps the entries and
    ``max_bytes`` the bytes of the encoded values, both in SQL in the transaction of
    each write, removing the least recently ``eviction`` ("used" or "stored") first, or
    with ``"tinylfu"`` the entries adaptive W-TinyLFU values least; ``expiration`` gives
    every write a TTL."""
    if path is None:
        path = _default_path(None, codec if secret is None else "json") / "cache.db"
    above: list[Any] = [] if expiration is None else [layers.Expiry(expiration)]
    if limit is not None:
        above.append(layers.CountLimit(limit, eviction=eviction))
    below: list[Any] = [] if max_bytes is None else [layers.SizeLimit(max_bytes, eviction=eviction)]
    backend = layers.SQLite(path, synchronous=synchronous)
    return Storage(*above, codec_layer(codec, secret), *below, backend)


def with_tags(storage: Storage) -> Storage:
    """The stack of ``storage`` (new, unused) with a ``Tags`` layer on top and its codec
    storing envelopes: new layers configured alike, over the same backend (with the
    bounds that limits handed to it). ``storage`` itself is not to be used after."""
    *wrappers, backend = storage.layers
    fresh: list[Any] = []
    for layer in wrappers:
        changes = {"tagged": True} if isinstance(layer, layers.Codec) else {}
        fresh.append(attrs.evolve(layer, **changes))  # type: ignore[misc]  # attrs layers
    return Storage(layers.Tags(), *fresh, backend)


class StorageProvider:
    """Builds storages by preset name; ``register`` adds presets to one provider.

    >>> storage = StorageProvider().create(StorageProvider.STORAGE_MEMORY)
    """

    STORAGE_MEMORY = "memory"
    STORAGE_LRU = "lru"
    STORAGE_JSON = "json"
    STORAGE_PICKLE = "pickle"
    STORAGE_PICKLE_GZIP = "pickle.gzip"
    STORAGE_MSGPACK = "msgpack"
    STORAGE_ZSTD = "zstd"
    STORAGE_DISKLRU = "disklru"
    STORAGE_VOLATILE = "volatile"
    STORAGE_REDIS = "redis"
    STORAGE_REDIS_JSON = "redis.json"
    STORAGE_S3 = "s3"
    STORAGE_SQLITE = "sqlite"

    PRESETS: ClassVar[Mapping[str, Factory]] = {
        STORAGE_MEMORY: memory,
        STORAGE_LRU: lru,
        STORAGE_JSON: json_files,
        STORAGE_PICKLE: pickle_files,
        STORAGE_PICKLE_GZIP: gzip_pickle_files,
        STORAGE_MSGPACK: msgpack_files,
        STORAGE_ZSTD: zstd_files,
        STORAGE_DISKLRU: disk_lru,
        STORAGE_VOLATILE: volatile,
        STORAGE_REDIS: redis_text,
        STORAGE_REDIS_JSON: redis_json,
        STORAGE_S3: s3,
        STORAGE_SQLITE: sqlite,
    }

    def __init__(self) -> None:
        self._factories: dict[str, Factory] = dict(self.PRESETS)

    def register(self, name: str, factory: Factory) -> StorageProvider:
        """Add (or replace) a preset on this provider only; returns the provider."""
        if not isinstance(name, str) or not name:
            raise StorageProviderError(f"a preset name is a non-empty str, not {name!r}")
        if not callable(factory):
            raise StorageProviderError(f"the factory for {name!r} must be callable")
        self._factories[name] = factory
        return self

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Build the preset ``name`` with the given arguments.

        Every built-in preset also takes ``stats=True``: a ``Stats`` layer on top, and
        ``tags=True``: a ``Tags`` layer above everything, its codec storing envelopes
        (``set(..., tags=)``, ``invalidate_tag``; see ``with_tags``).
        """
        try:
            factory = self._factories[name]
        except (KeyError, TypeError):
            known = ", ".join(sorted(self._factories))
            raise StorageProviderError(f"unknown storage {name!r}; known: {known}") from None
        builtin = factory is self.PRESETS.get(name)
        stats = kwargs.pop("stats", False) if builtin else False
        tags = kwargs.pop("tags", False) if builtin else False
        try:
            storage = factory(*args, **kwargs)
        except TypeError as exc:
            # Wrong arguments to a preset: say which preset, keep the original.
            raise StorageProviderError(f"cannot create {name!r}: {exc}") from exc
        if stats:
            storage = Storage(layers.Stats(), storage)
        return with_tags(storage) if tags else storage

    def create_async(self, name: str, *args: Any, **kwargs: Any) -> AsyncStorage:
        """The preset ``name`` as an ``AsyncStorage``: the same stack, awaited."""
        from pystorage.aio.storage import AsyncStorage

        storage = self.create(name, *args, **kwargs)
        if not isinstance(storage, Storage):
            raise StorageProviderError(f"the preset {name!r} does not build a Storage")
        return AsyncStorage(storage)

    def names(self) -> list[str]:
        """The preset names this provider knows."""
        return sorted(self._factories)


#: The original README calls the provider by this name too.
ServiceProvider = StorageProvider
