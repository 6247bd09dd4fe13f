"""Codecs: how values become bytes. Chain them with ``|``: ``Pickle() | Zstd()``.

Each codec's module is imported when its name is first used, here or in ``resolve``
(see ``pystorage._lazy``); a codec's own library (msgpack, zstandard) only when that
codec is built.
"""

from pystorage import _lazy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pystorage.codecs.base import BaseCodec, Chain, register, resolve
    from pystorage.codecs.compress import Gzip, Zstd
    from pystorage.codecs.serializers import JSON, MsgPack, Pickle, Raw, Text
    from pystorage.codecs.signed import Signed

__all__ = [
    "JSON",
    "BaseCodec",
    "Chain",
    "Gzip",
    "MsgPack",
    "Pickle",
    "Raw",
    "Signed",
    "Text",
    "Zstd",
    "register",
    "resolve",
]

_WHERE = {
    "BaseCodec": "base",
    "Chain": "base",
    "register": "base",
    "resolve": "base",
    "Gzip": "compress",
    "Zstd": "compress",
    "JSON": "serializers",
    "MsgPack": "serializers",
    "Pickle": "serializers",
    "Raw": "serializers",
    "Text": "serializers",
    "Signed": "signed",
}
# The modules too, which ``import pystorage.codecs`` used to load: code may reach
# them as attributes of the package.
_MODULES = set(_WHERE.values())
if not TYPE_CHECKING:  # type checkers see the imports above, not a catch-all __getattr__
    __getattr__, __dir__ = _lazy.exports(
        __name__,
        {
            **{name: f"{__name__}.{module}:{name}" for name, module in _WHERE.items()},
            **{module: f"{__name__}.{module}" for module in _MODULES},
        },
        globals(),
    )
