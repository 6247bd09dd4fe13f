"""The Files backend: one file per key in a folder."""

from __future__ import annotations

import os
import pickle
import stat
import tempfile
import threading
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pystorage import Storage, StorageProvider
from pystorage.errors import (
    BackendError,
    CodecError,
    ConfigurationError,
    InvalidKeyError,
    StorageProviderError,
)
from pystorage.layers import Codec, CountLimit, Files
from pystorage.layers.names import escape, unescape
from pystorage.storage_provider import json_files

SUFFIX = "storage.json"
ENDING = ".storage.json"

# Any code point, lone surrogates included (st.characters() never yields them).
ANY_CHAR = st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr))
ANY_TEXT = st.lists(ANY_CHAR, max_size=40).map("".join)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An empty storage folder (tmp_path also holds the conftest's system temp dir)."""
    path = tmp_path / "store"
    path.mkdir()
    return path


def _files_storage(folder: Path, suffix: str = SUFFIX) -> Storage:
    return Storage(Codec("json"), Files(folder, suffix))


def _names(folder: Path) -> list[str]:
    """The files in ``folder`` but the folder's format marker (also the expiry gate)."""
    return sorted(name for name in os.listdir(folder) if name != ".pystorage")


def _temp_files(folder: Path) -> list[str]:
    return [name for name in os.listdir(folder) if name.startswith(".tmp-")]


def _key_of_escaped_length(length: int, unit: str = "b") -> str:
    """A key whose escaped form is exactly ``length`` characters (units, then ASCII)."""
    unit_length = len(escape(unit))
    count = length // unit_length
    key = unit * count + "x" * (length - count * unit_length)
    assert len(escape(key)) == length
    return key


# -- the README contract -------------------------------------------------------------------


def test_readme_contract(folder: Path) -> None:
    storage = json_files(path=folder)
    storage["some_key"] = {"text": "Hello World!"}
    assert (folder / "some_key.storage.json").read_bytes() == b'{"text": "Hello World!"}'
    assert _names(folder) == ["some_key.storage.json"]
    assert storage["some_key"] == {"text": "Hello World!"}


def test_preset_and_explicit_stack_write_the_same_file(tmp_path: Path) -> None:
    json_files(path=tmp_path / "a")["k"] = [1, "two"]
    _files_storage(tmp_path / "b")["k"] = [1, "two"]
    assert (tmp_path / "a" / "k.storage.json").read_bytes() == b'[1, "two"]'
    assert (tmp_path / "b" / "k.storage.json").read_bytes() == b'[1, "two"]'


# -- hostile keys --------------------------------------------------------------------------


def _hostile_keys(ending: str) -> list[str]:
    room = 255 - len(ending)  # the longest escaped key stored under its own name
    nfc = unicodedata.normalize("NFC", "\u00e9")
    nfd = unicodedata.normalize("NFD", "\u00e9")
    assert nfc != nfd
    keys = [
        "",
        ".",
        "..",
        "...",
        "../x",
        "../../etc/passwd",
        "..\\x",
        "a/b",
        "/abs",
        "\\",
        "C:\\Windows",
        "\0",
        "a\0b",
        "\x01",
        "\x1b[31m",
        "\x7f",
        "\n",
        "a\r\nb",
        "\t",
        " ",
        " a ",
        "%",
        "%%",
        "%41",
        "A",
        "%2E",
        "%2e",
        "~a",
        "~",
        "~" + "0" * 64,
        ".hidden",
        ".tmp-999999999-0",
        "a.",
        "-",
        "--x",
        "_",
        "some_key.storage.json",
        "x" * 10_000,
        "y" * 9_999 + "1",
        "y" * 9_999 + "2",
        "\u20ac" * 3_000,
        "\U0001f600" * 1_000,
        _key_of_escaped_length(room),
        _key_of_escaped_length(room + 1),
        _key_of_escaped_length(room, "\u00e9"),
        _key_of_escaped_length(room + 1, "\u00e9"),
        _key_of_escaped_length(room, "\U0001f600"),
        "a" * 255,
        "a" * 256,
        nfc,
        nfd,
        "CON",
        "nul",
        "con.txt",
        "COM1",
        "\ud800",
        "\udfff",
        "a\udc80b",
        "\U0001f600",
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",
        "\u202eevil",
        "\ufeff",
        "key",
        "Key",
        "KEY",
    ]
    assert len(keys) == len(set(keys))
    return keys


@pytest.mark.parametrize("suffix", [SUFFIX, ""])
def test_hostile_keys_round_trip_or_are_refused(tmp_path: Path, suffix: str) -> None:
    base = tmp_path / "isolated"
    base.mkdir()
    folder = base / "store"
    storage = _files_storage(folder, suffix)
    keys = _hostile_keys("." + suffix if suffix else "")
    assert len(keys) >= 40
    stored: dict[str, Any] = {}
    for index, key in enumerate(keys):
        value = {"index": index, "length": len(key)}
        try:
            storage[key] = value
        except InvalidKeyError:
            assert key not in storage
            continue
        stored[key] = value

    for key, value in stored.items():
        assert key in storage, key
        assert storage[key] == value, key
    listed = list(storage)
    assert len(listed) == len(set(listed))
    assert set(listed) == set(stored)
    assert len(storage) == len(stored)

    # Nothing was created outside the folder, and nothing but regular files inside it.
    assert _names(base) == ["store"]
    for name in _names(folder):
        info = os.lstat(folder / name)
        assert stat.S_ISREG(info.st_mode), name
        assert not name.startswith("."), name
    assert len(_names(folder)) == len(stored)

    # A new storage on the same folder sees the same entries.
    reopened = _files_storage(folder, suffix)
    assert set(reopened) == set(stored)
    for key, value in stored.items():
        assert reopened[key] == value

    for key in stored:
        del storage[key]
        assert key not in storage
        with pytest.raises(KeyError):
            storage[key]
    assert list(storage) == []
    assert len(storage) == 0
    assert _names(folder) == []
    assert _names(base) == ["store"]


def test_keys_at_the_name_length_boundary(folder: Path) -> None:
    storage = _files_storage(folder)
    room = 255 - len(ENDING)
    for unit in ("a", "\u00e9", "\U0001f600"):
        at_limit = _key_of_escaped_length(room, unit)
        past_limit = _key_of_escaped_length(room + 1, unit)
        storage[at_limit] = "at"
        storage[past_limit] = "past"
        own_name = escape(at_limit) + ENDING
        assert len(own_name.encode()) == 255
        assert (folder / own_name).is_file()
        assert escape(past_limit) + ENDING not in _names(folder)
        assert storage[at_limit] == "at"
        assert storage[past_limit] == "past"
    hashed = [name for name in _names(folder) if name.startswith("~")]
    assert len(hashed) == 3
    for name in hashed:
        assert len(name.encode()) <= 255
        first_line = (folder / name).read_bytes().partition(b"\n")[0].decode()
        assert unescape(first_line) is not None
    assert len(storage) == 6


def test_long_keys_differing_in_last_char_are_distinct(folder: Path) -> None:
    storage = _files_storage(folder)
    first, second = "k" * 10_000 + "1", "k" * 10_000 + "2"
    storage[first] = 1
    storage[second] = 2
    assert storage[first] == 1
    assert storage[second] == 2
    del storage[first]
    assert first not in storage
    assert list(storage) == [second]


def test_nfc_and_nfd_are_distinct_keys(folder: Path) -> None:
    storage = _files_storage(folder)
    nfc, nfd = "caf\u00e9", "cafe\u0301"
    storage[nfc] = "composed"
    storage[nfd] = "decomposed"
    assert storage[nfc] == "composed"
    assert storage[nfd] == "decomposed"
    assert sorted(storage) == sorted([nfc, nfd])


@pytest.mark.parametrize("suffix", [SUFFIX, ""])
@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=ANY_TEXT | st.lists(ANY_CHAR, min_size=60, max_size=300).map("".join))
def test_arbitrary_keys_round_trip(tmp_path: Path, suffix: str, key: str) -> None:
    storage = _files_storage(tmp_path / "prop", suffix)
    storage[key] = {"k": len(key)}
    assert key in storage
    assert storage[key] == {"k": len(key)}
    assert list(storage) == [key]
    del storage[key]
    assert key not in storage
    assert _names(tmp_path / "prop") == []


