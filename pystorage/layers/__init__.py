"""Layers: stack them in a ``Storage``, outermost first, a backend last.

Each layer's module is imported when its name is first used (see ``pystorage._lazy``):
building an SQLite stack never loads the Redis or S3 glue.
"""

from pystorage import _lazy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pystorage.layers.base import Backend, Layer, Wrapper
    from pystorage.layers.codec import Codec
    from pystorage.layers.count_limit import CountLimit
    from pystorage.layers.expiry import Expiry
    from pystorage.layers.files import Files
    from pystorage.layers.limit import Limit
    from pystorage.layers.lru import LRU
    from pystorage.layers.memory import Memory
    from pystorage.layers.redis import Redis
    from pystorage.layers.s3 import S3
    from pystorage.layers.size_limit import SizeLimit
    from pystorage.layers.sqlite import SQLite
    from pystorage.layers.stats import Stats
    from pystorage.layers.tags import Tags
    from pystorage.layers.tier import Tier
    from pystorage.layers.timed import Timed
    from pystorage.layers.tinylfu import TinyLFU

__all__ = [
    "LRU",
    "S3",
    "Backend",
    "Codec",
    "CountLimit",
    "Expiry",
    "Files",
    "Layer",
    "Limit",
    "Memory",
    "Redis",
    "SQLite",
    "SizeLimit",
    "Stats",
    "Tags",
    "Tier",
    "Timed",
    "TinyLFU",
    "Wrapper",
]

_WHERE = {
    "Backend": "base",
    "Layer": "base",
    "Wrapper": "base",
    "Codec": "codec",
    "CountLimit": "count_limit",
    "Expiry": "expiry",
    "Files": "files",
    "Limit": "limit",
    "LRU": "lru",
    "Memory": "memory",
    "Redis": "redis",
    "S3": "s3",
    "SizeLimit": "size_limit",
    "SQLite": "sqlite",
    "Stats": "stats",
    "Tags": "tags",
    "Tier": "tier",
    "Timed": "timed",
    "TinyLFU": "tinylfu",
}
# The modules too, which ``import pystorage.layers`` used to load: code may reach
# them as attributes of the package.
_MODULES = set(_WHERE.values()) | {"envelope", "names", "tracking", "wal_index"}
if not TYPE_CHECKING:  # type checkers see the imports above, not a catch-all __getattr__
    __getattr__, __dir__ = _lazy.exports(
        __name__,
        {
            **{name: f"{__name__}.{module}:{name}" for name, module in _WHERE.items()},
            **{module: f"{__name__}.{module}" for module in _MODULES},
        },
        globals(),
    )
