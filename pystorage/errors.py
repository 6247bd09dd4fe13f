"""The exceptions PyStorage raises.

Every error is a ``StorageError``, so ``except StorageError`` catches all of them.
A missing key is a plain ``KeyError``, as for any mapping.
"""

from __future__ import annotations


class StorageError(Exception):
    """Base class of every PyStorage error."""


class ConfigurationError(StorageError, ValueError):
    """A layer, codec or stack is built with arguments that do not fit together."""


class StorageProviderError(ConfigurationError):
    """A preset or URL cannot be built: unknown name, or arguments that do not fit."""


class CodecError(StorageError):
    """A value cannot be encoded, or stored bytes cannot be decoded.

    The message names the key; the codec library's own exception is chained.
    """


class BackendError(StorageError):
    """The backend failed (I/O error, lost connection); the original exception is chained."""


class InvalidKeyError(StorageError):
    """A key the backend cannot store exactly: not a ``str``, or impossible for this backend."""


def not_a_str(key: object) -> InvalidKeyError:
    """The error for a key that is not a ``str`` (every layer raises the same one)."""
    return InvalidKeyError(f"keys are str, not {type(key).__name__}: {key!r}")


class UnsupportedError(StorageError):
    """The stack cannot do what was asked, e.g. a per-key TTL with nothing to enforce it."""


class ValueTooLargeError(StorageError):
    """A value is larger than the whole size limit of the stack; nothing was written."""


class NotAnIntegerError(StorageError, TypeError):
    """``incr`` or ``decr`` met a value that is not an ``int`` (a ``bool`` is not one),
    or was given a delta that is not; nothing is written."""
