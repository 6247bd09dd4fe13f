"""PyStorage: storages built from small stacked layers.

>>> from pystorage import Storage
>>> from pystorage.layers import Codec, Memory
>>> storage = Storage(Codec("json"), Memory())
>>> storage["greeting"] = {"text": "Hello"}
>>> storage["greeting"]
{'text': 'Hello'}
"""

from pystorage import errors
from pystorage.aio.storage import AsyncStorage
from pystorage.storage import Storage
from pystorage.storage_provider import ServiceProvider, StorageProvider
from pystorage.urls import open_async
from pystorage.urls import open_url as open

__all__ = [
    "AsyncStorage",
    "ServiceProvider",
    "Storage",
    "StorageProvider",
    "errors",
    "open",
    "open_async",
]
__version__ = "0.1.0"
