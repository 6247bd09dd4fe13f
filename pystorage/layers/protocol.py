"""The protocol every layer speaks: a core of ten operations, and named capabilities.

``Layer`` is the core (``Core``) plus each capability's class, in order. The core is what
a storage cannot do without; a capability is a group of operations that a layer opts
into by defining them. Each capability either has a default in ``Backend`` that is right
for any backend (batches loop over single calls, the section is in-process) or, where no
default can be right, refuses with ``UnsupportedError`` naming it (``atomic``: a
get-then-set is not atomic; ``ttl``: a deadline that nothing enforces is a wrong
answer). Layers above ask for a capability with ``require``.

Operations marked ``@io`` do I/O: the async twins await them (``tools/generate_async.py``
and ``pystorage.aio.twins`` read the marks, so the protocol says it once). One that
returns an ``Iterator`` becomes an async iterator, one that returns a context manager
an async one; unmarked methods answer without I/O and stay sync.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Literal, TypeVar

from pystorage.errors import UnsupportedError
from pystorage.layers.envelope import TagSnapshot

#: The tags of an entry: a sequence of str (``["user:7", "team:2"]``), or their tokens
#: read earlier (``storage.snapshot_tags``).
TagNames = Sequence[str] | TagSnapshot
#: What a layer hands to the one below it: Python objects or encoded bytes.
ValueKind = Literal["object", "bytes"]
Operation = TypeVar("Operation", bound=Callable[..., Any])


def io(operation: Operation) -> Operation:
    """Mark an operation of the protocol as one that does I/O (awaited when async)."""
    operation.does_io = True  # type: ignore[attr-defined]
    return operation


def unsupported(layer: object, capability: str) -> UnsupportedError:
    """The error of a layer that lacks ``capability``, naming it and its operations."""
    operations = ", ".join(CAPABILITIES[capability].operations)
    return UnsupportedError(
        f"{type(layer).__name__} lacks the {capability!r} capability ({operations}): "
        f"{CAPABILITIES[capability].remedy}"
    )


class Core:
    """The ten operations every layer speaks. A backend implements ``get``, ``set``,
    ``delete``, ``contains`` and ``keys``; ``Backend`` derives the other five."""

    #: The values this layer accepts from above ("bytes" for backends that store bytes).
    accepts: ClassVar[ValueKind] = "object"
    #: Whether ``set(..., ttl=...)`` is honoured at or below this layer.
    supports_ttl: ClassVar[bool] = False
    #: Whether this layer removes entries by itself (evicting or expiring them).
    removes_entries: ClassVar[bool] = False

    @io
    def get(self, key: str) -> Any:
        """The value of ``key``; ``KeyError`` if it is missing."""
        raise unsupported(self, "core")

    @io
    def lookup(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` if it is missing.

        The same as ``get``; in-memory backends override it to answer a miss without
        raising and catching an exception, which costs more than the lookup itself.
        """
        try:
            return self.get(key)
        except KeyError:
            return default

    @io
    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value``; ``ttl`` (seconds) only where ``has_ttl()`` is true."""
        raise unsupported(self, "core")

    @io
    def delete(self, key: str) -> None:
        """Remove ``key``; ``KeyError`` if it is missing."""
        raise unsupported(self, "core")

    @io
    def contains(self, key: str) -> bool:
        """Whether ``key`` is stored (not a use of it for LRU order)."""
        raise unsupported(self, "core")

    @io
    def keys(self) -> Iterator[str]:
        """Every key of this storage, in no particular order."""
        raise unsupported(self, "core")

    @io
    def count(self) -> int:
        """The number of entries."""
        raise unsupported(self, "core")

    @io
    def clear(self) -> None:
        """Remove every entry of this storage, and nothing else."""
        raise unsupported(self, "core")

    @io
    def close(self) -> None:
        """Release resources (connections, pools, file descriptors)."""
        raise unsupported(self, "core")

    @io
    def prepare(self) -> None:
        """Read what this layer needs from the stack below it, once the stack is linked
        (a limit's index). Called bottom-up by ``Storage``; most layers need nothing."""


class Batches:
    """Many keys in one call, in one round trip where the backend can."""

    @io
    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """The values of those ``keys`` that exist, in one batch where the backend can."""
        raise unsupported(self, "batches")

    @io
    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        """Store every item, in one batch where the backend can."""
        raise unsupported(self, "batches")

    @io
    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove those ``keys`` that exist; missing keys are ignored."""
        raise unsupported(self, "batches")


class Expiring:
    """Per-key TTLs: deadlines enforced below, and read back."""

    @io
    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        """The value of ``key`` and the seconds it has left (None: no deadline)."""
        raise unsupported(self, "ttl")

    @io
    def get_many_with_ttl(self, keys: Iterable[str]) -> dict[str, tuple[Any, float | None]]:
        """As ``get_many``, each value with the seconds it has left (None: no deadline)."""
        raise unsupported(self, "ttl")

    @io
    def expire(self) -> int:
        """Remove every expired entry now; returns how many were removed."""
        raise unsupported(self, "ttl")

    def has_ttl(self) -> bool:
        """Whether a per-key TTL set through this layer is enforced somewhere below."""
        return self.supports_ttl  # type: ignore[attr-defined,no-any-return]


class Atomic:
    """Writes that no other writer interleaves with: ``storage.add`` and ``incr``."""

    @io
    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store ``value`` only if ``key`` has no live entry (an expired one counts as
        absent); True if it was stored. Atomic: of writers adding one key at once, one
        stores. ``ttl`` as for ``set``."""
        raise unsupported(self, "atomic")

    @io
    def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        """Replace the value of ``key`` by ``change(value)``, atomically, and return it.

        No other write of ``key`` lands between the read and the write. ``change`` gets
        ``ABSENT`` when the key has no live entry; the entry it then creates gets
        ``ttl``, while an existing entry keeps its deadline. If ``change`` raises,
        nothing is written and the error propagates. It may run more than once (backends
        that compare and swap run it again when another writer got there first), and it
        may run while the backend holds a lock: it must be quick, have no side effects,
        and not use the storage. ``storage.incr`` is this with an increment.
        """
        raise unsupported(self, "atomic")


class Ordered:
    """The order of use, for limits that evict the least recently used entries."""

    @io
    def touch(self, key: str) -> None:
        """Record a use of ``key`` where it is stored, so that LRU order survives a restart."""
        raise unsupported(self, "order")

    @io
    def peek_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """As ``get_many``, but not a use: LRU order stays as it was (for sweeps)."""
        raise unsupported(self, "order")

    @io
    def keys_by_age(self) -> list[str]:
        """The keys, least recently used first, as far as the backend records it."""
        raise unsupported(self, "order")

    @io
    def sizes_by_age(self) -> list[tuple[str, int]]:
        """Each key with the length of its stored bytes, least recently used first."""
        raise unsupported(self, "order")

    @io
    def read_note(self, name: str) -> bytes | None:
        """A note kept beside the entries under ``name`` (what an eviction policy learnt,
        so that it outlives the process), never among them; None if there is none."""
        raise unsupported(self, "order")

    @io
    def write_note(self, name: str, note: bytes) -> None:
        """Keep ``note`` under ``name`` beside the entries (where the backend can)."""
        raise unsupported(self, "order")


class Bounded:
    """A bound on entries or bytes kept by the backend itself."""

    def take_bound(self, measure: Literal["entries", "bytes"], bound: int, eviction: str) -> bool:
        """Enforce a bound on the entries (or their bytes) here, in the transaction of each
        write, evicting by ``eviction`` ("used" or "stored"); False if this stack cannot,
        and a ``CountLimit``/``SizeLimit`` above keeps the bound itself."""
        return False


class Sectioned:
    """An exclusive section, for layers that keep an index of what is below."""

    @io
    def exclusive(self) -> AbstractContextManager[bool]:
        """A section that no other process's exclusive section on this storage overlaps.

        It yields True when another process changed the storage since this object's last
        exclusive section, so that a layer keeping an index knows to rebuild it. A section
        taken inside one of the same thread (or task) is part of it, and is told the same.
        """
        raise unsupported(self, "section")


class KeyLocking:
    """A lock per key, for ``memoize`` to compute each value once."""

    def key_lock(self, key: str) -> AbstractContextManager[Any]:
        """A lock for one key, held while a memoized value is computed: in-process by
        default, a lease across processes on the persistent backends (Files, SQLite,
        S3, Redis: see ``pystorage.layers.leases``)."""
        raise unsupported(self, "key_lock")


class Tagging:
    """Tags on entries, invalidated by tag (``storage.invalidate_tag``): a ``Tags`` layer
    on top answers the first four operations; the backend keeps each tag's token beside
    its entries (never among them) and answers the last two."""

    #: Whether this layer answers ``set_tagged``, ``add_tagged``, ``set_many_tagged``
    #: and ``invalidate_tag`` (a ``Tags`` layer, on top of its stack).
    keeps_tags: ClassVar[bool] = False

    @io
    def set_tagged(self, key: str, value: Any, ttl: float | None, tags: TagNames) -> None:
        """Store ``value`` with ``tags``: it is missing once any of them is invalidated."""
        raise unsupported(self, "tags")

    @io
    def add_tagged(self, key: str, value: Any, ttl: float | None, tags: TagNames) -> bool:
        """As ``add``, the value stored with ``tags``."""
        raise unsupported(self, "tags")

    @io
    def set_many_tagged(self, items: Mapping[str, Any], ttl: float | None, tags: TagNames) -> None:
        """As ``set_many``, every value stored with ``tags``."""
        raise unsupported(self, "tags")

    @io
    def invalidate_tag(self, tag: str) -> None:
        """Make every entry stored with ``tag`` missing, at once, in every process."""
        raise unsupported(self, "tags")

    @io
    def tag_tokens(self, tags: Sequence[str], create: bool) -> dict[str, str]:
        """The current token of each of ``tags`` that has one; with ``create``, a tag
        without one is given one first (so each of ``tags`` is in the answer)."""
        raise unsupported(self, "tags")

    @io
    def renew_tag(self, tag: str) -> None:
        """Give ``tag`` a new token, never used before: values stored with its old token
        no longer match it."""
        raise unsupported(self, "tags")


class Counting:
    """Statistics, for ``storage.stats()``."""

    def counters(self) -> dict[str, int]:
        """Statistics counted by this layer and those below it (see ``Stats``)."""
        return {}

    def gauges(self) -> dict[str, int]:
        """What the stack holds now, where a layer keeps a tally of it (never a scan):
        ``{"bytes": n}``, the bytes of the encoded values, or nothing."""
        return {}


class Values:
    """The kind of values a layer hands down (a ``Codec`` turns objects into bytes)."""

    def value_kind_below(self, above: ValueKind) -> ValueKind:
        """The kind of value this layer passes down, given the kind it receives."""
        return above


class Layer(
    Core,
    Batches,
    Expiring,
    Atomic,
    Ordered,
    Bounded,
    Sectioned,
    KeyLocking,
    Tagging,
    Counting,
    Values,
):
    """One stage of a stack: the core and every capability's operations. Subclasses
    override only the operations they change (see ``Wrapper`` and ``Backend``)."""


class Capability:
    """A group of the protocol's operations, by name, and what to do without it."""

    __slots__ = ("name", "operations", "remedy")

    def __init__(self, name: str, group: type, remedy: str) -> None:
        self.name = name
        #: The operations, in the order of the protocol's definition.
        self.operations = tuple(
            name for name, value in vars(group).items() if callable(value) and name[0] != "_"
        )
        self.remedy = remedy


#: Each capability by name; ``core`` first, then those a layer opts into.
CAPABILITIES: dict[str, Capability] = {
    capability.name: capability
    for capability in (
        Capability("core", Core, "every backend implements get, set, delete, contains, keys"),
        Capability("batches", Batches, "Backend loops over single calls"),
        Capability(
            "ttl",
            Expiring,
            "put an Expiry layer above the backend, or give the backend native expiry",
        ),
        Capability(
            "atomic",
            Atomic,
            "the backend must implement add and modify atomically (never a get, then a set)",
        ),
        Capability("order", Ordered, "Backend gives the order of keys() and a no-op touch"),
        Capability("bounds", Bounded, "a limit above keeps the bound itself"),
        Capability("section", Sectioned, "Backend gives an in-process section"),
        Capability("key_lock", KeyLocking, "Backend gives an in-process lock per key"),
        Capability(
            "tags",
            Tagging,
            "put a Tags layer on top of the stack (a preset's or URL's tags=1), over a "
            "backend that keeps tag tokens (Memory, Files, SQLite, Redis, S3)",
        ),
        Capability("counters", Counting, "none: a layer adds its counts to those below"),
        Capability("values", Values, "none: a layer passes down what it receives"),
    )
}


def io_operations() -> dict[str, Callable[..., Any]]:
    """The operations of the protocol that do I/O, by name."""
    return {
        name: value
        for cls in Layer.__mro__
        for name, value in vars(cls).items()
        if getattr(value, "does_io", False)
    }


def missing(layer: Any, capability: str) -> str | None:
    """Why the stack from ``layer`` down lacks ``capability``; None if it has it.

    Wrappers pass every capability through to the backend (a ``Codec``'s ``add`` is its
    backend's), so the backend says; ``ttl`` is whatever ``has_ttl()`` says, since an
    ``Expiry`` above a backend gives the stack deadlines that the backend lacks.
    """
    from pystorage.layers.base import stack_from

    if capability == "ttl":
        if layer.has_ttl():
            return None
        return (
            f"{type(layer).__name__} lacks the 'ttl' capability: no layer of its stack "
            "enforces a per-key TTL; put an Expiry layer above the backend"
        )
    *_, backend = stack_from(layer)
    if any(_owner(type(backend), name) in PROTOCOL_CLASSES for name in REFUSED.get(capability, ())):
        return str(unsupported(backend, capability))
    return None


def require(layer: Any, capability: str) -> None:
    """Raise ``UnsupportedError`` naming ``capability`` unless the stack from ``layer``
    down has it: for layers that need it, when they are linked."""
    reason = missing(layer, capability)
    if reason is not None:
        raise UnsupportedError(reason)


def _owner(cls: type, name: str) -> type:
    """The class of ``cls``'s method resolution order that defines ``name``."""
    return next(base for base in cls.__mro__ if name in vars(base))


#: The classes that declare the protocol: a method found there is a default, not an
#: implementation.
PROTOCOL_CLASSES = frozenset(
    {
        Core,
        Batches,
        Expiring,
        Atomic,
        Ordered,
        Bounded,
        Sectioned,
        KeyLocking,
        Tagging,
        Counting,
        Values,
    }
)
#: The operations that a backend (or ``Backend``, its base) must define for each
#: capability: their declarations in the protocol refuse. ``Backend`` defines them all
#: but the ``atomic`` ones; ``ttl`` is what ``has_ttl()`` says; the other capabilities'
#: declarations are defaults that are right for any layer.
REFUSED = {
    "core": ("get", "set", "delete", "contains", "keys", "count", "clear", "close"),
    "batches": ("get_many", "set_many", "delete_many"),
    "atomic": ("add", "modify"),
    "order": ("touch", "peek_many", "keys_by_age", "sizes_by_age"),
    "section": ("exclusive",),
    "key_lock": ("key_lock",),
    "tags": ("tag_tokens", "renew_tag"),
}
