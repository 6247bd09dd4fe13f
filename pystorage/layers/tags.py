"""Tags: entries stored with tags, all of one tag invalidated at once, in no scan."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, ClassVar

import attrs

from pystorage.errors import BackendError, CodecError, ConfigurationError
from pystorage.layers.base import ABSENT, Layer, ValueKind, Wrapper, stack_from
from pystorage.layers.envelope import Envelope, TagSnapshot, Tokens
from pystorage.layers.protocol import TagNames, missing

_UNSTORED: Any = object()
#: Keys read per batch when listing or counting: each batch is one read of values and
#: one of tokens.
_BATCH = 500
#: Rounds of ``add``/``incr`` that each found an invalidated entry, removed it and lost
#: the key to another writer, before giving up: only a storm of writers gets this far.
_MAX_ROUNDS = 100


#: An entry as ``get_many_tagged`` reads it: value, seconds left (or None), tags' names.
Entry = tuple[Any, float | None, list[str]]


class _Tagged(Exception):
    """Raised inside ``modify`` by a change that met a tagged entry: checked outside."""


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class Tags(Wrapper):
    """Values stored with tags (``storage.set(key, value, tags=["user:7"])``), and
    ``storage.invalidate_tag("user:7")`` making every one of them missing at once.

    Each tag has a token kept by the backend beside its entries (a record no key can
    name: see each backend's ``tag_tokens``); invalidating a tag gives it a new random
    token, one write whatever the number of entries. Every value is stored in an envelope
    with the tokens its tags had when it was written (``pystorage.layers.envelope``: an
    object above a codec, a versioned frame of bytes below one), and a read compares them
    with the current tokens: one read of the tokens per read of a tagged value, none for
    an untagged one. A value whose tag was invalidated is a miss, in every process, after
    restarts too; it stays stored until it is overwritten, evicted, expires, or
    ``expire()`` sweeps it (reads never write).

    It sits on top of the stack, above a memory ``Tier`` (whose front holds envelopes,
    checked on each read: another process's invalidation is seen at once), and above
    the ``Codec``, which must be built with ``tagged=True``. ``len``, iteration and
    ``in`` leave invalidated entries out, at the cost of reading values and tokens.
    """

    keeps_tags: ClassVar[bool] = True
    #: A Tier above would serve values whose tags were invalidated: it refuses to.
    removes_entries: ClassVar[bool] = True

    def link(self, inner: Layer) -> None:
        for layer in stack_from(inner):
            if hasattr(layer, "tagged"):  # the first Codec below: it stores the envelopes
                if not layer.tagged:
                    raise ConfigurationError(
                        f"Tags needs the codec below it to store envelopes: build it as "
                        f"Codec({getattr(layer, 'codec', None)!r}, tagged=True)"
                    )
                break
        *_, store = stack_from(inner)
        store = getattr(store, "backend", store)  # a sync backend under an async stack
        why = missing(store, "tags")
        if why is not None:
            raise ConfigurationError(why)
        super().link(inner)

    def value_kind_below(self, above: ValueKind) -> ValueKind:
        if above == "bytes":
            raise ConfigurationError("Tags must sit above the Codec, on top of the stack")
        return above

    # -- reads -----------------------------------------------------------------------

    def get(self, key: str) -> Any:
        found = self._inner.get(key)
        if type(found) is Envelope and not found.tokens:  # untagged: no call, no lookup
            return found.value
        if self._current(key, found):
            return found.value
        raise KeyError(key)

    def lookup(self, key: str, default: Any = None) -> Any:
        found = self._inner.lookup(key, _UNSTORED)
        if type(found) is Envelope and not found.tokens:
            return found.value
        if found is not _UNSTORED and self._current(key, found):
            return found.value
        return default

    def get_with_ttl(self, key: str) -> tuple[Any, float | None]:
        found, left = self._inner.get_with_ttl(key)
        if self._current(key, found):
            return found.value, left
        raise KeyError(key)

    def contains(self, key: str) -> bool:
        found = self._inner.lookup(key, _UNSTORED)
        return found is not _UNSTORED and self._current(key, found)

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return self._opened(self._inner.get_many(keys))

    def peek_many(self, keys: Iterable[str]) -> dict[str, Any]:
        return self._opened(self._inner.peek_many(keys))

    def get_many_with_ttl(self, keys: Iterable[str]) -> dict[str, tuple[Any, float | None]]:
        found = self._inner.get_many_with_ttl(keys)
        values = self._opened({key: value for key, (value, _) in found.items()})
        return {key: (value, found[key][1]) for key, value in values.items()}

    def keys(self) -> Iterator[str]:
        batch: list[str] = []
        for key in self._inner.keys():  # noqa: SIM118 - a layer's listing, not a dict's
            batch.append(key)
            if len(batch) == _BATCH:
                for live in self._live(batch):
                    yield live
                batch = []
        for live in self._live(batch):
            yield live

    def count(self) -> int:
        total = 0
        for _ in self.keys():
            total += 1
        return total

    def _live(self, keys: list[str]) -> list[str]:
        """Those of ``keys`` whose entries are there and current."""
        if not keys:
            return []
        return list(self._opened(self._inner.peek_many(keys)))

    def _current(self, key: str, found: Any) -> bool:
        """Whether the envelope ``found`` under ``key`` has its tags' current tokens."""
        if type(found) is not Envelope:
            raise _not_an_envelope(key, found)
        if not found.tokens:
            return True
        now = self._inner.tag_tokens([tag for tag, _ in found.tokens], False)
        return _matches(found.tokens, now)

    def get_many_tagged(self, keys: Iterable[str]) -> dict[str, Entry]:
        """The current entries of ``keys``, each as its value, the seconds it has left
        (``None``: no deadline) and the names of its tags: what ``pystorage copy`` needs to
        store it again elsewhere, under that store's own tokens."""
        found = self._inner.get_many_with_ttl(keys)
        current = self._current_of({key: envelope for key, (envelope, _) in found.items()})
        return {
            key: (envelope.value, found[key][1], [tag for tag, _ in envelope.tokens])
            for key, envelope in current.items()
        }

    def _opened(self, found: dict[str, Any]) -> dict[str, Any]:
        """The values of those envelopes of ``found`` that are current (one pass: every
        ``get_many`` of a tags stack comes through here)."""
        now = self._tokens_now(found)
        if now is None:
            return {key: envelope.value for key, envelope in found.items()}
        return {
            key: envelope.value for key, envelope in found.items() if _matches(envelope.tokens, now)
        }

    def _current_of(self, found: dict[str, Any]) -> dict[str, Envelope]:
        """Those envelopes of ``found`` that are current."""
        now = self._tokens_now(found)
        if now is None:
            return found
        return {key: envelope for key, envelope in found.items() if _matches(envelope.tokens, now)}

    def _tokens_now(self, found: dict[str, Any]) -> dict[str, str] | None:
        """The current tokens of every tag of the envelopes of ``found``, in one read
        (``None``: none of them is tagged)."""
        tags: set[str] = set()
        for key, envelope in found.items():
            if type(envelope) is not Envelope:
                raise _not_an_envelope(key, envelope)
            tags.update(tag for tag, _ in envelope.tokens)
        return self._inner.tag_tokens(sorted(tags), False) if tags else None

    # -- writes ----------------------------------------------------------------------

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        self._inner.set(key, Envelope((), value), ttl)

    def set_tagged(self, key: str, value: Any, ttl: float | None, tags: TagNames) -> None:
        self._inner.set(key, Envelope(self._tokens(tags), value), ttl)

    def set_many(self, items: Mapping[str, Any], ttl: float | None = None) -> None:
        self._inner.set_many({key: Envelope((), value) for key, value in items.items()}, ttl)

    def set_many_tagged(self, items: Mapping[str, Any], ttl: float | None, tags: TagNames) -> None:
        tokens = self._tokens(tags)
        self._inner.set_many({key: Envelope(tokens, value) for key, value in items.items()}, ttl)

    def add(self, key: str, value: Any, ttl: float | None = None) -> bool:
        return self._add_new(key, Envelope((), value), ttl)

    def add_tagged(self, key: str, value: Any, ttl: float | None, tags: TagNames) -> bool:
        return self._add_new(key, Envelope(self._tokens(tags), value), ttl)

    def _add_new(self, key: str, envelope: Envelope, ttl: float | None) -> bool:
        """``add`` where an invalidated entry counts as absent: it is removed, and the
        add tried again. (Two adders that both found it invalidated may both remove
        what the other stored: the one race in which both may be told True.)"""
        for _ in range(_MAX_ROUNDS):
            if self._inner.add(key, envelope, ttl):
                return True
            found = self._inner.lookup(key, _UNSTORED)
            if found is not _UNSTORED:
                if self._current(key, found):
                    return False
                self._drop(key)
        raise _too_many_rounds("add", key)

    def modify(self, key: str, change: Callable[[Any], Any], ttl: float | None = None) -> Any:
        """One ``modify`` below for an untagged entry (or none). A tagged one is checked
        first: a current one keeps its tags; an invalidated one is removed and counts as
        absent (two writers that both found it may both start from absent)."""
        expected: Tokens = ()
        for _ in range(_MAX_ROUNDS):
            try:
                return self._inner.modify(key, _Change(change, expected), ttl).value
            except _Tagged:
                pass  # tagged, or tagged otherwise than last seen: look at its tokens
            expected = ()
            found = self._inner.lookup(key, _UNSTORED)
            if found is not _UNSTORED and type(found) is Envelope and found.tokens:
                if self._current(key, found):
                    expected = found.tokens
                else:
                    self._drop(key)
        raise _too_many_rounds("incr", key)

    def _drop(self, key: str) -> None:
        try:
            self._inner.delete(key)
        except KeyError:
            pass

    def _tokens(self, tags: TagNames) -> Tokens:
        """The current tokens of ``tags`` (made for tags that have none yet), or those
        of a snapshot."""
        if type(tags) is TagSnapshot:
            return tags.tokens
        wanted = checked_tags(tags)
        if not wanted:
            return ()
        now = self._inner.tag_tokens(wanted, True)
        return tuple((tag, now[tag]) for tag in wanted)

    def invalidate_tag(self, tag: str) -> None:
        (checked,) = checked_tags([tag])
        self._inner.renew_tag(checked)

    def expire(self) -> int:
        """Remove the expired entries below, then the invalidated ones (a full sweep:
        it reads every entry); returns how many went."""
        removed = self._inner.expire()
        batch: list[str] = []
        stale: list[str] = []
        for key in self._inner.keys():  # noqa: SIM118 - a layer's listing, not a dict's
            batch.append(key)
            if len(batch) == _BATCH:
                stale += self._stale(batch)
                batch = []
        stale += self._stale(batch)
        self._inner.delete_many(stale)
        return removed + len(stale)

    def _stale(self, keys: list[str]) -> list[str]:
        """Those of ``keys`` whose entries are there and invalidated."""
        if not keys:
            return []
        found = self._inner.peek_many(keys)
        live = self._opened(found)
        return [key for key in found if key not in live]


class _Change:
    """The change that ``modify`` hands below: it unwraps and rewraps the envelope."""

    __slots__ = ("change", "expected")

    def __init__(self, change: Callable[[Any], Any], expected: Tokens) -> None:
        self.change = change
        self.expected = expected

    def __call__(self, current: Any) -> Envelope:
        if current is ABSENT:
            return Envelope((), self.change(ABSENT))
        if type(current) is not Envelope:
            raise CodecError(f"an entry below a Tags layer is not an envelope: {current!r:.80}")
        if current.tokens != self.expected:
            raise _Tagged
        return Envelope(current.tokens, self.change(current.value))


def snapshot(tags: TagNames, tokens: Mapping[str, str]) -> TagSnapshot:
    """The snapshot of ``tags`` (``checked_tags``) from their ``tokens`` (``tag_tokens``)."""
    return TagSnapshot(tuple((tag, tokens[tag]) for tag in checked_tags(tags)))


def checked_tags(tags: TagNames) -> list[str]:
    """``tags`` without repeats, sorted; ``ConfigurationError`` unless a list of str."""
    if isinstance(tags, TagSnapshot):
        return [tag for tag, _ in tags.tokens]
    if isinstance(tags, (str, bytes)):
        raise ConfigurationError(f"tags is a list of str (tags=[{tags!r}]), not {tags!r}")
    try:
        wanted = sorted(set(tags))
    except TypeError as exc:
        raise ConfigurationError(f"tags must be str: {exc}") from None
    for tag in wanted:
        if type(tag) is not str:
            raise ConfigurationError(f"tags are str, not {type(tag).__name__}: {tag!r}")
    return wanted


def _matches(tokens: Tokens, now: Mapping[str, str]) -> bool:
    return all(now.get(tag) == token for tag, token in tokens)


def _not_an_envelope(key: str, found: Any) -> CodecError:
    return CodecError(
        f"the stored value of key {key!r} was not written through a Tags layer "
        f"({type(found).__name__}): a stack with tags reads only what one wrote"
    )


def _too_many_rounds(operation: str, key: str) -> BackendError:
    return BackendError(
        f"{operation} of key {key!r}: {_MAX_ROUNDS} rounds in a row met an invalidated "
        "entry and lost the key to another writer"
    )
