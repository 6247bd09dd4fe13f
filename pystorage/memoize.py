"""``storage.memoize()``: cache a function's results in any storage, computing each once.

A call's key is a hash of a stable encoding of the function's identity and its arguments:
the encoding depends only on values (never on ``repr`` with a memory address, nor on the
salted ``hash()`` of strings), so equal calls get the same key in every process and every
run. A value the encoder does not know raises ``InvalidKeyError`` instead of guessing.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import decimal
import enum
import functools
import hashlib
import inspect
import struct
import threading
import time
import uuid
import zoneinfo
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import PurePath, PureWindowsPath
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

import attrs

from pystorage.errors import ConfigurationError, InvalidKeyError

# Written against the interfaces, not the classes (which import this module): Storage and
# AsyncStorage below are the sync storage's base class and the async one's protocol.
from pystorage.interface import AsyncStorageLike as AsyncStorage
from pystorage.interface import SyncStorage as Storage
from pystorage.interface import check_tags, check_ttl
from pystorage.layers.base import LockTable
from pystorage.layers.protocol import require

if TYPE_CHECKING:
    from pystorage.layers.envelope import TagSnapshot
    from pystorage.stampede import Refresh, Refresher

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

#: What the key encoder accepts, for error messages (docs/memoize.md lists the same).
STABLE_KINDS = (
    "None, bool, int, float, str, bytes, tuples, lists, dicts, sets, frozensets, enum members, "
    "dataclass and attrs instances, namedtuples, datetime values, Decimal, UUID, paths, classes"
)


class Memoized(Protocol[P, R_co]):
    """A memoized function, with ways to forget what it cached."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str: ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None: ...
    def cache_clear(self) -> None: ...
    def stats(self) -> dict[str, int]: ...


_MISSING: Any = object()


class _Unstable(Exception):
    """A value with no stable encoding; the caller turns it into an error naming the argument."""

    def __init__(self, value: object) -> None:
        super().__init__(value)
        self.value = value


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


_LENGTH = struct.Struct(">Q").pack


def _frame(out: bytearray, tag: bytes, payload: bytes) -> None:
    # Tag and length first: no encoding is a prefix of another, so joined encodings are unambiguous.
    out += tag
    out += _LENGTH(len(payload))
    out += payload


