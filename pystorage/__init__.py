"""PyStorage: storages built from small stacked layers.

>>> from pystorage import Storage
>>> from pystorage.layers import Codec, Memory
>>> storage = Storage(Codec("json"), Memory())
>>> storage["greeting"] = {"text": "Hello"}
>>> storage["greeting"]
{'text': 'Hello'}
"""

from pystorage import errors
from pystorage.storage import Storage
from pystorage.storage_provider import ServiceProvider, StorageProvider
from pystorage.urls import open_url as open

__all__ = ["ServiceProvider", "Storage", "StorageProvider", "errors", "open"]
__version__ = "0.1.0"
