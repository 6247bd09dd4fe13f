"""Which storage a backend is: ``copy`` refuses to copy a storage onto itself, however
the two URLs are spelled."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urlsplit

from pystorage.errors import BackendError

if TYPE_CHECKING:
    from pystorage.layers import Layer, Redis


def same_storage(a: Layer, b: Layer) -> bool:
    """Whether backends ``a`` and ``b`` hold the same entries, judged from what they are
    (the folder on disk, the Redis server, the S3 endpoint), never from URL text."""
    from pystorage.layers import S3, Files, Redis

    if isinstance(a, Files) and isinstance(b, Files):
        return _same_folder(a.path, b.path) and _ending(a.suffix) == _ending(b.suffix)
    if isinstance(a, Redis) and isinstance(b, Redis):
        return a.prefix == b.prefix and _redis_identity(a) == _redis_identity(b)
    if isinstance(a, S3) and isinstance(b, S3):
        return (
            a.bucket == b.bucket
            and a.folder == b.folder
            and _same_endpoint(a.client.meta.endpoint_url, b.client.meta.endpoint_url)
        )
    return a is b  # memory://: every open is a new, empty memory


def _same_folder(a: Path, b: Path) -> bool:
    """The same folder, through symlinks, ``..``, bind mounts: the same device and inode."""
    try:
        return os.path.samefile(a, b)
    except OSError as exc:
        raise BackendError(f"cannot compare the folders {str(a)!r} and {str(b)!r}: {exc}") from exc


def _ending(suffix: str) -> str:
    """The end of the file names of ``Files(path, suffix)``: ``json`` and ``.json`` agree."""
    return "." + suffix.lstrip(".") if suffix.strip(".") else ""


def _redis_identity(backend: Redis) -> tuple[object, ...]:
    """The server (its run id, whatever the host name or address used to reach it) and
    the database number."""
    import redis

    client = backend.client
    kwargs = getattr(client, "connection_pool", None)
    options = kwargs.connection_kwargs if kwargs is not None else {}
    db = int(options.get("db", 0) or 0)
    try:
        return (client.info("server")["run_id"], db)
    except redis.ResponseError:  # INFO refused (a managed server): where it is, then
        where = options.get("path") or _addresses(options.get("host"), options.get("port"))
        return (where, options.get("port"), db)
    except redis.RedisError as exc:
        raise BackendError(f"cannot ask Redis which server it is: {exc}") from exc


def _same_endpoint(a: str, b: str) -> bool:
    """Two S3 endpoints on one port whose host names are equal or resolve to a common
    address (``localhost`` and ``127.0.0.1``)."""
    x, y = urlsplit(a), urlsplit(b)
    if _port(x) != _port(y):
        return False
    if x.hostname == y.hostname:
        return True
    return bool(_addresses(x.hostname, _port(x)) & _addresses(y.hostname, _port(y)))


def _port(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def _addresses(host: Any, port: Any) -> frozenset[str]:
    """The IP addresses ``host`` resolves to (none if it does not)."""
    import socket

    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return frozenset()
    return frozenset(str(sockaddr[0]) for *_, sockaddr in found)