# -- escaping ------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(ANY_TEXT)
def test_escape_property(key: str) -> None:
    stem = escape(key)
    for bad in ("/", "\\", "\0"):
        assert bad not in stem
    assert not stem.startswith(".")
    assert not stem.startswith("~")  # reserved for hashed names
    assert stem.isascii()
    assert stem not in ("", ".", "..")
    assert unescape(stem) == key


@pytest.mark.parametrize(
    "stem", ["%41", "%2e", "a%2fb", "%7e", ".hidden", "", "%C3", "%ZZ", "%", "%%", "a%"]
)
def test_unescape_rejects_non_canonical_stems(stem: str) -> None:
    assert unescape(stem) == ("" if stem == "%" else None)


def test_unescape_never_raises_on_undecodable_file_names() -> None:
    # os.listdir returns a name with byte 0xff as the lone surrogate "\udcff".
    assert unescape(os.fsdecode(b"\xff")) is None


# -- what counts as an entry ---------------------------------------------------------------


def test_len_and_iteration_count_only_this_suffix(folder: Path) -> None:
    ours = json_files(path=folder)
    theirs = _files_storage(folder, "other")
    ours["x"] = 1
    ours["y"] = 2
    theirs["x"] = 3
    theirs["z"] = 4
    for foreign in (
        "notes.txt",
        "x.storage.json.bak",
        "%41.storage.json",
        "%2e.storage.json",
        ".hidden.storage.json",
        ".storage.json",
        "a%2fb.storage.json",
    ):
        (folder / foreign).write_bytes(b'"foreign"')
    (folder / "sub.storage.json").mkdir()

    assert sorted(ours) == ["x", "y"]
    assert len(ours) == 2
    assert sorted(theirs) == ["x", "z"]
    assert len(theirs) == 2
    assert ours["x"] == 1
    assert theirs["x"] == 3
    assert "A" not in ours
    assert "sub" not in ours

    ours.clear()
    assert len(ours) == 0
    assert sorted(theirs) == ["x", "z"]
    assert (folder / "notes.txt").read_bytes() == b'"foreign"'
    assert (folder / "%41.storage.json").exists()
    assert (folder / "sub.storage.json").is_dir()


