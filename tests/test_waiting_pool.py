"""The pool of each event loop's Redis client (pystorage/aio/clients.py): a connection to
be had at once is taken without the waiting machinery; one that is not is waited for."""

from __future__ import annotations

import asyncio
import time

from redis.exceptions import MaxConnectionsError

from pystorage.aio.clients import WaitingPool


async def _until(condition: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "the state did not come within the deadline"
        await asyncio.sleep(0.001)


def test_a_task_that_waits_gets_the_connection_given_back(redis_url: str) -> None:
    async def scenario() -> tuple[int, int, bytes | None]:
        pool = WaitingPool.from_url(redis_url, max_connections=1, timeout=10)
        held = await pool.get_connection()  # the only connection, taken at once
        waiting = asyncio.create_task(pool.get_connection())
        await _until(lambda: pool._waiting == 1)
        await pool.release(held)
        connection = await asyncio.wait_for(waiting, 10)
        await connection.send_command("PING")
        answer = await connection.read_response()
        await pool.release(connection)
        counts = pool._waiting, len(pool._in_use_connections)
        await pool.disconnect()
        return (*counts, answer)

    assert asyncio.run(scenario()) == (0, 0, b"PONG")


def test_a_wait_too_long_says_what_it_waited_for(redis_url: str) -> None:
    async def scenario() -> str:
        pool = WaitingPool.from_url(redis_url, max_connections=1, timeout=0.05)
        held = await pool.get_connection()
        try:
            await pool.get_connection()
        except MaxConnectionsError as exc:
            return str(exc)
        finally:
            await pool.release(held)
            await pool.disconnect()
        return "no error"

    assert "for a free connection: all 1 connections were in use" in asyncio.run(scenario())


def test_connections_taken_at_once_are_counted_and_given_back(redis_url: str) -> None:
    async def scenario() -> tuple[int, int, bytes | None]:
        pool = WaitingPool.from_url(redis_url, max_connections=2, timeout=10)
        first, second = await pool.get_connection(), await pool.get_connection()
        full = len(pool._in_use_connections)
        await first.send_command("PING")
        answer = await first.read_response()
        await pool.release(first)
        await pool.release(second)
        idle = len(pool._available_connections)
        await pool.disconnect()
        return full, idle, answer

    assert asyncio.run(scenario()) == (2, 2, b"PONG")
