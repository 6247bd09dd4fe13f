"""How keys become names for stores that have rules about names (files, S3 objects).

A plain key (letters, digits, ``._-``) is its own name; other characters are ``%XX``
escapes of their UTF-8 bytes. A key whose name would be too long is stored under
``~<sha256 of the key>``, and the stored bytes then begin with the escaped key and a
newline, so that listing can tell the key again.
"""

from __future__ import annotations

import hashlib
import re
from urllib.parse import unquote_to_bytes

_PLAIN = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")
#: The first character of hashed names; escaping never produces it.
HASHED = "~"
HASHED_LENGTH = 1 + 64


def escape(key: str) -> str:
    """The name of ``key``: plain keys as they are, other characters as ``%XX``.

    A leading dot is escaped too, so no key becomes a hidden file (temporary files are
    hidden) and ``.`` and ``..`` are ordinary names. The empty key is ``%``.
    """
    if _PLAIN.fullmatch(key):
        return key
    if not key:
        return "%"
    parts = []
    for index, char in enumerate(key):
        if char.isascii() and (char.isalnum() or char in "_-" or (char == "." and index)):
            parts.append(char)
        else:
            parts.extend(f"%{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
    return "".join(parts)


def unescape(stem: str) -> str | None:
    """The key whose escaped form is ``stem``, or None if no key escapes to it."""
    if stem == "%":
        return ""
    if not stem.isascii():  # every escaped key is ASCII
        return None
    try:
        key = unquote_to_bytes(stem).decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    # Only the one canonical spelling of a key is ours: "%41" or "a%2e" are foreign.
    return key if escape(key) == stem else None


def stem(key: str, max_bytes: int) -> str:
    """The name of ``key`` if it fits in ``max_bytes``, else its hashed name."""
    escaped = escape(key)
    if len(escaped) <= max_bytes:  # escaped names are ASCII: characters are bytes
        return escaped
    return HASHED + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def is_hashed(name: str) -> bool:
    return name.startswith(HASHED)


def with_key(key: str, data: bytes) -> bytes:
    """What a hashed name stores: the escaped key on the first line, then the value."""
    return escape(key).encode() + b"\n" + bytes(data)


def without_key(key: str, stored: bytes) -> bytes | None:
    """The value stored under a hashed name, or None if it belongs to another key."""
    header, _, data = stored.partition(b"\n")
    return data if header == escape(key).encode() else None


def key_in_header(first_line: bytes) -> str | None:
    """The key named by the first line of a hashed entry (newline included or not)."""
    return unescape(first_line.rstrip(b"\n").decode("ascii", "replace"))
