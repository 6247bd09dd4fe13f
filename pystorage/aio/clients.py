"""The redis.asyncio clients of an ``AsyncRedis``: one per running event loop.

A redis.asyncio client belongs to the event loop its connections were opened on: used
from another loop (a second ``asyncio.run``, a loop in another thread) it fails with
``Event loop is closed`` or ``attached to a different loop``. ``LoopClients`` stands
where ``AsyncRedis`` expects its client and hands each attribute to the client of the
loop that runs: made on the first use in that loop from the options of a template, and
dropped with the loop (a weak reference keys it). A client the user gave is theirs and
is used as given, on the first loop that uses it only.

A burst of tasks waits for a connection rather than failing at the pool's size:
standalone servers get a ``BlockingConnectionPool``; the cluster client of redis.asyncio
has no waiting pool (each node refuses its connection beyond ``max_connections``), so
``LoopClients`` lets at most that many commands and pipelines of a loop's client run at
once, the others waiting their turn, each for ``wait`` seconds at most.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import Any

import redis.asyncio
import redis.asyncio.cluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError

from pystorage.aio.pipelining import COALESCED, Coalescer
from pystorage.errors import ConfigurationError

#: The commands of a cluster client that take a connection, each awaited once.
_GATED = frozenset({"get", "set", "eval", "evalsha", "script_load", "type", "mget_nonatomic"})


def _waited(wait: float, connections: int, what: str) -> MaxConnectionsError:
    return MaxConnectionsError(
        f"waited {wait:g} s for a free connection: all {connections} {what} were in use "
        "(raise max_connections, or the wait with pool_timeout=)"
    )


class WaitingPool(redis.asyncio.BlockingConnectionPool):
    """redis.asyncio's pool that waits for a free connection, whose timeout says what it
    waited for (its own says only ``No connection available``).

    A connection that can be had at once (one is idle, or fewer than the maximum are in
    use) is taken as the plain pool takes it, without the waiting pool's condition,
    timeout and records: in redis-py 8.2 those made a GET cost 150 µs against 70 with the
    plain pool. Only while no task waits: then the waiting pool hands out every connection,
    as it did before (it is not first come, first served either: a newcomer can take a
    connection that a waiting task was woken for, which then waits again).
    """

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self._waiting = 0

    async def get_connection(self, *args: Any, **options: Any) -> Any:
        if not self._waiting and self.can_get_connection():
            # Nothing is awaited between the check and the take: no other task runs.
            connection = self.get_available_connection()  # type: ignore[no-untyped-call]
            try:
                await self.ensure_connection(connection)
            except BaseException:
                await self.release(connection)
                raise
            return connection
        self._waiting += 1
        try:
            return await super().get_connection(*args, **options)  # type: ignore[no-untyped-call]
        except RedisConnectionError as exc:
            if not isinstance(exc.__cause__, asyncio.TimeoutError):
                raise
            raise _waited(self.timeout or 0, self.max_connections, "connections") from exc
        finally:
            self._waiting -= 1


class _Loop:
    """What a ``LoopClients`` keeps for one event loop."""

    __slots__ = ("__weakref__", "client", "coalescer", "gate", "turns")

    def __init__(self, client: Any, gate: asyncio.Semaphore | None) -> None:
        self.client = client
        self.gate = gate
        self.coalescer: Coalescer | None = None
        #: A lock per key that a transaction of this loop watches: they take turns, and
        #: WATCH conflicts only with other processes (else a burst of increments of one
        #: key would retry each other's transactions, n squared round trips).
        self.turns: weakref.WeakValueDictionary[Any, asyncio.Lock] = weakref.WeakValueDictionary()


class LoopClients:
    """The client of each running event loop, for ``AsyncRedis`` (see the module)."""

    def __init__(
        self,
        template: Any,
        make: Callable[[], Any] | None,
        *,
        gate: int | None = None,
        wait: float = 20.0,
        coalesce: bool = False,
    ) -> None:
        #: A sync client whose options make each loop's client, or the client given.
        self.template = template
        self._make = make
        self._gate = gate
        self._wait = wait
        self._coalesce = coalesce
        self._lock = threading.Lock()
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Loop] = (
            weakref.WeakKeyDictionary()
        )
        self._given_to: weakref.ref[asyncio.AbstractEventLoop] | None = None

    @classmethod
    def given(cls, client: Any, *, coalesce: bool = False) -> LoopClients:
        """A redis.asyncio client of the user's: on the first loop that uses it only."""
        return cls(client, None, coalesce=coalesce)

    def _here(self) -> _Loop:
        loop = asyncio.get_running_loop()
        found = self._loops.get(loop)
        if found is not None:
            return found
        with self._lock:
            found = self._loops.get(loop)
            if found is None:
                found = self._loops[loop] = self._new(loop)
        return found

    def _new(self, loop: asyncio.AbstractEventLoop) -> _Loop:
        if self._make is not None:
            gate = None if self._gate is None else asyncio.Semaphore(self._gate)
            return self._coalescing(_Loop(self._make(), gate))
        if self._given_to is not None:
            first = self._given_to()
            closed = " (now closed)" if first is None or first.is_closed() else ""
            raise ConfigurationError(
                "the redis.asyncio client given to this storage belongs to the event loop "
                f"that first used it{closed}, not to this one: a redis.asyncio client "
                "works on one loop only. Give Redis a url= (or a redis.Redis or "
                "RedisCluster client) instead, and PyStorage makes a client for each "
                "event loop"
            )
        self._given_to = weakref.ref(loop)
        return self._coalescing(_Loop(self.template, None))

    def _coalescing(self, here: _Loop) -> _Loop:
        if not self._coalesce:
            return here
        client = here.client
        cluster = not hasattr(client, "connection_pool")

        def direct(name: str) -> Any:
            found = getattr(client, name)
            if here.gate is not None and name in _GATED:
                return _Turn(here.gate, self._wait, self._gate or 0).around(found)
            return found

        def pipeline() -> _Pipeline:
            return _Pipeline(client.pipeline(transaction=False), here, self)

        here.coalescer = Coalescer(direct, pipeline, _one_slot(client) if cluster else None)
        return here

    def __getattr__(self, name: str) -> Any:
        try:
            here = self._here()
        except RuntimeError:  # no running loop: a question about the options
            return getattr(self.template, name)
        if here.coalescer is not None and name in COALESCED:
            return here.coalescer.command(name)
        found = getattr(here.client, name)
        if name == "pipeline":
            return lambda *args, **options: _Pipeline(found(*args, **options), here, self)
        if here.gate is not None and name in _GATED:
            return _Turn(here.gate, self._wait, self._gate or 0).around(found)
        return found

    async def aclose(self) -> None:
        """Close the client of this loop; those of loops still running elsewhere are
        closed on their loops, and those of closed loops are dropped."""
        loop = asyncio.get_running_loop()
        with self._lock:
            mine = self._loops.pop(loop, None)
            others = list(self._loops.items())
            self._loops.clear()
        for other, kept in others:
            if other.is_running() and not other.is_closed():
                asyncio.run_coroutine_threadsafe(kept.client.aclose(), other)
        if mine is not None:
            await mine.client.aclose()


