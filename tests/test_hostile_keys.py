"""A corpus of hostile keys against every stack: each round-trips exactly or is refused
with InvalidKeyError, and nothing lands outside the storage's folder or prefix."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import Any

import pytest

from pystorage import Storage
from pystorage.errors import InvalidKeyError
from tests.conformance.stacks import ALL_STACKS, Place, StackFactory

TRAVERSAL = [
    "..", ".", "...", "../", "../x", "../../etc/passwd", "..\\x", "..\\..\\windows",
    "/etc/passwd", "/", "//", "a/../b", "a/./b", "./a", "~", "~/x", "%2e%2e%2f", "%2E%2E/",
    "..%2f", "..%5c", "\\\\server\\share", "C:\\x", "C:", "file:///etc/passwd", "a/b/c",
    "a//b", "trailing/", "/leading", ".hidden", "..hidden", "a/..", "../" * 20,
]  # fmt: skip
CONTROL = ["\0", "a\0b", "\0\0\0", "\x7f", "\r\n", "\t", "\x1b[31mred"] + [
    f"x{chr(code)}y" for code in range(1, 32)
]
SIZES = ["", "a" * 10_000, "é" * 5_000, "ab" * 128, "x" * 255, "x" * 256, "x" * 1_000, "🎉" * 300]
UNICODE = [
    unicodedata.normalize(form, text)
    for text in ("é", "Å", "한", "ﬁ", "Ω")
    for form in ("NFC", "NFD", "NFKC")
] + ["\u212b", "\uff41", "\u202eevil", "zero\u200bwidth", "\u00a0", "\ud800", "a\udfffb"]
RESERVED = ["CON", "PRN", "AUX", "NUL", "COM1", "LPT1", "con.txt", "nul.", "aux.json", "CON:"]
CASES = ["Key", "key", "KEY", "kEy"]
PUNCTUATION = [
    " ", " lead", "trail ", "*", "?", "[", "]", "{}", "|", "<>", '"', "'", "`", "$HOME",
    "%", "%%", "%41", "%ZZ", "#", "&", ";", "key with spaces", "tab\there", "~a", "-", "--x",
]  # fmt: skip
CORPUS = list(dict.fromkeys(TRAVERSAL + CONTROL + SIZES + UNICODE + RESERVED + CASES + PUNCTUATION))


def test_the_corpus_is_large() -> None:
    assert len(CORPUS) >= 100


def _decoded(name: bytes) -> str:
    """A Redis name as text: a name that is not UTF-8 (the books of a limit, memoize's
    locks, under a storage's prefix) is never a key; its other bytes stay readable."""
    try:
        return name.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return name.decode("utf-8", "surrogateescape")


def _everything(storage: Storage, root: Path) -> tuple[set[str], str]:
    """Every name in the storage's whole world (the Redis database, the bucket, the test's
    folder), and the part of it that belongs to this storage."""
    backend: Any = storage.layers[-1]
    if hasattr(backend, "prefix"):  # Redis
        names = backend.client.scan_iter(count=1000)
        return {_decoded(name) for name in names}, backend.prefix
    if hasattr(backend, "bucket"):  # S3
        pages = backend.client.get_paginator("list_objects_v2").paginate(Bucket=backend.bucket)
        objects = {item["Key"] for page in pages for item in page.get("Contents", [])}
        return objects, backend.folder
    paths = {str(path.relative_to(root)) for path in root.rglob("*")}
    return paths, "store/"


@pytest.mark.parametrize("name", sorted(ALL_STACKS))
def test_hostile_keys_round_trip_or_are_refused(
    name: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    factory: StackFactory = ALL_STACKS[name]
    folder = tmp_path / "store"
    storage = factory(Place(folder, request))
    before, _ = _everything(storage, tmp_path)
    accepted = []
    for index, key in enumerate(CORPUS):
        try:
            storage[key] = {"i": index}
        except InvalidKeyError:
            continue
        accepted.append(key)
    assert len(accepted) >= len(CORPUS) - 5, "almost every key is storable"
    assert sorted(storage) == sorted(accepted)
    for key in accepted:
        assert key in storage
        assert storage[key] == {"i": CORPUS.index(key)}
    assert storage.get_many(accepted[:20]) == {
        key: {"i": CORPUS.index(key)} for key in accepted[:20]
    }
    after, inside = _everything(storage, tmp_path)
    assert [name for name in after - before if not name.startswith(inside)] == []
    if folder.exists():  # and in a folder, only regular files: no subfolder, no link
        assert all(entry.is_file(follow_symlinks=False) for entry in os.scandir(folder))
    storage.delete_many(accepted)
    assert len(storage) == 0
    storage.close()