def test_foreign_tilde_file_is_not_an_entry(folder: Path) -> None:
    storage = json_files(path=folder)
    (folder / "~notes.storage.json").write_bytes(b"hello\nworld")
    with pytest.raises(KeyError):
        storage["hello"]
    assert "hello" not in list(storage)
    assert len(storage) == 0


def _hashed_file(folder: Path) -> Path:
    """The one file of ``folder`` stored under a hashed name."""
    (name,) = [name for name in _names(folder) if name.startswith("~")]
    return folder / name


def test_a_hashed_file_holding_another_key_s_entry_is_not_read_as_this_key(
    folder: Path,
) -> None:
    storage = _files_storage(folder)
    first, second = "k" * 300 + "1", "k" * 300 + "2"
    storage[second] = "second"
    second_file = _hashed_file(folder)
    del storage[second]
    storage[first] = "first"
    os.link(_hashed_file(folder), second_file)  # e.g. restored under the wrong name
    with pytest.raises(KeyError):
        storage[second]
    assert storage.get(second) is None
    assert list(storage) == [first]
    assert storage[first] == "first"


@pytest.mark.parametrize(
    "header",
    [b"\xff\xfe not ascii\n", b"%s\r\n", b"%s \n", b"%s\t\n"],
    ids=["not-ascii", "crlf", "space", "tab"],
)
def test_a_hashed_file_with_a_mangled_first_line_is_not_an_entry(
    folder: Path, header: bytes
) -> None:
    storage = _files_storage(folder)
    key = "k" * 300
    storage[key] = "v"
    file = _hashed_file(folder)
    escaped = file.read_bytes().partition(b"\n")[0]
    file.write_bytes(header.replace(b"%s", escaped) + b'"v"')
    assert list(storage) == []
    assert len(storage) == 0
    with pytest.raises(KeyError):
        storage[key]