def _one_slot(cluster: Any) -> Callable[[str, tuple[Any, ...]], bool]:
    """For a cluster's coalescer: whether a command's keys are in one slot. A script's
    keys are checked (a pipeline of the cluster would refuse the whole batch for a
    cross-slot one); GET, SET and TYPE have one key; MGET and MSET go alone."""

    def same_slot(name: str, args: tuple[Any, ...]) -> bool:
        if name in ("mget", "mset"):
            return False
        if name not in ("eval", "evalsha") or len(args) < 2:
            return True
        keys = args[2 : 2 + int(args[1])]
        return len({cluster.keyslot(key) for key in keys}) <= 1

    return same_slot


class _Turn:
    """One of a loop's turns at the cluster (a permit of its semaphore), or none."""

    __slots__ = ("gate", "held", "size", "wait")

    def __init__(self, gate: asyncio.Semaphore | None, wait: float, size: int) -> None:
        self.gate = gate
        self.wait = wait
        self.size = size
        self.held = False

    async def take(self) -> None:
        if self.held or self.gate is None:
            return
        try:
            await asyncio.wait_for(self.gate.acquire(), self.wait)
        except asyncio.TimeoutError:
            raise _waited(self.wait, self.size, "connections per node") from None
        self.held = True

    def give_back(self) -> None:
        if self.held and self.gate is not None:
            self.held = False
            self.gate.release()

    def around(self, call: Callable[..., Any]) -> Callable[..., Any]:
        async def taking_a_turn(*args: Any, **options: Any) -> Any:
            await self.take()
            try:
                return await call(*args, **options)
            finally:
                self.give_back()

        return taking_a_turn


class _Pipeline:
    """A pipeline of a loop's client. A transaction takes its keys' turns in this loop
    at WATCH and keeps them until it ends; on a cluster, it also holds one of the loop's
    turns at the cluster from its first command that runs until it is executed."""

    def __init__(self, pipe: Any, here: _Loop, clients: LoopClients) -> None:
        self._pipe = pipe
        self._here = here
        self._turn = _Turn(here.gate, clients._wait, clients._gate or 0)
        self._keys: list[asyncio.Lock] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)

    async def __aenter__(self) -> _Pipeline:
        await self._pipe.__aenter__()
        return self

    async def __aexit__(self, *details: Any) -> None:
        try:
            await self._pipe.__aexit__(*details)
        finally:
            self._end()

    def _end(self) -> None:
        self._turn.give_back()
        for lock in self._keys:
            lock.release()
        self._keys = []

    async def watch(self, *names: Any) -> Any:
        if not self._keys:
            for name in sorted(set(names)):  # one order: two transactions never deadlock
                lock = self._here.turns.get(name)
                if lock is None:
                    lock = self._here.turns[name] = asyncio.Lock()
                await lock.acquire()
                self._keys.append(lock)
        await self._turn.take()
        return await self._pipe.watch(*names)

    async def execute(self, *args: Any, **options: Any) -> Any:
        await self._turn.take()
        try:
            return await self._pipe.execute(*args, **options)
        finally:
            if not self._keys:  # a transaction keeps its turn until it ends
                self._turn.give_back()

    async def reset(self) -> None:
        try:
            await self._pipe.reset()
        finally:
            self._end()
