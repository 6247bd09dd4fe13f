"""Layers: stack them in a ``Storage``, outermost first, a backend last."""

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
from pystorage.layers.tier import Tier
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
    "Tier",
    "TinyLFU",
    "Wrapper",
]