def test_long_keys_ending_in_any_character_are_listed(folder: Path) -> None:
    storage = _files_storage(folder)
    keys = sorted("k" * 300 + end for end in ("X", "XX", "n", "%", "~", "\n", " ", "\u00e9"))
    for key in keys:
        storage[key] = key
    assert sorted(storage) == keys
    assert all(storage[key] == key for key in keys)


def test_undecodable_file_name_is_not_an_entry(folder: Path) -> None:
    storage = json_files(path=folder)
    storage["k"] = 1
    with open(os.path.join(os.fsencode(folder), b"\xff.storage.json"), "wb") as stream:
        stream.write(b"1")
    assert len(_names(folder)) == 2
    assert list(storage) == ["k"]
    assert len(storage) == 1


# -- atomic writes -------------------------------------------------------------------------


def test_unencodable_value_leaves_previous_value_and_no_extra_file(folder: Path) -> None:
    storage = json_files(path=folder)
    storage["k"] = {"v": 1}
    before = _names(folder)
    content = (folder / "k.storage.json").read_bytes()
    with pytest.raises(CodecError, match="'k'"):
        storage["k"] = {"v": object()}
    with pytest.raises(CodecError, match="'new'"):
        storage["new"] = {1, 2}
    assert storage["k"] == {"v": 1}
    assert (folder / "k.storage.json").read_bytes() == content
    assert _names(folder) == before
    assert "new" not in storage


def test_set_many_with_one_bad_value_writes_no_file(folder: Path) -> None:
    storage = json_files(path=folder)
    with pytest.raises(CodecError, match="'bad'"):
        storage.set_many({"a": 1, "bad": object(), "c": 3})
    assert _names(folder) == []


def test_no_temporary_files_remain_after_writes(folder: Path) -> None:
    storage = json_files(path=folder)
    for round_ in range(5):
        for key in ("a", "b", "x" * 400, ""):
            storage[key] = {"round": round_}
    storage.set_many({"m1": 1, "m2": 2})
    assert _temp_files(folder) == []
    assert len(_names(folder)) == 6
    assert storage["x" * 400] == {"round": 4}


def test_failed_replace_removes_the_temporary_file(folder: Path) -> None:
    storage = json_files(path=folder)
    (folder / "d.storage.json").mkdir()
    with pytest.raises(BackendError, match="'d'"):
        storage["d"] = 1
    assert _temp_files(folder) == []
    assert (folder / "d.storage.json").is_dir()


def test_corrupted_file_is_codec_error_naming_key(folder: Path) -> None:
    storage = json_files(path=folder)
    storage["k"] = {"text": "Hello World!"}
    storage["ok"] = 1
    for garbage in (b"\xff\xfe garbage", b'{"text": "Hel', b""):
        (folder / "k.storage.json").write_bytes(garbage)
        with pytest.raises(CodecError) as info:
            storage["k"]
        assert repr("k") in str(info.value)
        with pytest.raises(CodecError, match="'k'"):
            storage.get_many(["ok", "k"])
        assert "k" in storage
        assert storage["ok"] == 1


# -- things planted in the folder ----------------------------------------------------------


