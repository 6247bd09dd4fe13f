"""PyStorage: storages built from small stacked layers.

>>> from pystorage import Storage
>>> from pystorage.layers import Codec, Memory
>>> storage = Storage(Codec("json"), Memory())
>>> storage["greeting"] = {"text": "Hello"}
>>> storage["greeting"]
{'text': 'Hello'}

Importing the package loads none of its parts: each public name below is imported when
first used (``pystorage._lazy``), so that short-lived programs and the ``pystorage``
command start quickly.
"""

from pystorage import _lazy, errors

# Not typing.TYPE_CHECKING: importing typing would cost this import more than the rest.
TYPE_CHECKING = False
if TYPE_CHECKING:
    # The subpackages too (``as`` marks them re-exported), as ``import pystorage``
    # loaded them before they became lazy: ``pystorage.layers.SQLite`` still works.
    from pystorage import aio as aio
    from pystorage import codecs as codecs
    from pystorage import layers as layers
    from pystorage import memoize as memoize
    from pystorage import storage as storage
    from pystorage import storage_provider as storage_provider
    from pystorage import urls as urls
    from pystorage.aio.storage import AsyncStorage
    from pystorage.stampede import Refresh
    from pystorage.storage import Storage
    from pystorage.storage_provider import ServiceProvider, StorageProvider
    from pystorage.urls import open_async
    from pystorage.urls import open_url as open

__all__ = [
    "AsyncStorage",
    "Refresh",
    "ServiceProvider",
    "Storage",
    "StorageProvider",
    "errors",
    "open",
    "open_async",
]
__version__ = "0.1.0"

# Where each name above is, imported on first access.
_WHERE = {
    "AsyncStorage": "pystorage.aio.storage:AsyncStorage",
    "Refresh": "pystorage.stampede:Refresh",
    "ServiceProvider": "pystorage.storage_provider:ServiceProvider",
    "Storage": "pystorage.storage:Storage",
    "StorageProvider": "pystorage.storage_provider:StorageProvider",
    "open": "pystorage.urls:open_url",
    "open_async": "pystorage.urls:open_async",
    **{
        name: f"pystorage.{name}"
        for name in ("aio", "codecs", "layers", "memoize", "storage", "storage_provider", "urls")
    },
}
if not TYPE_CHECKING:  # type checkers see the imports above, not a catch-all __getattr__
    __getattr__, __dir__ = _lazy.exports(__name__, _WHERE, globals())
