"""S3: one object per key in a bucket, under an optional folder (any S3-compatible server)."""

from __future__ import annotations

import datetime
import io
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import attrs

from pystorage.errors import (
    BackendError,
    ConfigurationError,
    InvalidKeyError,
    StorageError,
    UnsupportedError,
    not_a_str,
)
from pystorage.layers import names
from pystorage.layers.base import ABSENT, Backend, ValueKind, new_token
from pystorage.layers.leases import LOCK_TIMEOUT, Lease, checked_lease

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import ObjectTypeDef

_T = TypeVar("_T")
_MiB = 1 << 20
#: S3's limit on an object key, in UTF-8 bytes, folder included.
MAX_KEY_BYTES = 1024
#: Servers that keep objects as files (SeaweedFS) also limit each part between slashes:
#: longer keys are stored under a hash (see pystorage.layers.names).
MAX_STEM_BYTES = 255
#: How much of a hashed object is read to find its key when listing: a key whose escaped
#: form and newline do not fit could be stored but never listed, so it is refused.
MAX_ESCAPED_KEY_BYTES = (1 << 20) - 1
_HEADER_RANGE = f"bytes=0-{MAX_ESCAPED_KEY_BYTES}"
#: A key of fewer characters than this always escapes within MAX_ESCAPED_KEY_BYTES
#: (a character escapes to at most 4 UTF-8 bytes of 3 characters each).
_SURELY_LISTABLE = MAX_ESCAPED_KEY_BYTES // 12
#: DeleteObjects takes at most this many keys per request.
DELETE_BATCH = 1000
#: Error codes that mean "no such object". HEAD responses have no body, so their code is
#: the bare status; a HEAD on a missing bucket is a "404" too and reads as a missing key.
#: The object metadata that holds a deadline (seconds since the epoch).
_DEADLINE_FIELD = "pystorage-deadline"
#: Begins the names of tags' tokens (``tag_tokens``): no escaped key begins with a dot.
_TAG_PREFIX = ".tag-"
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# Parallel parts of one multipart upload; each holds a connection of the client's pool.
_PART_CONCURRENCY = 8
#: A conditional write that lost to another writer (AWS may also answer 409 to two at once).
_LOST_RACE_CODES = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
#: A server that does not know the If-None-Match / If-Match headers on PutObject.
_NO_CONDITIONS_CODES = frozenset({"NotImplemented", "501"})
#: Conditional writes lost in a row before giving up: each loss means another writer
#: won, so only a server that refuses every condition gets this far.
_MAX_RACES = 1000
#: How many objects' deadlines a storage notes for its listings (about 200 bytes each).
_SEEN_MAX = 100_000