def _int(value: int) -> bytes:
    return value.to_bytes(value.bit_length() // 8 + 1, "big", signed=True)


def _unordered(out: bytearray, tag: bytes, encodings: list[bytes]) -> None:
    # Sets and dicts are equal whatever their order: sort the encodings, not the values
    # (values of mixed types do not sort, and set order follows the salted str hash).
    out += tag
    out += _LENGTH(len(encodings))
    for encoding in sorted(encodings):
        out += encoding


def _tz(tz: datetime.tzinfo | None) -> str | None:
    if tz is None:
        return None
    if type(tz) is datetime.timezone:
        return repr(tz)  # e.g. datetime.timezone.utc: holds the offset and the name
    if isinstance(tz, zoneinfo.ZoneInfo) and tz.key:
        return f"zoneinfo:{tz.key}"
    raise _Unstable(tz)


def _state(value: Any) -> tuple[bytes, str, tuple[Any, ...]] | None:
    """A tag, a kind and the values that make up an object of an accepted class, or None.

    The kind of a user's object is its class (P(1) and Q(1) are different arguments); the
    kind of a standard value is a fixed word, as its class's module may move between
    Python versions (pathlib.PurePosixPath is in pathlib._local on 3.13).
    """
    cls = type(value)
    if isinstance(value, enum.Enum):
        return b"E", _class_name(cls), (value.name,)
    if isinstance(value, type):
        return b"C", _class_name(value), ()
    if isinstance(value, tuple) and hasattr(cls, "_fields"):  # a namedtuple
        return b"R", _class_name(cls), tuple(value)
    if dataclasses.is_dataclass(value):
        fields = dataclasses.fields(value)
        return (
            b"O",
            _class_name(cls),
            tuple((f.name, getattr(value, f.name)) for f in fields if f.compare),
        )
    if attrs.has(cls):
        fields = attrs.fields(cls)
        return (
            b"O",
            _class_name(cls),
            tuple((a.name, getattr(value, a.name)) for a in fields if a.eq),
        )
    if cls is datetime.datetime or cls is datetime.time:
        return b"V", cls.__name__, (value.isoformat(), value.fold, _tz(value.tzinfo))
    if cls is datetime.date:
        return b"V", "date", (value.isoformat(),)
    if cls is datetime.timedelta:
        return b"V", "timedelta", (value.days, value.seconds, value.microseconds)
    if cls is decimal.Decimal:
        return b"V", "Decimal", (str(value),)
    if isinstance(value, uuid.UUID):
        return b"V", "UUID", (value.bytes,)
    if isinstance(value, PurePath):  # Path("a") == PurePosixPath("a"): the flavour only
        return (
            b"V",
            "PureWindowsPath" if isinstance(value, PureWindowsPath) else "PurePath",
            (str(value),),
        )
    return None


def _encode(value: Any, typed: bool, out: bytearray) -> None:
    """Append the stable encoding of ``value``; raise ``_Unstable`` for what has none."""
    cls = type(value)
    if cls is str:
        _frame(out, b"S", value.encode("utf-8", "surrogatepass"))
    elif value is None:
        out += b"N"
    elif cls is bool and typed:
        out += b"T" if value else b"F"
    elif cls is int or cls is bool:  # untyped: True == 1 shares a key with 1
        _frame(out, b"I", _int(value))
    elif cls is float:
        if not typed and value.is_integer():  # untyped: 1.0 == 1 shares a key with 1
            _frame(out, b"I", _int(int(value)))
        else:
            _frame(out, b"D", struct.pack(">d", value))
    elif cls is bytes:
        _frame(out, b"B", value)
    elif cls is tuple or cls is list:
        out += b"t" if cls is tuple else b"l"
        out += _LENGTH(len(value))
        for item in value:
            _encode(item, typed, out)
    elif cls is dict and all(type(k) is str for k in value):  # keyword arguments, for one
        out += b"k"  # str keys sort alike in every run: no encoding per item to sort
        out += _LENGTH(len(value))
        for k in sorted(value):
            _frame(out, b"S", k.encode("utf-8", "surrogatepass"))
            _encode(value[k], typed, out)
    elif cls is dict:
        _unordered(out, b"d", [_encoded((k, v), typed) for k, v in value.items()])
    elif cls is set or cls is frozenset:  # {1} == frozenset({1}): apart only when typed
        tag = b"f" if typed and cls is frozenset else b"s"
        _unordered(out, tag, [_encoded(item, typed) for item in value])
    else:
        state = _state(value)
        if state is None:
            raise _Unstable(value)
        tag, kind, fields = state
        out += tag
        _encode(kind, typed, out)
        _encode(fields, typed, out)


def _encoded(value: Any, typed: bool) -> bytes:
    out = bytearray()
    _encode(value, typed, out)
    return bytes(out)


def _qualified_name(function: Callable[..., Any]) -> str:
    qualname = getattr(function, "__qualname__", None)
    if not qualname or "<lambda>" in qualname:
        # Every lambda of a module has the same name: they would share results.
        raise ConfigurationError(
            f"cannot memoize {function!r}: it has no qualified name that tells it apart from "
            "other functions; pass key='...' to name its entries"
        )
    # Code run by exec() without a __name__ has the module None: keys say so, as before.
    return f"{getattr(function, '__module__', None)}.{qualname}"


def _identity(function: Callable[..., Any], name: str, wrapper: object) -> bytes:
    """What tells this function apart from others with the same name, encoded."""
    out = bytearray()
    _encode(name, True, out)
    _holdings(function, name, (wrapper, function), out)
    return bytes(out)


def _holdings(
    function: Callable[..., Any], name: str, seen: tuple[object, ...], out: bytearray
) -> None:
    """Append what ``function`` holds besides its code: a bound method's object and a
    closure's cells. Closures made by one factory share a name but must not share results."""
    bound = getattr(function, "__self__", None)
    if bound is not None and not inspect.ismodule(bound):
        _encode_or_refuse(bound, name, "it is a method of", out)
    cells = getattr(function, "__closure__", None) or ()
    for variable, cell in zip(function.__code__.co_freevars if cells else (), cells, strict=True):
        content = _contents(cell)
        if content is _UNBOUND:  # not assigned yet: the same for every closure
            out += b"?"
        elif any(content is other for other in seen):  # recursion names itself
            out += b"@"
        elif inspect.isroutine(content):
            # A decorator's wrapper holds the function it wraps: that is what it computes.
            try:
                _encode(_qualified_name(content), True, out)
            except ConfigurationError:  # a lambda, a method of a builtin object
                raise _refused(
                    name,
                    f"it is a closure over {variable!r}: {content!r}, which has no stable name",
                ) from None
            _holdings(content, name, (*seen, content), out)
        else:
            _encode_or_refuse(content, name, f"it is a closure over {variable!r}:", out)


def _encode_or_refuse(value: object, name: str, what: str, out: bytearray) -> None:
    try:
        _encode(value, True, out)
    except (_Unstable, RecursionError) as error:
        raise _refused(name, f"{what} {_described(value, error)}") from None


def _refused(name: str, why: str) -> ConfigurationError:
    return ConfigurationError(
        f"cannot memoize {name}: {why} to make a key from, so functions with this name would "
        f"share results (stable values: {STABLE_KINDS}); pass key='...' to name its entries"
    )


def _described(value: object, error: BaseException) -> str:
    """E.g. 'a list that contains a P, which has no stable value'."""
    described = _a(value)
    if isinstance(error, RecursionError):
        return f"{described} that contains itself or is nested too deeply"
    if isinstance(error, _Unstable) and error.value is not value:
        described += f" that contains {_a(error.value)}"
    return f"{described}, which has no stable value"


def _a(value: object) -> str:
    kind = type(value).__name__
    return f"{'an' if kind[:1] in 'AEIOUaeiou' else 'a'} {kind}"


def _unstable_argument(
    function: Callable[..., Any],
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    typed: bool,
) -> InvalidKeyError:
    """The error for a call whose arguments have no stable value, naming the argument."""
    try:
        parameters = [
            parameter.name
            for parameter in inspect.signature(function).parameters.values()
            if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):  # no signature: name arguments by position
        parameters = []
    labels = [parameters[i] if i < len(parameters) else f"#{i + 1}" for i in range(len(args))]
    what = "an argument"
    for label, value in [*zip(labels, args, strict=True), *kwargs.items()]:
        try:
            _encoded(value, typed)
        except (_Unstable, RecursionError) as error:
            what = f"argument {label!r} is {_described(value, error)}"
            break
    return InvalidKeyError(
        f"cannot memoize a call of {name}: {what} to make a key from (stable values: "
        f"{STABLE_KINDS}); pass key_func= to make the key yourself"
    )


_UNBOUND = object()


def _contents(cell: Any) -> object:
    """What a closure cell holds, or ``_UNBOUND`` if its variable is not assigned yet."""
    try:
        return cell.cell_contents
    except ValueError:
        return _UNBOUND


class _AsyncKeyLocks(LockTable[tuple[asyncio.AbstractEventLoop, str], asyncio.Lock]):
    """One asyncio lock per (event loop, key) while anyone holds or waits for it.

    An asyncio lock belongs to one event loop: a thread running another loop gets its own.
    """

    @asynccontextmanager
    async def __call__(self, key: str) -> AsyncIterator[None]:
        slot = (asyncio.get_running_loop(), key)
        lock = self._borrow(slot, asyncio.Lock)
        try:
            async with lock:
                yield
        finally:
            self._give_back(slot, lock)


def _async_access(
    storage: Storage | AsyncStorage, ttl: float | None
) -> tuple[
    Callable[[str], Awaitable[Any]],
    Callable[[str, Any, TagSnapshot | None], Awaitable[None]],
    Callable[[Sequence[str] | None], Awaitable[TagSnapshot | None]],
]:
    """How an async def reads and writes its entries: awaited on an AsyncStorage, called
    on a Storage (whose backend then runs on the loop, as the caller chose)."""
    if isinstance(storage, Storage):

        async def read(entry: str) -> Any:
            return storage.get(entry, _MISSING)

        async def write(entry: str, value: Any, tags: TagSnapshot | None) -> None:
            storage.set(entry, value, ttl=ttl, tags=tags)

        async def snapshot(tags: Sequence[str] | None) -> TagSnapshot | None:
            return None if tags is None else storage.snapshot_tags(tags)

        return read, write, snapshot

    async def aread(entry: str) -> Any:
        return await storage.get(entry, _MISSING)

    async def awrite(entry: str, value: Any, tags: TagSnapshot | None) -> None:
        await storage.set(entry, value, ttl=ttl, tags=tags)

    async def asnapshot(tags: Sequence[str] | None) -> TagSnapshot | None:
        return None if tags is None else await storage.snapshot_tags(tags)

    return aread, awrite, asnapshot


def _no_lock(key: str) -> contextlib.nullcontext[None]:
    return contextlib.nullcontext()


async def _aclear(storage: AsyncStorage, mine: Callable[[str], bool]) -> None:
    await storage.delete_many([key async for key in storage if mine(key)])


def memoize(
    storage: Storage | AsyncStorage,
    ttl: float | None = None,
    key: str | None = None,
    typed: bool = False,
    key_func: Callable[..., Any] | None = None,
    refresh: Refresh | None = None,
    tags: Sequence[str] | Callable[..., Sequence[str]] | None = None,
) -> Callable[[Callable[P, R]], Memoized[P, R]]:
    """See ``Storage.memoize``."""
    kept = ttl
    if refresh is not None:
        if ttl is None:
            raise ConfigurationError("refresh= refreshes entries before and after a ttl: give one")
        kept = ttl + refresh.grace  # the stale value stays to be served
    if kept is not None:
        check_ttl(storage.top, kept)  # a stack that cannot expire fails here, not at the call
    awaited = not isinstance(storage, Storage)
    if tags is not None:
        check_tags(storage.top)  # a stack without tags fails here, not at the call
        if not callable(tags):
            from pystorage.layers.tags import checked_tags

            tags = checked_tags(tags)

    def tags_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Sequence[str] | None:
        """The tags of a call's entry: the list given, or what the callable returns."""
        return tags(*args, **kwargs) if callable(tags) else tags

    def decorate(function: Callable[P, R]) -> Memoized[P, R]:
        if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
            raise ConfigurationError(
                f"cannot memoize {function!r}: a generator is consumed once; return a list"
            )
        name = key or _qualified_name(function)
        identity: list[tuple[str, Any]] = []  # (prefix, hash fed with the identity), once

        def prefix_and_seed() -> tuple[str, Any]:
            if not identity:
                # With key=, the name is the whole identity: the user decides what shares.
                seed = _encoded(name, True) if key else _identity(function, name, wrapper)
                prefix = name
                if seed != _encoded(name, True):  # a closure or a bound method
                    prefix += "#" + hashlib.sha256(seed).hexdigest()[:16]
                if refresh is not None:  # records, never read as plain entries (nor these)
                    prefix += "~refresh"
                identity.append((prefix + ":", hashlib.sha256(seed)))
            return identity[0]

        def key_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
            prefix, seed = prefix_and_seed()
            out = bytearray()
            if key_func is not None:
                made = key_func(*args, **kwargs)
                try:
                    _encode(made, typed, out)
                except (_Unstable, RecursionError) as error:
                    raise InvalidKeyError(
                        f"cannot memoize a call of {name}: key_func returned "
                        f"{_described(made, error)} to make a key from (stable values: "
                        f"{STABLE_KINDS})"
                    ) from None
            else:
                try:
                    _encode(args, typed, out)
                    _encode(kwargs, typed, out)
                except (_Unstable, RecursionError):
                    raise _unstable_argument(function, name, args, kwargs, typed) from None
            digest = seed.copy()
            digest.update(out)
            hexdigest: str = digest.hexdigest()
            return prefix + hexdigest[:32]

        refresher: Refresher | None = None
        if refresh is not None:
            from pystorage.stampede import Refresher

            assert ttl is not None
            refresher = Refresher(refresh, ttl)

        wrapper: Any
        if awaited and not inspect.iscoroutinefunction(function):
            raise ConfigurationError(
                f"cannot memoize {function!r} on an AsyncStorage: it caches async defs"
            )
        if inspect.iscoroutinefunction(function):
            async_locks = _AsyncKeyLocks()
            read, write, snapshot = _async_access(storage, kept)
            across_processes: Callable[[str], AbstractAsyncContextManager[Any]] = (
                storage.top.key_lock if awaited else _no_lock  # type: ignore[assignment]
            )

            background: set[asyncio.Task[Any]] = set()  # referenced until done

            async def acompute(entry: str, args: Any, kwargs: Any) -> Any:
                assert refresher is not None
                began = time.perf_counter()
                tokens = await snapshot(tags_of(args, kwargs))  # before: see snapshot_tags
                value = await function(*args, **kwargs)
                await write(entry, refresher.record(value, began), tokens)
                return value

            async def arefresh(
                entry: str, args: Any, kwargs: Any, cached: Any, record: Any, awaited: bool
            ) -> Any:
                """Recompute now, having claimed ``entry``; ``cached`` if it fails, unless
                an ``awaited`` caller would get it past its grace."""
                assert refresher is not None
                try:
                    return await acompute(entry, args, kwargs)
                except Exception as error:
                    if not refresher.serves_instead(entry, error, record, waiting=awaited):
                        raise
                    return cached
                finally:
                    refresher.release(entry)

            async def arefreshing(entry: str, args: Any, kwargs: Any) -> Any:
                assert refresher is not None
                record = await read(entry)
                verdict, cached = refresher.judge(record)
                if verdict == "fresh":
                    return cached
                if verdict in ("early", "stale"):
                    if not refresher.begin(entry, verdict):
                        return cached  # another caller refreshes it
                    if not refresher.options.background:
                        return await arefresh(entry, args, kwargs, cached, record, True)
                    task = asyncio.get_running_loop().create_task(
                        arefresh(entry, args, kwargs, cached, record, False)
                    )
                    background.add(task)
                    task.add_done_callback(background.discard)
                    # A task cancelled before its first step never runs the release in
                    # arefresh's finally: release here too (twice is harmless).
                    task.add_done_callback(lambda _: refresher.release(entry))
                    return cached
                async with async_locks(entry), across_processes(entry):
                    again, value = refresher.judge(await read(entry))
                    if again in ("fresh", "early"):
                        return value  # computed meanwhile
                    try:
                        return await acompute(entry, args, kwargs)
                    except Exception as error:
                        if verdict != "expired" or not refresher.serves_instead(
                            entry, error, record, waiting=True, stale=True
                        ):
                            raise
                        return cached

            @functools.wraps(function)
            async def amemoized(*args: Any, **kwargs: Any) -> Any:
                entry = key_of(args, kwargs)
                if refresher is not None:
                    return await arefreshing(entry, args, kwargs)
                cached = await read(entry)
                if cached is not _MISSING:
                    return cached
                # One caller per key in this process computes; on an AsyncStorage over
                # Redis, one across processes too (the sync storage's Redis lock would
                # block the event loop: an async def on a Storage locks in-process only).
                async with async_locks(entry), across_processes(entry):
                    cached = await read(entry)
                    if cached is not _MISSING:
                        return cached
                    tokens = await snapshot(tags_of(args, kwargs))  # before: see snapshot_tags
                    value = await function(*args, **kwargs)  # the result, not the coroutine
                    await write(entry, value, tokens)
                    return value

            wrapper = amemoized
        else:
            assert isinstance(storage, Storage)  # an AsyncStorage was refused above
            require(storage.top, "key_lock")
            lock = storage.top.key_lock
            sync_storage = storage

            def tag_snapshot(args: Any, kwargs: Any) -> TagSnapshot | None:
                """The tokens of the call's tags, read before it computes: an
                invalidation while it runs leaves its result missing."""
                wanted = tags_of(args, kwargs)
                return None if wanted is None else sync_storage.snapshot_tags(wanted)

            def called(args: Any, kwargs: Any) -> Any:
                value = function(*args, **kwargs)
                if inspect.isawaitable(value):  # e.g. an async def behind a plain decorator
                    if inspect.iscoroutine(value):
                        value.close()  # never awaited: this error says so, not a warning
                    raise ConfigurationError(
                        f"{name} returned an awaitable, which can be awaited only once: "
                        "memoize an async def instead"
                    )
                return value

            def compute(entry: str, args: Any, kwargs: Any) -> Any:
                assert refresher is not None and isinstance(storage, Storage)
                began = time.perf_counter()
                tokens = tag_snapshot(args, kwargs)
                value = called(args, kwargs)
                storage.set(entry, refresher.record(value, began), ttl=kept, tags=tokens)
                return value

            def refresh_now(
                entry: str, args: Any, kwargs: Any, cached: Any, record: Any, caller: bool
            ) -> Any:
                """Recompute now, having claimed ``entry``; ``cached`` if it fails, unless
                a waiting ``caller`` would get it past its grace."""
                assert refresher is not None
                try:
                    return compute(entry, args, kwargs)
                except Exception as error:
                    if not refresher.serves_instead(entry, error, record, waiting=caller):
                        raise
                    return cached
                finally:
                    refresher.release(entry)

            def refreshing(entry: str, args: Any, kwargs: Any) -> Any:
                assert refresher is not None and isinstance(storage, Storage)
                record = storage.get(entry)
                verdict, cached = refresher.judge(record)
                if verdict == "fresh":
                    return cached
                if verdict in ("early", "stale"):
                    if not refresher.begin(entry, verdict):
                        return cached  # another caller refreshes it
                    if not refresher.options.background:
                        return refresh_now(entry, args, kwargs, cached, record, True)
                    refreshing_thread = threading.Thread(
                        target=refresh_now,
                        args=(entry, args, kwargs, cached, record, False),
                        daemon=True,
                    )
                    try:
                        refreshing_thread.start()
                    except BaseException:  # no thread to release the claim: release it here
                        refresher.release(entry)
                        raise
                    return cached
                with lock(entry):
                    again, value = refresher.judge(storage.get(entry))
                    if again in ("fresh", "early"):
                        return value  # computed meanwhile
                    try:
                        return compute(entry, args, kwargs)
                    except Exception as error:
                        if verdict != "expired" or not refresher.serves_instead(
                            entry, error, record, waiting=True, stale=True
                        ):
                            raise
                        return cached

            @functools.wraps(function)
            def memoized(*args: P.args, **kwargs: P.kwargs) -> R:
                entry = key_of(args, kwargs)
                if refresher is not None:
                    result: R = refreshing(entry, args, kwargs)
                    return result
                try:
                    cached: R = storage[entry]
                    return cached
                except KeyError:
                    pass
                # Concurrent callers that missed wait here; the first computes, the rest read.
                with lock(entry):
                    try:
                        cached = storage[entry]
                        return cached
                    except KeyError:
                        pass
                    tokens = tag_snapshot(args, kwargs)
                    value: R = called(args, kwargs)
                    storage.set(entry, value, ttl=ttl, tags=tokens)
                    return value

            wrapper = memoized

        def cache_key(*args: P.args, **kwargs: P.kwargs) -> str:
            return key_of(args, kwargs)

        def invalidate(*args: P.args, **kwargs: P.kwargs) -> Any:
            return storage.delete_many([key_of(args, kwargs)])

        def mine(key: str) -> bool:
            # Exactly prefix + 32 hex digits: key="a" must not clear the entries of key="a:b".
            prefix = prefix_and_seed()[0]
            return key.startswith(prefix) and len(key) == len(prefix) + 32

        def cache_clear() -> Any:
            if isinstance(storage, Storage):
                return storage.delete_many([key for key in storage if mine(key)])
            return _aclear(storage, mine)

        def stats() -> dict[str, int]:
            return {} if refresher is None else refresher.stats()

        wrapper.cache_key = cache_key
        wrapper.invalidate = invalidate
        wrapper.cache_clear = cache_clear
        wrapper.stats = stats
        cells = getattr(function, "__closure__", None) or ()
        if all(_contents(cell) is not _UNBOUND for cell in cells):
            prefix_and_seed()  # refuse a closure over unstable values now, not at the first call
        result: Memoized[P, R] = wrapper
        return result

    return decorate