def test_symlink_to_outside_file_is_not_followed(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    storage = json_files(path=folder)
    target = tmp_path / "outside.txt"
    target.write_bytes(b'"secret"')
    link = folder / "k.storage.json"
    os.symlink(target, link)

    with pytest.raises(KeyError):
        storage["k"]
    assert "k" not in storage
    assert list(storage) == []
    assert len(storage) == 0
    assert storage.get_many(["k"]) == {}

    storage["k"] = {"mine": True}
    assert not link.is_symlink()
    assert stat.S_ISREG(os.lstat(link).st_mode)
    assert storage["k"] == {"mine": True}
    assert target.read_bytes() == b'"secret"'
    assert list(storage) == ["k"]


def test_symlink_deletion_and_clear_never_touch_the_target(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    storage = json_files(path=folder)
    target = tmp_path / "outside.txt"
    target.write_bytes(b'"secret"')
    os.symlink(target, folder / "k.storage.json")
    os.symlink(target, folder / "j.storage.json")
    storage.clear()
    try:
        del storage["k"]
    except KeyError:
        pass
    assert target.read_bytes() == b'"secret"'
    assert "k" not in storage


@pytest.mark.parametrize("kind", ["dangling", "to-folder"])
def test_other_symlinks_are_not_entries(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "store"
    storage = json_files(path=folder)
    target = tmp_path / "missing" if kind == "dangling" else tmp_path
    os.symlink(target, folder / "k.storage.json")
    with pytest.raises(KeyError):
        storage["k"]
    assert "k" not in storage
    assert list(storage) == []


def test_directory_at_a_key_name_is_not_an_entry(folder: Path) -> None:
    storage = json_files(path=folder)
    (folder / "d.storage.json").mkdir()
    with pytest.raises(KeyError):
        storage["d"]
    assert "d" not in storage
    assert list(storage) == []
    with pytest.raises(KeyError):
        del storage["d"]
    assert (folder / "d.storage.json").is_dir()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_fifo_at_a_key_name_does_not_block(folder: Path) -> None:
    storage = json_files(path=folder)
    os.mkfifo(folder / "f.storage.json")
    with pytest.raises(KeyError):
        storage["f"]
    assert "f" not in storage
    assert list(storage) == []


# -- the marker and the lock file: never waited on, never followed (issue 22, item 4) ------

#: The files Files opens besides entries: the format marker (the gate of writes) and the
#: lock file of exclusive sections (limits).
LOCK_FILES = [".pystorage", f".lock.{SUFFIX}"]
PLANTS = ["fifo", "symlink", "folder"]
KINDS = {"fifo": "a FIFO", "symlink": "a symbolic link", "folder": "a folder"}


def _plant(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink":
        target = path.parent.parent / "elsewhere"
        target.write_bytes(b"")
        os.symlink(target, path)
    else:
        path.mkdir()


def _refused_in_time(path: Path, work: Callable[[], object], seconds: float = 10) -> str:
    """The message of the BackendError ``work`` raises, run in a thread so that a hang
    fails this test instead of the suite; a FIFO still waited on is then opened for writing
    to free the thread."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            work()
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
        thread.join(5)
        pytest.fail(f"still waiting on {path} after {seconds} s")
    (error,) = outcome
    assert isinstance(error, BackendError), repr(error)
    return str(error)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("kind", PLANTS)
@pytest.mark.parametrize("name", LOCK_FILES)
def test_a_planted_marker_or_lock_file_is_refused_at_open(
    folder: Path, name: str, kind: str
) -> None:
    _plant(folder / name, kind)
    message = _refused_in_time(folder / name, lambda: Files(folder, SUFFIX))
    assert f"{folder / name} is {KINDS[kind]}" in message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
@pytest.mark.parametrize("kind", PLANTS)
@pytest.mark.parametrize("name", LOCK_FILES)
def test_a_marker_or_lock_file_planted_later_is_refused_quickly(
    folder: Path, name: str, kind: str
) -> None:
    files = Files(folder, SUFFIX)
    storage = Storage(CountLimit(10), Codec("json"), files)
    storage["before"] = 1
    files.close()  # the lock file's descriptor: the next exclusive section opens it again
    (folder / name).unlink()
    _plant(folder / name, kind)
    writes: list[Callable[[], object]] = [
        lambda: storage.__setitem__("k", 1),
        lambda: storage.set_many({"k": 1}),
        lambda: storage.incr("n"),
    ]
    for write in writes:
        message = _refused_in_time(folder / name, write)
        assert f"{folder / name} is {KINDS[kind]}" in message
    assert "k" not in storage


# -- temporary files of dead writers -------------------------------------------------------


@pytest.mark.parametrize("suffix", [SUFFIX, ""])
def test_dead_temp_files_are_removed_live_ones_kept(folder: Path, suffix: str) -> None:
    dead = folder / ".tmp-999999999-0"
    ours = folder / f".tmp-{os.getpid()}-5"
    dead.write_bytes(b"half a value")
    ours.write_bytes(b"being written")
    (folder / ".tmp-999999999-1").mkdir()  # not a file: left alone, no error
    storage = _files_storage(folder, suffix)
    assert not dead.exists()
    assert ours.read_bytes() == b"being written"
    assert (folder / ".tmp-999999999-1").is_dir()
    assert list(storage) == []
    assert len(storage) == 0
    storage["k"] = 1
    assert list(storage) == ["k"]


@pytest.mark.parametrize("name", [".tmp-99999999999999999999-0", ".tmp-\u00b2-0"])
def test_odd_temp_file_names_do_not_break_opening(folder: Path, name: str) -> None:
    (folder / name).write_bytes(b"x")
    storage = json_files(path=folder)
    assert list(storage) == []


# -- keys that are not str -----------------------------------------------------------------


@pytest.mark.parametrize("key", [1, b"k", None, 1.5, ("a",)])
def test_non_str_keys_are_invalid(folder: Path, key: Any) -> None:
    storage = json_files(path=folder)
    files = storage.layers[-1]
    with pytest.raises(InvalidKeyError):
        storage[key] = "v"
    with pytest.raises(InvalidKeyError):
        storage.set(key, "v")
    with pytest.raises(InvalidKeyError):
        storage.set_many({"fine": 1, key: "v"})
    with pytest.raises(InvalidKeyError):
        storage[key]
    with pytest.raises(InvalidKeyError):
        files.get(key)
    with pytest.raises(InvalidKeyError):
        files.set(key, b'"v"')
    with pytest.raises(InvalidKeyError):
        files.contains(key)
    with pytest.raises(InvalidKeyError):
        files.delete(key)
    assert key not in storage
    assert _names(folder) == []


def test_str_subclass_keys_are_invalid(folder: Path) -> None:
    class Name(str):
        pass

    storage = json_files(path=folder)
    with pytest.raises(InvalidKeyError):
        storage[Name("k")] = 1
    with pytest.raises(InvalidKeyError):
        storage.layers[-1].get(Name("k"))


# -- permissions, the folder, the suffix ---------------------------------------------------


def test_files_are_private(folder: Path) -> None:
    storage = json_files(path=folder)
    storage["k"] = 1
    storage["k"] = 2  # replaced files too
    storage["x" * 500] = 3  # hashed names too
    names = _names(folder)
    assert len(names) == 2
    for name in names:
        assert stat.S_IMODE(os.stat(folder / name).st_mode) == 0o600, name


def test_created_folder_is_private(tmp_path: Path) -> None:
    folder = tmp_path / "new"
    Files(folder, SUFFIX)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700


def test_existing_folder_permissions_are_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o750)
    Files(folder, SUFFIX)
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o750


def test_missing_nested_folder_is_created(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b" / "c"
    storage = json_files(path=folder)
    assert folder.is_dir()
    assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    storage["k"] = [1]
    assert json_files(path=folder)["k"] == [1]
    assert _names(folder) == ["k.storage.json"]


def test_path_that_is_a_regular_file_is_a_configuration_error(tmp_path: Path) -> None:
    file = tmp_path / "plain"
    file.write_bytes(b"keep me")
    with pytest.raises(ConfigurationError, match="is not a folder") as info:
        Files(file, SUFFIX)
    assert str(file) in str(info.value)
    with pytest.raises(BackendError):
        Files(file / "below", SUFFIX)
    assert file.read_bytes() == b"keep me"


@pytest.mark.parametrize("suffix", ["a/b", "\\", "x\0"])
def test_suffix_with_separator_is_a_configuration_error(tmp_path: Path, suffix: str) -> None:
    with pytest.raises(ConfigurationError):
        Files(tmp_path / "s", suffix)
    assert not (tmp_path / "s").exists()


def test_empty_suffix(folder: Path) -> None:
    storage = _files_storage(folder, "")
    keys = ["plain", "", "a.b", "with space", "..", "x" * 300, "\u00e9"]
    for index, key in enumerate(keys):
        storage[key] = index
    for index, key in enumerate(keys):
        assert storage[key] == index
        assert key in storage
    assert sorted(storage) == sorted(keys)
    assert (folder / "plain").read_bytes() == b"0"
    assert (folder / "%").read_bytes() == b"1"
    assert (folder / "a.b").read_bytes() == b"2"
    assert (folder / "%2E.").read_bytes() == b"4"
    for key in keys:
        del storage[key]
    assert _names(folder) == []


def test_non_ascii_suffix_at_the_name_length_boundary(folder: Path) -> None:
    suffix = "donn\u00e9es"  # 8 characters, 9 bytes with its dot
    storage = _files_storage(folder, suffix)
    key = "k" * (255 - len("." + suffix))  # 255 characters, 256 bytes with the suffix
    storage[key] = 1
    assert storage[key] == 1
    assert list(storage) == [key]


def test_too_long_suffix_is_refused_or_works(folder: Path) -> None:
    try:
        storage = _files_storage(folder, "x" * 250)
    except ConfigurationError:
        return
    for key in ("k", "k" * 10, "k" * 1000):
        try:
            storage[key] = 1
        except InvalidKeyError:
            continue
        assert storage[key] == 1


@pytest.mark.parametrize("suffix", [".json", "json", "..json"])
def test_suffix_leading_dots_are_normalised(folder: Path, suffix: str) -> None:
    storage = _files_storage(folder, suffix)
    storage["k"] = 1
    assert _names(folder) == ["k.json"]
    assert list(storage) == ["k"]


# -- files another user could have planted, and files too large to read (issue 10) --------


class _RunsCode:
    """Unpickling it makes a folder: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def test_a_file_of_another_user_is_refused_before_it_is_decoded(tmp_path: Path) -> None:
    folder, marker = tmp_path / "store", tmp_path / "code-ran"
    storage = Storage(Codec("pickle"), Files(folder, "pkl"))
    storage["mine"] = 1
    planted = folder / "k.pkl"
    planted.write_bytes(pickle.dumps(_RunsCode(marker)))
    os.chown(planted, 65534, 65534)  # as if user nobody had put it there
    with pytest.raises(BackendError, match="belongs to user 65534"):
        storage["k"]
    assert not marker.exists()
    assert sorted(storage) == ["k", "mine"]  # listed: listing decodes nothing
    trusting = Storage(Codec("pickle"), Files(folder, "pkl", trust_others=True))
    trusting.get("k")
    assert marker.exists()  # asked for: it runs


def test_a_file_larger_than_max_value_bytes_is_refused_from_its_size(tmp_path: Path) -> None:
    storage = Storage(Codec("raw"), Files(tmp_path / "store"))
    storage["small"] = b"x"
    with open(tmp_path / "store" / "huge", "wb") as sparse:
        sparse.truncate(20 << 30)  # 20 GiB that take no space: reading it would
    with pytest.raises(BackendError, match="max_value_bytes"):
        storage["huge"]
    bounded = Storage(Codec("raw"), Files(tmp_path / "store", max_value_bytes=10))
    with pytest.raises(BackendError, match="max_value_bytes"):
        bounded["big"] = b"x" * 11
    assert "big" not in bounded and bounded["small"] == b"x"


def test_pickle_presets_default_to_a_folder_only_this_user_enters(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    provider = StorageProvider()
    pickles = provider.create(StorageProvider.STORAGE_PICKLE)
    pickles["k"] = 1
    private = tmp_path / f"pystorage-{os.getuid()}"
    assert (private / "k.storage.pkl").exists()
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    provider.create(StorageProvider.STORAGE_JSON)["j"] = 1
    assert (tmp_path / "j.storage.json").exists()  # JSON keeps the seed's temp folder
    private.chmod(0o777)
    with pytest.raises(StorageProviderError, match="0700"):
        provider.create(StorageProvider.STORAGE_DISKLRU)