def _positive(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{attribute.name} must be a positive int, not {value!r}")


def _normalize_folder(folder: str) -> str:
    """``folder`` ending with ``/`` (or empty), after refusing names a server may rewrite.

    File-tree servers (SeaweedFS, MinIO) collapse ``a//b``, drop a leading ``/`` and
    refuse ``.`` or ``..`` segments, so objects would not be listed where they were put.
    """
    if not isinstance(folder, str):
        raise ConfigurationError(f"folder must be a str, not {type(folder).__name__}")
    stripped = folder.rstrip("/")
    if not stripped:
        if folder:
            raise ConfigurationError(f"folder {folder!r}: use '' for the bucket's top level")
        return ""
    if any(part in ("", ".", "..") for part in stripped.split("/")):
        raise ConfigurationError(
            f"folder {folder!r} must not start with '/' nor contain '//', '.' or '..' "
            "segments: S3-compatible servers rewrite such names"
        )
    return stripped + "/"


@attrs.define(eq=False, init=False, on_setattr=attrs.setters.NO_OP)
class S3(Backend):
    """Stores each key as one object ``<folder>/<escaped key>`` in an S3 bucket.

    Keys are escaped as by ``Files`` (no ``/`` survives, so a key
    never reaches into another folder); objects in the folder whose names are not escaped
    keys are foreign and ignored, and so are sub-folders. A key whose object name would
    exceed the server's limits (1024 bytes on AWS, 255 per path segment on SeaweedFS) is
    stored under a hash of the key, with the key in the object's first line, and still
    lists as itself; only a folder too long to leave room for that raises
    ``InvalidKeyError``.

    ``client`` is a boto3 S3 client used as it is; without one, a client is built from
    ``endpoint_url``, ``region`` and ``client_options`` (e.g. ``aws_access_key_id``,
    or ``config=botocore.config.Config(...)``, merged over our defaults: 3 standard-mode
    retries, bounded timeouts, a connection pool larger than the thread pool). One client
    serves every thread: boto3 clients are thread-safe. In a child process forked after
    the storage was used, it starts a thread pool of its own and first closes the
    client's connections inherited from the parent (given client included).

    ``get_many`` and ``set_many`` run on a pool of ``max_workers`` threads;
    ``delete_many`` and ``clear`` send one DeleteObjects request per 1,000 keys. Values of
    ``multipart_threshold`` bytes or more are uploaded in parallel parts, smaller ones in
    one PutObject.

    A ``ttl`` puts the deadline in the object's metadata (``x-amz-meta-pystorage-deadline``),
    outside the value: ``get``, ``in`` and ``get_many`` never return an expired object.
    Listings carry no metadata, so what a listing can skip is what this process has
    seen of each object: every GET, HEAD and ``expire()`` notes the deadline of the
    object it saw, by its ETag and time of writing, and ``len``, iteration and the
    limits' listings leave out an object noted as expired that has not been rewritten
    since. They cost one LIST request per 1,000 objects and no HEAD, so they still count
    an expired object this process never read. ``expire()`` removes them all: one LIST
    per 1,000 objects, one HEAD per object (on the thread pool: listings carry no
    deadline), and one DeleteObjects per 1,000 expired ones, each deletion conditional
    on the ETag the HEAD saw, so an object rewritten meanwhile stays (a rewrite with the
    very same bytes has the same ETag: see below). Run it from a job, or let a bucket
    lifecycle rule on the folder do it (S3 counts in days).

    Encryption at rest passes through: ``put_options`` go with every upload (e.g.
    ``{"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": ...}``) and ``read_options``
    with every read (for SSE-C, give the customer key in both).

    Failures other than a missing key become ``BackendError`` naming the endpoint and
    bucket, with boto's exception chained. ``exclusive()`` excludes nobody across
    processes; memoize's lock (``key_lock``) does: a lock object per key, made by a
    conditional create (``If-None-Match: *``), taken over when lapsed by a conditional
    overwrite (``If-Match``), given back by a conditional delete (``If-Match``).

    ``add`` and ``modify`` (``incr``) compare and swap: they read the object and its ETag,
    then write with ``If-Match: <etag>`` (or ``If-None-Match: *`` for a missing object)
    in one PutObject, and read again when another writer won. This needs a server that
    honours conditional writes (AWS S3 since 2024, SeaweedFS); one that answers
    ``NotImplemented`` raises ``UnsupportedError``. An ETag is a digest of the bytes
    only: a rewrite with the very same bytes (and, say, another deadline) between the
    read and the write goes unseen.
    """

    accepts: ClassVar[ValueKind] = "bytes"
    supports_ttl: ClassVar[bool] = True

    bucket: str
    folder: str = attrs.field(converter=_normalize_folder)
    _given_client: S3Client | None = attrs.field(repr=False)
    endpoint_url: str | None
    region: str | None
    max_workers: int = attrs.field(validator=_positive)
    multipart_threshold: int = attrs.field(validator=_positive)
    #: Extra arguments of every upload, e.g. ``{"ServerSideEncryption": "aws:kms"}``.
    put_options: dict[str, Any] = attrs.field(repr=False)
    #: Extra arguments of every read (GET, HEAD), e.g. an SSE-C customer key.
    read_options: dict[str, Any] = attrs.field(repr=False)
    client_options: dict[str, Any] = attrs.field(repr=False)
    #: How long a memoize lock may be held before other callers presume its holder dead
    #: or hung and take it over.
    lock_timeout: float = attrs.field(repr=False)
    #: The ETag of each lock object this process holds, by token (see ``take_lease``).
    _lease_tags: dict[str, str] = attrs.field(factory=dict, init=False, repr=False)
    _client: S3Client = attrs.field(init=False, repr=False)
    _failures: tuple[type[Exception], ...] = attrs.field(init=False, repr=False)
    _transfer: TransferConfig = attrs.field(init=False, repr=False)
    _prefix_bytes: int = attrs.field(init=False, repr=False)
    _pool: ThreadPoolExecutor | None = attrs.field(init=False, default=None, repr=False)
    _pool_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    #: Object name: (ETag, second of writing, deadline) of what a GET or HEAD saw.
    _seen: dict[str, tuple[str, int, float]] = attrs.field(factory=dict, init=False, repr=False)
    _count_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False, repr=False)
    _expirations: int = attrs.field(default=0, init=False, repr=False)
    #: The process that owns the pool and the client's connections (see ``_forked``).
    _pid: int = attrs.field(factory=os.getpid, init=False, repr=False)
    #: Seconds since the epoch, to judge deadlines (an ``Expiry(clock=...)`` replaces it).
    clock: Callable[[], float] = attrs.field(init=False, default=time.time, repr=False)

    def __init__(
        self,
        bucket: str,
        folder: str = "",
        client: S3Client | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        max_workers: int = 16,
        *,
        multipart_threshold: int = 64 * _MiB,
        put_options: Mapping[str, Any] | None = None,
        read_options: Mapping[str, Any] | None = None,
        lock_timeout: float = LOCK_TIMEOUT,
        **client_options: Any,
    ) -> None:
        self.__attrs_init__(
            bucket,
            folder,
            client,
            endpoint_url,
            region,
            max_workers,
            multipart_threshold,
            dict(put_options or {}),
            dict(read_options or {}),
            client_options,
            checked_lease(lock_timeout),
        )

    def __attrs_post_init__(self) -> None:
        if not isinstance(self.bucket, str) or not self.bucket:
            raise ConfigurationError(f"bucket must be a non-empty str, not {self.bucket!r}")
        # Imported here: boto3 is an optional dependency, the core needs only attrs.
        try:
            from boto3.exceptions import Boto3Error
            from boto3.s3.transfer import TransferConfig
            from botocore.exceptions import BotoCoreError, ClientError
        except ImportError as exc:
            raise ImportError(
                "the S3 backend needs boto3: pip install 'pystorage-layers[s3]'"
            ) from exc
        self._failures = (ClientError, BotoCoreError, Boto3Error)
        self._transfer = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=16 * _MiB,
            max_concurrency=_PART_CONCURRENCY,
        )
        if self._given_client is None:
            self._client = self._build_client()
        elif self.endpoint_url or self.region or self.client_options:
            raise ConfigurationError(
                "a client is used as it is: give endpoint_url=, region= and client options "
                "to the client, or leave client= out"
            )
        else:
            self._client = self._given_client
        self._prefix_bytes = len(self.folder.encode("utf-8", "surrogatepass"))

    def _build_client(self) -> S3Client:
        import boto3.session
        from botocore.config import Config

        options = dict(self.client_options)
        if "region_name" in options and self.region is not None:
            raise ConfigurationError("give region= or region_name=, not both")
        defaults = Config(
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            # Between two reads of a socket, not for a whole (large) object.
            read_timeout=30,
            # Every pool thread may be in a multipart upload with its own part threads.
            max_pool_connections=self.max_workers + _PART_CONCURRENCY,
        )
        config = options.pop("config", None)
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=options.pop("region_name", self.region),
            config=defaults if config is None else defaults.merge(config),
            **options,
        )

    @property
    def client(self) -> S3Client:
        """The boto3 client in use, the one given or the one built (shared by all threads)."""
        if self._pid != os.getpid():
            self._forked()
        return self._client

    def _forked(self) -> None:
        """Make this object usable in a child process forked after it was used.

        The child has the parent's pool but none of its threads (work submitted to it
        would wait forever), and the client's idle connections are the parent's sockets
        (a request on one could read the parent's reply). Both are dropped: a new pool
        starts on demand, and closing the client only closes this process's copies of
        the sockets, so the next request opens a connection of its own. Two threads of
        the child may both get here; doing it twice is harmless.
        """
        self._pid = os.getpid()
        self._pool_lock = threading.Lock()  # a parent's thread may have held it at the fork
        self._count_lock = threading.Lock()
        self._pool = None
        self._client.close()

    # -- memoize locks, across processes ---------------------------------------------

    def key_lock(self, key: str) -> AbstractContextManager[Any]:
        """A lease across processes: a lock object per key (see ``take_lease``)."""
        self._lease_name(key)  # a key that is no str fails here, as in every operation
        return Lease(self, key)

    def _lease_name(self, key: str) -> str:
        # A leading dot, which no escaped key has: never an entry, never listed.
        room = min(MAX_STEM_BYTES, MAX_KEY_BYTES - self._prefix_bytes) - len(_LEASE_PREFIX)
        return self.folder + _LEASE_PREFIX + names.stem(_checked_str(key), room)

    def take_lease(self, key: str, token: str, seconds: float) -> str:
        """One try to take the lease of ``key`` (see ``pystorage.layers.leases``): create
        the lock object if there is none; else, if its deadline (metadata, real time)
        passed, overwrite it if it is still the one seen. Its bytes are the holder's
        token, so every holder's object has an ETag of its own."""
        name = self._lease_name(key)
        metadata = {
            **self.put_options.get("Metadata", {}),
            _DEADLINE_FIELD: repr(time.time() + seconds),
        }
        put = {
            **self.put_options,
            "Bucket": self.bucket,
            "Key": name,
            "Body": token.encode(),
            "Metadata": metadata,
        }
        try:
            self._lease_tags[token] = self.client.put_object(**put, IfNoneMatch="*")["ETag"]
            return token
        except self._failures as exc:
            if _code(exc) not in _LOST_RACE_CODES:
                raise self._lease_error("take", key, exc) from exc
        try:  # held: by whom (its bytes), until when (its metadata)
            found = self.client.get_object(Bucket=self.bucket, Key=name, **self.read_options)
            holder = found["Body"].read().decode("ascii", "replace")
        except self._failures as exc:
            if _code(exc) in _MISSING_CODES:
                return ""  # given back meanwhile
            raise self._lease_error("take", key, exc) from exc
        if (_deadline_in(found.get("Metadata")) or 0.0) > time.time():
            return holder
        try:  # lapsed: take it over, unless another did first
            self._lease_tags[token] = self.client.put_object(**put, IfMatch=found["ETag"])["ETag"]
            return token
        except self._failures as exc:
            if _code(exc) in _LOST_RACE_CODES | _MISSING_CODES:
                return ""
            raise self._lease_error("take", key, exc) from exc

    def end_lease(self, key: str, token: str) -> None:
        """Give the lease of ``key`` back if ``token`` still holds it: delete the lock
        object if it still has this holder's ETag. A server that refuses conditional
        deletes leaves it to lapse: an unconditional delete could remove a newer
        holder's lock."""
        etag = self._lease_tags.pop(token, None)
        if etag is None:
            return
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._lease_name(key), IfMatch=etag)
        except self._failures as exc:
            if _code(exc) not in _LOST_RACE_CODES | _MISSING_CODES | _NO_CONDITIONS_CODES:
                raise self._lease_error("release", key, exc) from exc

    def _lease_error(self, action: str, key: str, exc: Exception) -> StorageError:
        if _code(exc) in _NO_CONDITIONS_CODES:
            return UnsupportedError(
                f"the S3 server at {self.client.meta.endpoint_url} does not take conditional "
                f"writes (If-None-Match, If-Match on PutObject), which the lock of key {key!r} "
                f"needs: {exc}"
            )
        return self._error(f"{action} the lock of", key, exc)

    # -- names -------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        if type(key) is not str:
            raise not_a_str(key)
        stem = names.stem(key, min(MAX_STEM_BYTES, MAX_KEY_BYTES - self._prefix_bytes))
        if self._prefix_bytes + len(stem) > MAX_KEY_BYTES:
            raise InvalidKeyError(
                f"the folder {self.folder!r} leaves no room for key {key!r} within S3's "
                f"{MAX_KEY_BYTES} bytes"
            )
        if len(key) >= _SURELY_LISTABLE and len(names.escape(key)) > MAX_ESCAPED_KEY_BYTES:
            raise InvalidKeyError(
                f"key {key[:40]!r}... is too long: escaped, it exceeds the "
                f"{MAX_ESCAPED_KEY_BYTES} bytes that listing reads back, so it could be "
                "stored but never listed, counted or cleared"
            )
        return self.folder + stem

    def _hashed(self, name: str) -> bool:
        return names.is_hashed(name[len(self.folder) :])

    def _key_of(self, name: str) -> str | None:
        stem = name[len(self.folder) :]
        if not names.is_hashed(stem):
            return names.unescape(stem)
        try:
            head = self.client.get_object(
                Bucket=self.bucket, Key=name, Range=_HEADER_RANGE, **self.read_options
            )
            key = names.key_in_header(head["Body"].read().partition(b"\n")[0])
        except self._failures:
            return None  # gone meanwhile, or unreadable: not an entry of ours
        # The first line of a foreign "~" object is not a key unless it hashes here.
        return key if key is not None and self._name(key) == name else None

    def _objects(self, live: bool = True) -> Iterator[tuple[str, ObjectTypeDef]]:
        """(key, listing entry) of every object of ours, one page of 1,000 at a time;
        ``live``: without those noted as expired (see ``_note``)."""
        for page in self._pages():
            for key, entry in page:
                if not (live and self._known_expired(entry)):
                    yield key, entry

    def _pages(self) -> Iterator[list[tuple[str, ObjectTypeDef]]]:
        """The listing of our objects, a page (up to 1,000) at a time."""
        # The delimiter keeps objects of sub-folders out of the listing: none of them is ours.
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.folder, Delimiter="/"
        )
        try:
            for page in pages:
                ours = []
                for entry in page.get("Contents", ()):
                    key = self._key_of(entry["Key"])
                    if key is not None:
                        ours.append((key, entry))
                yield ours
        except self._failures as exc:
            raise self._error("list", None, exc) from exc

    def _note(self, name: str, reply: Mapping[str, Any], deadline: float | None) -> None:
        """Note what a GET or HEAD saw of an object with a deadline, so that listings can
        leave it out once it has expired, for as long as it is not rewritten."""
        if deadline is None:
            return
        seen = self._seen
        with self._count_lock:
            if len(seen) >= _SEEN_MAX:  # a bound on memory: the oldest notes go first
                for old in list(itertools.islice(seen, _SEEN_MAX // 8)):
                    del seen[old]
            seen[name] = (reply["ETag"], _second(reply["LastModified"]), deadline)

    def _known_expired(self, entry: ObjectTypeDef) -> bool:
        """Whether a listing entry is an object noted as expired, unchanged since."""
        noted = self._seen.get(entry["Key"])
        return (
            noted is not None
            and noted[2] <= self.clock()
            and noted[0] == entry["ETag"]
            and noted[1] == _second(entry["LastModified"])
        )

    # -- the protocol ------------------------------------------------------------------

    def get(self, key: str) -> Any:
        return self.get_with_ttl(key)[0]

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        found = self._fetch(key, self._name(key))
        if found is None:
            raise KeyError(key)
        data, deadline = found
        if deadline is None:
            return data, None
        left = deadline - self.clock()
        if left <= 0:
            raise KeyError(key)
        return data, left

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self._put(key, self._name(key), _as_bytes(value), self._deadline(ttl))

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        data = _as_bytes(value)
        stored = self._swap(key, lambda current: data if current is ABSENT else None, ttl)
        return stored is not None

    def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        return self._swap(key, lambda current: _as_bytes(change(current)), ttl)

    def _swap(
        self, key: str, decide: Callable[[Any], bytes | None], ttl: float | None
    ) -> bytes | None:
        """Compare and swap: read the object and its ETag, then write ``decide(value)``
        only if the object is still that one (``If-Match``) or still missing
        (``If-None-Match: *``); read again after losing to another writer. ``decide``
        returns None to leave the object as it is (which is then returned)."""
        name = self._name(key)
        for _ in range(_MAX_RACES):
            found = self._fetch_tagged(key, name)
            now = self.clock()
            if found is None or not (found[1] is None or found[1] > now):
                data = decide(ABSENT)
                deadline = self._deadline(ttl)
            else:
                data = decide(found[0])
                deadline = found[1]  # it stays
            if data is None:
                return None
            condition = {"IfNoneMatch": "*"} if found is None else {"IfMatch": found[2]}
            try:
                self._put(key, name, data, deadline, condition)
            except BackendError as exc:
                code = _code(exc)
                if code in _LOST_RACE_CODES:
                    continue
                if code in _NO_CONDITIONS_CODES:
                    raise UnsupportedError(
                        f"the S3 server at {self.client.meta.endpoint_url} does not take "
                        "conditional writes (If-None-Match, If-Match on PutObject), which "
                        f"add and incr need to be atomic: {exc}"
                    ) from exc
                raise
            return data
        raise BackendError(
            f"S3 key {key!r} in bucket {self.bucket!r}: {_MAX_RACES} conditional writes in a "
            "row lost to other writers (does the server compare ETags as it should?)"
        )

    def delete(self, key: str) -> None:
        # S3 deletes are silent about missing objects, and the protocol is not: one HEAD
        # first. A concurrent deleter between the two requests is harmless.
        if not self.contains(key):
            raise KeyError(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._name(key))
        except self._failures as exc:
            raise self._error("delete", key, exc) from exc

    def contains(self, key: str) -> bool:
        found = self._head(key, self._name(key))
        return found is not None and (found[0] is None or found[0] > self.clock())

    def keys(self) -> Iterator[str]:
        return (key for key, _ in self._objects())

    def keys_by_age(self) -> list[str]:
        """The keys, oldest write first (S3 records no reads)."""
        return [key for key, _ in self.sizes_by_age()]

    def sizes_by_age(self) -> list[tuple[str, int]]:
        # The deadline is metadata, outside the object's bytes: its size is the value's.
        aged = [(entry["LastModified"], key, entry["Size"]) for key, entry in self._objects()]
        aged.sort(key=lambda item: item[0])
        return [(key, size) for _, key, size in aged]

    def clear(self) -> None:
        # Page by page: a continuation token resumes after the last key listed, so
        # deleting what was listed does not disturb the listing.
        batch: list[str] = []
        for _, entry in self._objects(live=False):
            batch.append(entry["Key"])
            if len(batch) == DELETE_BATCH:
                self._delete_objects(batch)
                batch = []
        if batch:
            self._delete_objects(batch)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return {key: value for key, (value, _) in self.get_many_with_ttl(keys).items()}

    def get_many_with_ttl(self, keys: Iterable[str]) -> dict[str, tuple[Any, float | None]]:
        jobs = {key: (key, self._name(key)) for key in keys}
        fetched = self._concurrently(self._fetch, jobs)
        now = self.clock()
        return {
            key: (data, None if deadline is None else deadline - now)
            for key, found in fetched.items()
            if found is not None
            for data, deadline in [found]
            if deadline is None or deadline > now
        }

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        # Names and values are checked before the first request, so a bad one writes nothing.
        deadline = self._deadline(ttl)
        jobs = {
            key: (key, self._name(key), _as_bytes(value), deadline) for key, value in items.items()
        }
        self._concurrently(self._put, jobs)

    def delete_many(self, keys: Iterable[str]) -> None:
        # No HEADs: S3 ignores missing keys in DeleteObjects, as delete_many should.
        names = list(dict.fromkeys(self._name(key) for key in keys))
        for start in range(0, len(names), DELETE_BATCH):
            self._delete_objects(names[start : start + DELETE_BATCH])

    def tag_tokens(self, tags: Sequence[str], create: bool) -> dict[str, str]:
        # One small object per tag in this folder, named with a leading dot: not an
        # escaped key, so never an entry of this folder (nor of another: no "/").
        jobs = {tag: (tag, create) for tag in tags}
        found = self._concurrently(self._tag_token, jobs)
        return {tag: token for tag, token in found.items() if token is not None}

    def _tag_token(self, tag: str, create: bool) -> str | None:
        name = self._tag_name(tag)
        token = self._read_token(tag, name)
        if token is None and create:
            try:  # of writers that race to give the tag its token, the first wins
                self._put_token(tag, name, {"IfNoneMatch": "*"})
            except BackendError as exc:
                if _code(exc) not in _LOST_RACE_CODES:
                    raise
            token = self._read_token(tag, name)
            if token is None:
                raise BackendError(f"S3 lost the token of tag {tag!r} as it was written")
        return token

    def _read_token(self, tag: str, name: str) -> str | None:
        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=name, **self.read_options)
            data: bytes = reply["Body"].read()
        except self._failures as exc:
            if _code(exc) in _MISSING_CODES:
                return None
            raise self._error("read the token of tag", tag, exc) from exc
        return data.decode("ascii", "replace")

    def _put_token(self, tag: str, name: str, condition: Mapping[str, str]) -> None:
        try:
            self.client.put_object(
                Bucket=self.bucket,
                Key=name,
                Body=new_token().encode(),
                **{**self.put_options, **condition},
            )
        except self._failures as exc:
            raise self._error("write the token of tag", tag, exc) from exc

    def renew_tag(self, tag: str) -> None:
        self._put_token(tag, self._tag_name(tag), {})

    def _tag_name(self, tag: str) -> str:
        room = min(MAX_STEM_BYTES, MAX_KEY_BYTES - self._prefix_bytes) - len(_TAG_PREFIX)
        name = self.folder + _TAG_PREFIX + names.stem(tag, room)
        if room < names.HASHED_LENGTH:
            raise InvalidKeyError(f"the folder {self.folder!r} leaves no room for tag {tag!r}")
        return name

    def expire(self) -> int:
        """Remove every expired object of this folder now; returns how many went.

        A page of the listing at a time (up to 1,000 objects): a HEAD of each (the
        listing has no metadata), then one DeleteObjects for the expired ones, each
        conditional on the ETag its HEAD saw. An object another writer replaced since
        then fails its condition and stays; it is not counted.
        """
        removed = 0
        for page in self._pages():
            heads = self._concurrently(
                self._head, {key: (key, entry["Key"]) for key, entry in page}
            )
            now = self.clock()
            expired = [
                (entry["Key"], etag)
                for key, entry in page
                for found in [heads.get(key)]
                if found is not None
                for deadline, etag in [found]
                if deadline is not None and deadline <= now
            ]
            if expired:
                removed += self._delete_unchanged(expired)
        with self._count_lock:
            self._expirations += removed
        return removed

    def counters(self) -> dict[str, int]:
        # Named once there is something to count: an ``Expiry`` above names it always.
        return {"expirations": self._expirations} if self._expirations else {}

    def bound_per_process(self) -> str:
        """Why a limit above S3 is kept by each process apart: ``Limit`` refuses it unless
        it is given ``per_process=True``."""
        return (
            "S3 has no cheap index that every process sees (no transaction, no script; a "
            "listing per write would cost more than the write), so each process would "
            "keep its own"
        )

    def close(self) -> None:
        """Stop the thread pool; a client built here is closed too. Later calls still work."""
        client = self.client  # in a forked child, forgets the parent's pool first
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if self._given_client is None:
            # Only drops idle connections: the next request opens a new one.
            client.close()

    # -- requests ----------------------------------------------------------------------

    def _fetch(self, key: str, name: str) -> tuple[bytes, float | None] | None:
        """The object's bytes and deadline (expired or not), or None if it does not exist."""
        found = self._fetch_tagged(key, name)
        if found is None or found[0] is ABSENT:
            return None
        return found[0], found[1]

    def _fetch_tagged(self, key: str, name: str) -> tuple[Any, float | None, str] | None:
        """The object's bytes, deadline (expired or not) and ETag, or None if it does not
        exist; a hashed object holding another key is there, with a value of ``ABSENT``."""
        try:
            reply = self.client.get_object(Bucket=self.bucket, Key=name, **self.read_options)
            data = reply["Body"].read()
        except self._failures as exc:
            if _code(exc) in _MISSING_CODES:
                return None
            raise self._error("read", key, exc) from exc
        deadline = _deadline_in(reply.get("Metadata"))
        self._note(name, reply, deadline)
        if self._hashed(name):
            value = names.without_key(key, data)
            if value is None:
                return ABSENT, float("-inf"), reply["ETag"]
            data = value
        return data, deadline, reply["ETag"]

    def _head(self, key: str, name: str) -> tuple[float | None, str] | None:
        """The deadline and ETag of an object, or None if it is gone."""
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=name, **self.read_options)
        except self._failures as exc:
            if _code(exc) in _MISSING_CODES:
                return None
            raise self._error("check", key, exc) from exc
        deadline = _deadline_in(head.get("Metadata"))
        self._note(name, head, deadline)
        return deadline, head["ETag"]

    def _delete_unchanged(self, objects: list[tuple[str, str]]) -> int:
        """Delete each (name, ETag) if the object still has that ETag, in one request
        (up to 1,000); returns how many went. Those that changed or went are left."""
        try:
            response = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={
                    "Objects": [{"Key": name, "ETag": etag} for name, etag in objects],
                    "Quiet": True,
                },
            )
        except self._failures as exc:
            raise self._error("delete", None, exc) from exc
        errors = [
            error
            for error in response.get("Errors", ())
            if error.get("Code") not in _LOST_RACE_CODES | _MISSING_CODES
        ]
        if errors:
            shown = ", ".join(
                f"{error.get('Key')!r}: {error.get('Code')} {error.get('Message', '')}".rstrip()
                for error in errors[:5]
            )
            raise BackendError(
                f"S3 could not remove {len(errors)} of {len(objects)} expired objects in "
                f"bucket {self.bucket!r} at {self.client.meta.endpoint_url}: {shown}"
            )
        return len(objects) - len(response.get("Errors", ()))

    def _deadline(self, ttl: float | None) -> float | None:
        return None if ttl is None else self.clock() + ttl

    def _put(
        self,
        key: str,
        name: str,
        data: bytes,
        deadline: float | None = None,
        condition: Mapping[str, str] | None = None,
    ) -> None:
        if self._hashed(name):
            data = names.with_key(key, data)
        options = self.put_options
        if condition:  # one PutObject, whatever the size: S3 checks it on that request
            options = {**options, **condition}
        if deadline is not None:  # object metadata: outside the value, whatever it holds
            metadata = {**options.get("Metadata", {}), _DEADLINE_FIELD: repr(deadline)}
            options = {**options, "Metadata": metadata}
        try:
            if len(data) < self.multipart_threshold or condition:
                # One request: the cheapest write for all but very large values.
                self.client.put_object(Bucket=self.bucket, Key=name, Body=data, **options)
            else:
                # Parallel parts, each retried alone; a single PUT also stops at 5 GB.
                self.client.upload_fileobj(
                    io.BytesIO(data),
                    self.bucket,
                    name,
                    ExtraArgs=options or None,
                    Config=self._transfer,
                )
        except self._failures as exc:
            raise self._error("write", key, exc) from exc

    def _delete_objects(self, names: list[str]) -> None:
        try:
            response = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": name} for name in names], "Quiet": True},
            )
        except self._failures as exc:
            raise self._error("delete", None, exc) from exc
        errors = response.get("Errors")
        if errors:
            shown = ", ".join(
                f"{error.get('Key')!r}: {error.get('Code')} {error.get('Message', '')}".rstrip()
                for error in errors[:5]
            )
            raise BackendError(
                f"S3 could not delete {len(errors)} of {len(names)} objects in bucket "
                f"{self.bucket!r} at {self.client.meta.endpoint_url}: {shown}"
            )

    def _concurrently(
        self, call: Callable[..., _T], jobs: dict[str, tuple[Any, ...]]
    ) -> dict[str, _T]:
        """``call(*args)`` for every key's ``args``, on the thread pool; results by key."""
        if len(jobs) <= 1:  # no thread hop for a batch of one
            return {key: call(*args) for key, args in jobs.items()}
        pool = self._executor()
        futures: dict[str, Future[_T]] = {
            key: pool.submit(call, *args) for key, args in jobs.items()
        }
        try:
            return {key: future.result() for key, future in futures.items()}
        except BaseException:
            # The first failure wins; requests not yet started are not sent.
            for future in futures.values():
                future.cancel()
            raise

    def _executor(self) -> ThreadPoolExecutor:
        if self._pid != os.getpid():
            self._forked()
        pool = self._pool
        if pool is None:
            with self._pool_lock:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(
                        self.max_workers, thread_name_prefix="pystorage-s3"
                    )
                pool = self._pool
        return pool

    def _error(self, action: str, key: str | None, exc: Exception) -> StorageError:
        if _code(exc) == "KeyTooLongError":
            return InvalidKeyError(
                f"key {key!r} is too long for the S3 server at "
                f"{self.client.meta.endpoint_url} (bucket {self.bucket!r}): {exc}"
            )
        subject = "" if key is None else f" key {key!r}"
        return BackendError(
            f"S3 cannot {action}{subject} in bucket {self.bucket!r} at "
            f"{self.client.meta.endpoint_url}: {exc}"
        )


#: The start of a lock object's name (see ``S3._lease_name``).
_LEASE_PREFIX = ".key-lock-"


def _checked_str(key: str) -> str:
    if type(key) is not str:
        raise not_a_str(key)
    return key


def _second(moment: datetime.datetime) -> int:
    """A time of writing to the second: HEAD and GET give no finer, listings may."""
    return int(moment.timestamp())


def _deadline_in(metadata: Mapping[str, str] | None) -> float | None:
    """The deadline a write put in an object's metadata, if any."""
    text = (metadata or {}).get(_DEADLINE_FIELD)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return float("-inf")  # unreadable: treated as long expired, never as forever


def _as_bytes(value: Any) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"S3 stores bytes, not {type(value).__name__}: put a Codec layer above it")


def _code(exc: BaseException) -> str | None:
    """The S3 error code of ``exc``, or of the ClientError an upload failure wraps."""
    for error in (exc, exc.__cause__ or exc.__context__):
        response = getattr(error, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            return None if code is None else str(code)
    return None
