"""Autopipelining: the Redis commands that an event loop's tasks issue while one is out
go together, as one pipeline.

Each awaited command of a redis.asyncio client takes a connection and a round trip of
its own; a hundred tasks in flight pay a hundred round trips and a hundred parses of
small replies. A ``Coalescer`` (one per event loop, kept by ``LoopClients``) sends a
command at once when nothing is out, as a plain command: a task alone pays one flag and
one coroutine, nothing else. The commands issued while one is out are queued, each
caller holding a future of its own; when it is back, a flush task takes them all, and
sends them as one pipeline (``transaction=False``) on one connection. The flush task
runs its steps through the loop (``call_soon``), after every callback already due:
while its pipeline is out, the next batch queues, and the callers it answers issue
their next commands before it looks again, so under load each pipeline carries what
every task of the loop issued meanwhile.

- One flush at a time: the commands queued while a pipeline is out go in the next one.
  Per key (indeed per loop) the server runs the commands in the order they were issued,
  as they are written in that order, one pipeline after the other.
- A failed command fails only its caller: the pipeline runs with
  ``raise_on_error=False`` and each reply or error goes to its own future. A failure of
  the whole pipeline (the connection lost, after redis-py's retries) goes to every
  caller of that pipeline; one raised before anything was sent (a value redis-py cannot
  encode, a command a cluster cannot route) sends the commands one by one instead, so
  that it fails only the caller that caused it.
- A caller cancelled while it waits only drops its future: the flush runs in a task of
  its own, and a command whose caller is gone before it is sent is not sent.
- A batch of one command is sent as a plain command, not a pipeline of one.

Transactions (WATCH/MULTI), SCAN and the pipelines of the layer itself are not
coalesced: they keep a connection of their own, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import DataError, RedisClusterException

#: The client methods that are coalesced: single commands whose reply goes to one
#: caller, with the same signature on a client and on a pipeline.
COALESCED = frozenset({"get", "set", "type", "eval", "evalsha", "mget", "mset"})

#: Flush tasks, kept until done: a task that no one holds may be collected mid-flight.
_FLUSHING: set[asyncio.Task[None]] = set()


class _Command:
    __slots__ = ("args", "future", "name", "options")

    def __init__(
        self, name: str, args: tuple[Any, ...], options: dict[str, Any], future: Any
    ) -> None:
        self.name = name
        self.args = args
        self.options = options
        self.future: asyncio.Future[Any] = future


class Coalescer:
    """The commands an event loop's tasks issue, coalesced into pipelines (see the
    module). ``direct(name)`` is the client's method for a single command; ``pipeline()``
    a new non-transactional pipeline of the client (both take the loop's turn at a
    cluster, where one is kept); ``same_slot(name, args)``, on a cluster, whether the
    keys of a command are in one slot (a command whose keys are not is sent alone, where
    the client raises its error for its caller only)."""

    __slots__ = ("_commands", "_direct", "_flushing", "_pipeline", "_queue", "_same_slot")

    def __init__(
        self,
        direct: Callable[[str], Callable[..., Awaitable[Any]]],
        pipeline: Callable[[], Any],
        same_slot: Callable[[str, tuple[Any, ...]], bool] | None = None,
    ) -> None:
        self._direct = direct
        self._pipeline = pipeline
        self._same_slot = same_slot
        self._queue: list[_Command] = []
        self._flushing = False
        self._commands: dict[str, Callable[..., Awaitable[Any]]] = {}

    def command(self, name: str) -> Callable[..., Awaitable[Any]]:
        """The client's method ``name``, coalesced (made once per name: this is on the
        path of every command)."""
        found = self._commands.get(name)
        if found is None:
            found = self._commands[name] = self._coalesced(name)
        return found

    def _coalesced(self, name: str) -> Callable[..., Awaitable[Any]]:
        async def coalesced(*args: Any, **options: Any) -> Any:
            if self._same_slot is not None and not self._same_slot(name, args):
                return await self._direct(name)(*args, **options)
            if self._flushing:
                return await self._send(name, args, options)
            # Nothing out: this command goes at once, as a plain command, and those
            # issued while it is out wait for it, then go as one pipeline.
            self._flushing = True
            try:
                return await self._direct(name)(*args, **options)
            finally:
                if self._queue:
                    self._start()
                else:
                    self._flushing = False

        return coalesced

    def _send(self, name: str, args: tuple[Any, ...], options: dict[str, Any]) -> Awaitable[Any]:
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Command(name, args, options, future))
        return future

    def _start(self) -> None:
        task = asyncio.get_running_loop().create_task(self._flush())
        _FLUSHING.add(task)
        task.add_done_callback(_FLUSHING.discard)

    async def _flush(self) -> None:
        batch: list[_Command] = []
        try:
            while True:
                if not self._queue:
                    # One more turn of the loop: the callers just answered issue their
                    # next commands in it, and they go in the next pipeline.
                    await asyncio.sleep(0)
                    if not self._queue:
                        return
                batch, self._queue = self._queue, []
                await self._run([command for command in batch if not command.future.done()])
        except BaseException as exc:
            # The flush was cancelled (its loop is closing) or failed where no caller
            # could be told: no caller waits forever for a reply that will not come.
            for command in (*batch, *self._queue):
                _fail(command.future, exc)
            self._queue = []
            if not isinstance(exc, Exception):
                raise
        finally:
            self._flushing = False

    async def _run(self, batch: list[_Command]) -> None:
        if len(batch) == 1:
            await self._alone(batch[0])
            return
        if not batch:
            return
        try:
            replies = await self._piped(batch)
        except (DataError, RedisClusterException) as exc:
            if not _before_sending(exc):
                for command in batch:
                    _fail(command.future, exc)
                return
            for command in batch:  # nothing was sent: each alone, in order
                await self._alone(command)
            return
        except BaseException as exc:
            for command in batch:
                _fail(command.future, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for command, reply in zip(batch, replies, strict=True):
            if command.future.done():
                continue
            if isinstance(reply, Exception):
                command.future.set_exception(reply)
            else:
                command.future.set_result(reply)

    async def _piped(self, batch: list[_Command]) -> list[Any]:
        async with self._pipeline() as pipe:
            for command in batch:
                getattr(pipe, command.name)(*command.args, **command.options)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    async def _alone(self, command: _Command) -> None:
        try:
            reply = await self._direct(command.name)(*command.args, **command.options)
        except BaseException as exc:
            _fail(command.future, exc)
            if not isinstance(exc, Exception):
                raise
            return
        if not command.future.done():
            command.future.set_result(reply)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if future.done():
        return
    if isinstance(exc, asyncio.CancelledError):
        future.cancel()
    else:
        future.set_exception(exc)


def _before_sending(exc: Exception) -> bool:
    """Whether redis-py raised ``exc`` before it sent anything: a value it cannot encode,
    a command a cluster cannot route (the plain ``RedisClusterException``; its subclasses,
    such as an unreachable cluster, may come after some commands ran)."""
    return isinstance(exc, DataError) or type(exc) is RedisClusterException
