"""The batches of a ``copy``: read from SRC and written to DST (or deleted from SRC), a few
at a time in threads, each counted into the copy's tally."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from pystorage.cli.common import Failure
from pystorage.cli.progress import REDRAW_INTERVAL
from pystorage.errors import CodecError, InvalidKeyError
from pystorage.layers.tags import Tags
from pystorage.storage import Storage

# Threads are imported by a copy of more than one batch.
if TYPE_CHECKING:
    import argparse
    from concurrent.futures import Future

    from pystorage.cli.progress import Progress
    from pystorage.layers.tags import Entry


@attrs.frozen
class Plan:
    """What a copy does with each key."""

    #: Keys DST had at the start (with --resume): not written again.
    present: frozenset[str]
    #: Remove from SRC, once every batch is written, what DST then holds.
    delete: bool


@attrs.define
class BatchResult:
    """What became of one batch of keys."""

    copied: int = 0
    #: Keys DST already had (--resume): not written.
    skipped: int = 0
    #: Keys listed in SRC but gone by the time they were read.
    gone: int = 0
    #: Keys removed from SRC (--delete).
    deleted: int = 0
    failed: list[tuple[str, str]] = attrs.Factory(list)
    #: Keys DST holds with SRC's value (written, or already there): --delete may remove them.
    held: list[str] = attrs.Factory(list)
    #: Keys --delete leaves in SRC, and why.
    kept: list[tuple[str, str]] = attrs.Factory(list)
    #: The seconds left to the keys read with a deadline: DST gets the same.
    ttls: dict[str, float] = attrs.Factory(dict)
    #: The tags of the keys read with tags (SRC with ``tags=1``): DST gets the same.
    tags: dict[str, list[str]] = attrs.Factory(dict)


@attrs.define
class Tally:
    """The running totals of a copy."""

    total: int
    #: How many keys DST had at the start (--resume).
    present: int = 0
    copied: int = 0
    skipped: int = 0
    gone: int = 0
    deleted: int = 0
    #: Entries DST's limit evicted while it was open: what it holds is fewer than copied.
    evicted: int = 0
    failed: list[tuple[str, str]] = attrs.Factory(list)
    held: list[str] = attrs.Factory(list)
    kept: list[tuple[str, str]] = attrs.Factory(list)
    #: Set once the copy is written and the deletes from SRC begin (--delete).
    deleting: bool = False
    #: Keys an error stopped the copy before it wrote them (the keys of the batch that
    #: raised, whose write may have been cut short, and of the batches never begun).
    unwritten: int = 0
    #: Keys an error stopped --delete before it removed them from SRC (for the batch that
    #: raised, perhaps some were): each is held by DST, and perhaps still in SRC.
    undeleted: int = 0

    @property
    def done(self) -> int:
        return self.copied + self.skipped + self.gone + self.failures

    @property
    def failures(self) -> int:
        """The keys the copy did not write: refused one by one, or stopped by an error."""
        return len(self.failed) + self.unwritten

    def stop(self, keys: int) -> None:
        """An error stopped the copy with ``keys`` not done by the current phase."""
        if self.deleting:
            self.undeleted += keys
        else:
            self.unwritten += keys

    def add(self, result: BatchResult) -> None:
        self.copied += result.copied
        self.skipped += result.skipped
        self.gone += result.gone
        self.deleted += result.deleted
        self.failed.extend(result.failed)
        self.held.extend(result.held)
        self.kept.extend(result.kept)


Batch = Callable[[Storage, Storage, list[str], Plan, bool], BatchResult]


def run_batches(
    batch: Batch,
    src: Storage,
    dst: Storage,
    keys: list[str],
    args: argparse.Namespace,
    plan: Plan,
    tally: Tally,
    progress: Progress,
) -> None:
    """Run ``batch`` on ``keys`` split in batches of ``args.batch``, ``args.workers`` of
    them at a time; the first one alone, and told that it is the first.

    If a batch raises, the batches not begun are cancelled, those running finish and are
    counted, the keys of the one that raised and of the cancelled ones go to
    ``tally.stop``, and the first error is raised again.
    """
    batches = [keys[i : i + args.batch] for i in range(0, len(keys), args.batch)]
    if not batches:
        return
    try:
        tally.add(batch(src, dst, batches[0], plan, True))
    except Exception:
        tally.stop(len(keys))
        raise
    progress.update(tally.done, tally.failures)
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    executor = ThreadPoolExecutor(max_workers=args.workers, thread_name_prefix="copy")
    error: Exception | None = None
    try:
        sizes: dict[Future[BatchResult], int] = {
            executor.submit(batch, src, dst, chunk, plan, False): len(chunk)
            for chunk in batches[1:]
        }
        pending = set(sizes)
        while pending:
            finished, pending = wait(pending, timeout=REDRAW_INTERVAL, return_when=FIRST_COMPLETED)
            for future in finished:
                if future.cancelled():
                    tally.stop(sizes[future])
                    continue
                try:
                    tally.add(future.result())
                except Exception as exc:
                    tally.stop(sizes[future])
                    if error is None:
                        error = exc
                        for waiting in pending:
                            waiting.cancel()  # those already running cannot be, and finish
            progress.update(tally.done, tally.failures)
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    if error is not None:
        raise error


def copy_batch(
    src: Storage, dst: Storage, keys: list[str], plan: Plan, first: bool = False
) -> BatchResult:
    """Read ``keys`` from ``src`` and write them to ``dst``: one get_many and one set_many,
    unless a value cannot be decoded or encoded; then key by key, to name the culprits.

    With ``plan.delete``, keys DST already has are read on both sides and compared: the
    ones that match were copied by an interrupted ``copy --delete`` and can go from SRC.
    """
    result = BatchResult()
    if not plan.delete:
        todo = [key for key in keys if key not in plan.present]
        result.skipped = len(keys) - len(todo)
        keys = todo
    values = _read(src, keys, result)
    result.gone = len(keys) - len(values) - len(result.failed)
    fresh = {key: value for key, value in values.items() if key not in plan.present}
    result.held = _write(dst, fresh, result)
    result.copied = len(result.held)
    if plan.delete:
        already = [key for key in values if key in plan.present]
        result.skipped = len(already)
        theirs = _read_back(dst, already)
        for key in already:
            if key not in theirs:
                result.kept.append((key, "DST has a value that cannot be read"))
            elif _equal(theirs[key], values[key]):
                result.held.append(key)
            else:
                result.kept.append((key, "DST already has another value (--resume keeps it)"))
    return result


def delete_batch(
    src: Storage, dst: Storage, keys: list[str], plan: Plan, first: bool = False
) -> BatchResult:
    """Remove from ``src`` those ``keys`` that ``dst`` returns now; the others stay.

    The ``first`` batch is checked after its delete: if the entries went from DST too,
    SRC and DST are one storage reached two ways that ``same_storage`` cannot tell apart
    (a network share mounted twice); they are written back and the copy stops.
    """
    result = BatchResult()
    held = _read_back(dst, keys)
    movable = [key for key in keys if key in held]
    result.kept = [
        (key, "not readable in DST at the end of the copy") for key in keys if key not in held
    ]
    if not movable:
        return result
    with src.top.exclusive():  # processes counting SRC's entries (limit=) learn of it
        src.delete_many(movable)
    result.deleted = len(movable)
    if first and movable[0] not in dst:
        dst.set_many({key: held[key] for key in movable})
        raise Failure(
            "SRC and DST are one storage: deleting from SRC removed the entries from DST "
            f"too. The {len(movable)} entries concerned were written back through DST, and "
            "nothing else was deleted"
        )
    return result


def _read_back(dst: Storage, keys: list[str]) -> dict[str, Any]:
    """The values of ``keys`` that ``dst`` returns now; a value it cannot decode is left out."""
    if not keys:
        return {}
    try:
        return dst.get_many(keys)
    except CodecError:
        pass
    found = {}
    for key in keys:
        try:
            found[key] = dst[key]
        except (KeyError, CodecError):
            continue
    return found


def _equal(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except Exception:  # an == that raises (arrays...) proves nothing: not equal
        return False


def _read(src: Storage, keys: list[str], result: BatchResult) -> dict[str, Any]:
    """The values of ``keys`` in ``src``; the deadlines of those that have one go to
    ``result.ttls``, the tags of those that have some to ``result.tags``."""
    read = _reader(src)
    try:
        found = read(keys)
    except (CodecError, InvalidKeyError):
        found = {}
        for key in keys:
            try:
                found.update(read([key]))
            except (CodecError, InvalidKeyError) as exc:
                result.failed.append((key, str(exc)))
    result.ttls = {key: ttl for key, (_, ttl, _) in found.items() if ttl is not None}
    result.tags = {key: tags for key, (_, _, tags) in found.items() if tags}
    return {key: value for key, (value, _, _) in found.items()}


def _reader(src: Storage) -> Callable[[list[str]], dict[str, Entry]]:
    """How to read entries of ``src`` with their deadlines and tags."""
    top = src.top
    if isinstance(top, Tags):
        return top.get_many_tagged

    def read(keys: list[str]) -> dict[str, Entry]:
        return {key: (value, ttl, []) for key, (value, ttl) in src.get_many_with_ttl(keys).items()}

    return read


def _write(dst: Storage, values: dict[str, Any], result: BatchResult) -> list[str]:
    """Store ``values`` in ``dst``, each with the time it had left in SRC and its tags;
    the keys written (failures go to ``result``)."""
    lasting = {
        key: value
        for key, value in values.items()
        if key not in result.ttls and key not in result.tags
    }
    try:
        dst.set_many(lasting)
        written = list(lasting)
        singles = {key: value for key, value in values.items() if key not in lasting}
    except (CodecError, InvalidKeyError):
        written, singles = [], values  # key by key, to name the culprits
    for key, value in singles.items():
        try:
            dst.set(key, value, ttl=result.ttls.get(key), tags=result.tags.get(key))
        except (CodecError, InvalidKeyError) as exc:
            result.failed.append((key, str(exc)))
        else:
            written.append(key)
    return written
