"""Behaviour of the Files backend that `make mutation MODULE=files` showed no test pinned
(issue 24): the sweep of expired files and its counter, the bounds of a file's size at
the byte, errors that name the key and the action, durable writes, a system without
flock, and the temporary files of writers still alive."""

from __future__ import annotations

import errno
import fcntl
import os
import resource
import shutil
import signal
import stat
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pystorage import Storage, _fork
from pystorage.errors import BackendError, ConfigurationError, InvalidKeyError, UnsupportedError
from pystorage.layers import Codec, Files
from pystorage.layers import files as files_module
from pystorage.layers.names import HASHED_LENGTH, escape
from tests.helpers import CHILD_DEADLINE, FakeClock, in_child, other_user, shared_folder
from tests.test_fork import _within_deadline, held_by_another_thread

FRAME = 13  # the header of a file with a deadline: magic and deadline


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "store"


def _raw(folder: Path, **options: object) -> tuple[Storage, Files, FakeClock]:
    clock = FakeClock()
    files = Files(folder, "bin", clock=clock, **options)  # type: ignore[arg-type]
    return Storage(Codec("raw"), files), files, clock


# -- expire() and the expirations counter --------------------------------------------------


def test_expire_removes_the_expired_files_only_and_counts_them(folder: Path) -> None:
    storage, files, clock = _raw(folder)
    storage.set("old", b"1", ttl=10)
    storage.set("older", b"2", ttl=5)
    storage.set("late", b"3", ttl=100)
    storage["forever"] = b"4"
    assert files.counters() == {}  # named once there is something to count
    clock.now += 10  # "old" is at its deadline exactly: expired
    assert storage.expire() == 2
    assert sorted(os.listdir(folder)) == [".pystorage", "forever.bin", "late.bin"]
    assert sorted(storage) == ["forever", "late"]
    assert files.counters() == {"expirations": 2}
    assert storage.expire() == 0  # nothing left to remove
    clock.now += 90
    assert storage.get("late") is None  # a read removes it too, and counts it
    assert files.counters() == {"expirations": 3}
    assert sorted(os.listdir(folder)) == [".pystorage", "forever.bin"]


def test_an_expired_file_is_missing_to_every_read_and_removed_by_them(folder: Path) -> None:
    storage, files, clock = _raw(folder)
    for key in ("a", "b", "c"):
        storage.set(key, b"v", ttl=1)
    clock.now += 1
    with pytest.raises(KeyError) as missing:
        storage["a"]
    assert missing.value.args == ("a",)
    with pytest.raises(KeyError):
        storage.get_with_ttl("b")
    with pytest.raises(KeyError):
        del storage["c"]
    assert files.counters() == {"expirations": 3}
    assert sorted(os.listdir(folder)) == [".pystorage"]


# -- the size of a file, at the byte -------------------------------------------------------


@pytest.mark.parametrize("key", ["k", "k" * 300], ids=["plain-name", "hashed-name"])
def test_a_file_one_byte_larger_than_any_this_bound_writes_is_refused(
    folder: Path, key: str
) -> None:
    storage, _, _ = _raw(folder, max_value_bytes=400)
    storage.set(key, b"x" * 400, ttl=60)  # the largest file this bound writes
    assert storage[key] == b"x" * 400
    (file,) = [name for name in os.listdir(folder) if name.endswith(".bin")]
    largest = os.path.getsize(folder / file)
    beside = FRAME + (len(escape(key)) + 1 if len(key) > 255 else 0)
    assert largest == 400 + beside
    with open(folder / file, "ab") as grown:
        grown.write(b"y")
    with pytest.raises(BackendError) as refused:
        storage[key]
    assert str(refused.value) == (
        f"the file of key {key!r} in {folder} holds {largest + 1} bytes, more than "
        "max_value_bytes=400: refusing to read it"
    )


def test_the_refusal_of_another_users_file_says_how_to_read_it(folder: Path) -> None:
    storage, _, _ = _raw(folder)
    storage["k"] = b"mine"
    os.chown(folder / "k.bin", 65534, 65534)  # as if user nobody had put it there
    with pytest.raises(BackendError) as refused:
        storage["k"]
    assert str(refused.value) == (
        f"the file of key 'k' in {folder} belongs to user 65534, not to this one: refusing "
        "to read a value another user could have planted (Files(..., trust_others=True) "
        "reads them)"
    )
    trusting = Storage(Codec("raw"), Files(folder, "bin", trust_others=True))
    assert trusting["k"] == b"mine"


# -- errors name the key and the action ----------------------------------------------------


@pytest.fixture
def looping(folder: Path, tmp_path: Path) -> Iterator[tuple[Storage, Path]]:
    """A storage whose folder became, after it was opened, a symbolic link to itself:
    every path through it fails with ELOOP, an error that is no missing key."""
    storage, _, _ = _raw(folder)
    storage["k"] = b"v"
    os.rename(folder, tmp_path / "moved")
    os.symlink(folder, folder)
    yield storage, folder
    os.unlink(folder)


@pytest.mark.parametrize(
    ("action", "operation"),
    [
        ("write", lambda storage: storage.set("k", b"new")),
        ("delete", lambda storage: storage.delete_many(["k"])),
        ("check", lambda storage: "k" in storage),
        ("touch", lambda storage: storage.top.touch("k")),
    ],
)
def test_an_error_names_the_key_the_action_and_the_folder(
    looping: tuple[Storage, Path], action: str, operation: object
) -> None:
    storage, folder = looping
    with pytest.raises(BackendError) as failed:
        operation(storage)  # type: ignore[operator]
    assert str(failed.value).startswith(f"cannot {action} key 'k' in {folder}: [Errno 40] ")


def test_a_read_that_fails_names_the_key_and_the_action(folder: Path) -> None:
    storage, _, _ = _raw(folder)
    storage["k"] = b"v"
    # EMFILE: no descriptor left to open the file with (an error, not a missing key).
    failed = _with_descriptors_left(0, lambda: storage.get("k"))
    assert isinstance(failed, BackendError)
    assert str(failed).startswith(f"cannot read key 'k' in {folder}: [Errno 24] ")
    assert storage["k"] == b"v"


def _with_descriptors_left(left: int, work: Callable[[], object]) -> object:
    """``work()``, or the ``BackendError`` it raised, with only ``left`` descriptors free
    in this process (as tests/test_hostile_deadlines.py does, in this process)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held = len(os.listdir("/dev/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(held + 64, soft), hard))
    taken = []
    try:
        try:
            while True:
                taken.append(os.open(os.devnull, os.O_RDONLY))
        except OSError:
            pass
        for _ in range(left):
            os.close(taken.pop())
        try:
            return work()
        except BackendError as exc:
            return exc
    finally:
        for fd in taken:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- fsync=True ----------------------------------------------------------------------------


def test_durable_writes_store_and_read_back_as_any_other(folder: Path) -> None:
    storage = Storage(Codec("json"), Files(folder, fsync=True))
    storage["k"] = "v"
    storage.set("t", [1], ttl=60)
    assert storage.add("new", 2) and not storage.add("new", 3)
    assert storage.incr("n", 5) == 5
    del storage["k"]
    assert dict(storage) == {"t": [1], "new": 2, "n": 5}


# -- a system without flock ----------------------------------------------------------------


def test_without_flock_add_and_incr_are_refused_naming_the_operation(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, _, _ = _raw(folder)
    monkeypatch.setattr(files_module, "fcntl", None)  # as on Windows
    with pytest.raises(UnsupportedError) as refused:
        storage.add("k", b"v")
    assert str(refused.value) == (
        "Files has no atomic add on this system: it needs flock, which this system lacks"
    )
    with pytest.raises(UnsupportedError, match=r"^Files has no atomic modify \(incr, decr\) "):
        storage.incr("n")
    with pytest.raises(UnsupportedError, match=r"^Files has no native expiry "):
        storage.set("t", b"v", ttl=5)  # no gate to expire files under
    storage["k"] = b"plain writes still work"
    assert storage["k"] == b"plain writes still work"
    assert "n" not in storage and "t" not in storage


# -- temporary files of writers still alive ------------------------------------------------


def test_the_temporary_file_of_another_live_writer_is_kept_and_the_writer_untouched(
    folder: Path,
) -> None:
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # Stopped, the writer keeps any signal sent to it pending, where /proc shows it.
        os.kill(writer.pid, signal.SIGSTOP)
        os.waitpid(writer.pid, os.WUNTRACED)
        folder.mkdir()
        temp = folder / f".tmp-{writer.pid}-0"
        temp.write_bytes(b"being written")
        Files(folder)
        assert temp.read_bytes() == b"being written"
        assert _pending_signals(writer.pid) == 0  # asked whether it lives, not signalled
    finally:
        writer.kill()
        writer.wait()
    Files(folder)  # now dead: its file goes
    assert not temp.exists()


def _pending_signals(pid: int) -> int:
    """The signals sent to process ``pid`` (or its thread group) not yet delivered."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    masks = [line.split()[1] for line in status if line.startswith(("SigPnd:", "ShdPnd:"))]
    return sum(int(mask, 16) for mask in masks)


def test_a_temporary_file_of_another_users_live_process_is_kept(tmp_path: Path) -> None:
    # Asked whether a process of another user lives, the system answers EPERM: alive.
    # This process asks too whether a writer lives (its own): mutmut maps the test to it.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / f".tmp-{os.getpid()}-0").write_bytes(b"")
    Files(tmp_path / "mine")
    with shared_folder() as shared:
        folder = shared / "store"
        folder.mkdir(mode=0o777)
        folder.chmod(0o777)  # the other user may remove files here: only "alive" stops it
        Files(folder)
        temp = folder / f".tmp-{os.getpid()}-0"  # this process's, alive, and root's
        temp.write_bytes(b"being written")

        def open_as_the_other_user() -> None:
            Files(folder)

        assert in_child(open_as_the_other_user, user=other_user()) is None
        assert temp.read_bytes() == b"being written"


# -- the version token ---------------------------------------------------------------------


def test_the_version_is_one_token_for_every_opener_and_changes_with_each_write(
    folder: Path,
) -> None:
    storage, files, _ = _raw(folder)
    other = Files(folder, "bin")  # another opener of the folder: another process, say
    first = files.version()
    assert len(first) == 8 and other.version() == first
    assert files.version() == first  # reading it changes nothing
    seen = {first}
    for write in (
        lambda: storage.set("k", b"v"),
        lambda: other.set("j", b"w"),
        lambda: storage.set("t", b"x", ttl=60),
        lambda: other.delete("k"),
        lambda: storage.add("a", b"1"),
    ):
        write()
        token = files.version()
        assert token not in seen and other.version() == token
        seen.add(token)


def test_a_version_that_cannot_be_read_is_an_error_naming_the_folder(folder: Path) -> None:
    Files(folder, "bin").version()  # (this process reads one too: mutmut maps the test)
    fresh = folder.parent / "fresh"
    opened = Files(fresh)  # no lock file yet: the first version() makes it
    # No byte can be written: the lock file cannot grow to hold a token (EFBIG).
    outcome = in_child(opened.version, max_file_size=0)
    assert isinstance(outcome, BackendError)
    assert str(outcome).startswith(f"cannot read the version of {fresh}: ")


# -- modify at the deadline and after fork() -----------------------------------------------


def test_an_incr_at_the_exact_deadline_starts_again_from_zero(folder: Path) -> None:
    storage = Storage(Codec("json"), Files(folder, clock=(clock := FakeClock())))
    storage.incr("n", 5, ttl=10)
    clock.now += 9.5
    assert storage.incr("n") == 6  # still alive: its deadline stays
    clock.now += 0.5
    assert storage.incr("n", ttl=20) == 1  # at the deadline: expired, a new entry
    value, left = storage.get_with_ttl("n")
    assert (value, left) == (1, 20)


def test_an_add_at_the_exact_deadline_replaces_the_expired_entry(folder: Path) -> None:
    # The fake-clock twin of tests/test_atomic.py's add over an expired entry, which waits
    # a second of real time (left out of `make mutation MODULE=files`).
    storage = Storage(Codec("json"), Files(folder, clock=(clock := FakeClock())))
    storage.set("k", "old", ttl=10)
    clock.now += 9.5
    assert storage.add("k", "new", ttl=100) is False  # alive: kept, with its deadline
    assert storage.get_with_ttl("k") == ("old", 0.5)
    clock.now += 0.5
    assert storage.add("k", "new") is True  # at its deadline: expired, replaced
    assert storage.get_with_ttl("k") == ("new", None)  # no deadline given: none
    assert storage.add("t", "dated", ttl=100) is True
    assert storage.get_with_ttl("t") == ("dated", 100)


def test_a_folder_lists_no_tag_record(tmp_path: Path) -> None:
    # The Files part of tests/test_tags.py's check over every backend (left out of `make
    # mutation MODULE=files`: it starts Redis and S3 servers).
    import pystorage

    with pystorage.open(f"file://{tmp_path}/files?tags=1") as storage:
        storage.set("k", 1, tags=["t" * 300, "\u00fc/../x", ""])
        storage.invalidate_tag("t" * 300)
        assert list(storage) == [] and len(storage) == 0
        assert list(storage.layers[-1].keys()) == ["k"]  # without Tags: the entry alone
        assert storage.layers[-1].count() == 1


def test_what_a_child_runs_first_frees_the_count_lock_held_in_the_parent(folder: Path) -> None:
    # As tests/test_fork.py does for the other layers: the renewal a forked child runs,
    # run in this process, where mutmut sees it.
    storage, files, clock = _raw(folder)
    storage.set("k", b"v", ttl=1)
    clock.now += 1
    with held_by_another_thread(files._count_lock):
        _fork._renewals[files](files)
        outcome = _within_deadline(lambda: (storage.expire(), files.counters()))
    assert outcome == (1, {"expirations": 1})


# -- reads at the edges: seconds left, a header missing, a hashed name's key line ----------


def test_get_with_ttl_returns_the_last_fraction_of_a_second_and_then_the_key_is_missing(
    folder: Path,
) -> None:
    storage, _, clock = _raw(folder)
    storage.set("k", b"v", ttl=10)
    clock.now += 9.75
    assert storage.get_with_ttl("k") == (b"v", 0.25)
    clock.now += 0.25
    with pytest.raises(KeyError) as missing:
        storage.get_with_ttl("k")
    assert missing.value.args == ("k",)


def test_a_file_marked_as_framed_without_our_header_is_refused_as_not_ours(folder: Path) -> None:
    storage, _, _ = _raw(folder)
    for planted in (b"short", b"a value long enough for a header"):
        storage["k"] = planted
        os.chmod(folder / "k.bin", 0o700)  # the owner-execute bit: "framed", by its mark
        with pytest.raises(BackendError) as refused:
            storage["k"]
        assert str(refused.value) == (
            f"the file of key 'k' in {folder} is marked as holding a deadline "
            "(owner-execute bit) but has no pystorage header: not a value of ours"
        )
        assert "k" not in storage  # no deadline of ours: long past


def test_a_key_longer_than_the_bound_a_folder_is_opened_with_is_not_listed(
    folder: Path,
) -> None:
    key = "k" * 300  # a hashed name: listing reads the key from the file's first line
    Storage(Codec("raw"), Files(folder, "bin", max_value_bytes=1000))[key] = b"v"
    bounded = Storage(Codec("raw"), Files(folder, "bin", max_value_bytes=200))
    # It reads at most 200 bytes of that line: no key it could have written.
    assert list(bounded) == [] and len(bounded) == 0
    assert list(Storage(Codec("raw"), Files(folder, "bin", max_value_bytes=300))) == [key]


def test_a_hashed_name_that_became_a_link_is_never_followed_for_its_key(
    folder: Path, tmp_path: Path
) -> None:
    storage, files, _ = _raw(folder)
    key = "k" * 300
    storage[key] = b"v"
    (name,) = [entry for entry in os.listdir(folder) if entry.endswith(".bin")]
    outside = tmp_path / "outside"
    os.rename(folder / name, outside)
    os.symlink(outside, folder / name)
    # Listing checks that a name is a file before it reads its key line; a link put in
    # its place between the two is not followed either (the read done after the check):
    assert files._long_key(str(folder / name)) is None
    assert list(storage) == []


def test_a_listing_with_no_descriptor_for_a_key_line_fails_rather_than_leaves_it_out(
    folder: Path,
) -> None:
    storage, _, _ = _raw(folder)
    storage["k" * 300] = b"v"
    (name,) = [entry for entry in os.listdir(folder) if entry.endswith(".bin")]
    failed = _with_descriptors_left(1, lambda: len(storage))  # the listing takes the one
    assert isinstance(failed, BackendError)
    assert str(failed).startswith(f"cannot read the key of {folder / name}: [Errno 24] ")
    assert len(storage) == 1


# -- touch ---------------------------------------------------------------------------------


def test_a_touched_key_is_the_newest_even_within_one_tick_of_the_kernel_clock(
    folder: Path,
) -> None:
    storage, files, _ = _raw(folder)
    storage["a"] = b"1"
    storage["b"] = b"2"  # file times come from the kernel's clock tick: often a's as well
    files.touch("a")
    assert files.keys_by_age() == ["b", "a"]


def test_touch_never_changes_the_target_of_a_link_at_a_key_name(
    folder: Path, tmp_path: Path
) -> None:
    _, files, _ = _raw(folder)
    outside = tmp_path / "outside"
    outside.write_bytes(b"not ours")
    os.utime(outside, ns=(0, 0))
    os.symlink(outside, folder / "k.bin")
    files.touch("k")
    assert outside.stat().st_mtime_ns == 0
    files.touch("missing")  # a missing key: nothing to touch, no error


# -- a read that comes back in pieces ------------------------------------------------------


def test_a_value_read_in_pieces_comes_back_whole() -> None:
    # Linux returns at most about 2 GiB per read(): a larger value comes in pieces. A pipe
    # gives the same short reads with a few bytes: the second half is written only once
    # the first read has taken the first.
    reader, writer = os.pipe()

    def second_half_once_the_pipe_is_empty() -> None:
        give_up = time.monotonic() + CHILD_DEADLINE
        while _unread(reader) and time.monotonic() < give_up:
            time.sleep(0.001)
        os.write(writer, b"world")
        os.close(writer)

    os.write(writer, b"hello")
    thread = threading.Thread(target=second_half_once_the_pipe_is_empty)
    thread.start()
    try:
        assert files_module._read_all(reader, 10) == b"helloworld"
    finally:
        thread.join()
        os.close(reader)


def test_a_value_read_in_pieces_stops_at_its_size() -> None:
    # Bytes past the size checked (a file another program appends to in place) are never
    # read: the value is the size's worth, however many pieces it comes in.
    reader, writer = os.pipe()

    def the_rest_once_the_pipe_is_empty() -> None:
        give_up = time.monotonic() + CHILD_DEADLINE
        while _unread(reader) and time.monotonic() < give_up:
            time.sleep(0.001)
        os.write(writer, b"worldEXTRA")
        os.close(writer)

    os.write(writer, b"hello")
    thread = threading.Thread(target=the_rest_once_the_pipe_is_empty)
    thread.start()
    try:
        assert files_module._read_all(reader, 10) == b"helloworld"
    finally:
        thread.join()
        os.close(reader)


def _unread(fd: int) -> int:
    """How many bytes wait in the pipe ``fd``."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


# -- the options refused at construction ---------------------------------------------------


def test_options_that_cannot_work_are_refused_with_what_is_wrong(tmp_path: Path) -> None:
    refusals: list[tuple[Callable[[], object], str]] = [
        (lambda: Files(tmp_path, "a/b"), "suffix 'a/b' must not contain a separator"),
        (lambda: Files(tmp_path, "x" * 300), f"suffix {'x' * 300!r} is too long for a file name"),
        (lambda: Files(tmp_path, max_value_bytes=1.5), "max_value_bytes must be an int"),  # type: ignore[arg-type]
        (lambda: Files(tmp_path, max_value_bytes=True), "max_value_bytes must be an int"),
        (lambda: Files(tmp_path, max_value_bytes=0), "max_value_bytes must be positive"),
    ]
    for make, message in refusals:
        with pytest.raises(ConfigurationError) as refused:
            make()
        assert str(refused.value) == message
    plain = tmp_path / "elsewhere" / "plain"
    plain.parent.mkdir()
    plain.write_bytes(b"")
    with pytest.raises(ConfigurationError) as refused:
        Files(plain)
    assert str(refused.value) == f"{plain} is not a folder"
    assert Files(tmp_path / "ok", max_value_bytes=1).max_value_bytes == 1  # the least that works


@pytest.mark.parametrize(
    ("suffix", "name"),
    [("", "k"), (".", "k"), ("..", "k"), ("json", "k.json"), ("..json", "k.json"),
     ("X", "k.X"), ("Xml", "k.Xml"), (" ", "k. ")],
)  # fmt: skip
def test_a_suffix_is_kept_as_given_but_for_its_leading_dots(
    tmp_path: Path, suffix: str, name: str
) -> None:
    storage = Storage(Codec("raw"), Files(tmp_path / "store", suffix))
    storage["k"] = b"v"
    assert sorted(os.listdir(tmp_path / "store")) == [".pystorage", name]
    assert list(storage) == ["k"]


def test_the_longest_suffix_that_leaves_room_for_a_hashed_name_works(tmp_path: Path) -> None:
    longest = "x" * (255 - HASHED_LENGTH - 1)  # with its dot: a hashed name of 255 bytes
    storage = Storage(Codec("raw"), Files(tmp_path / "store", longest))
    storage["k" * 300] = b"v"
    assert storage["k" * 300] == b"v" and list(storage) == ["k" * 300]
    with pytest.raises(ConfigurationError, match="is too long for a file name"):
        Files(tmp_path / "store", longest + "x")


def test_a_folder_that_cannot_be_made_is_an_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / "plain").write_bytes(b"")
    with pytest.raises(BackendError) as failed:
        Files(tmp_path / "plain" / "store")
    assert str(failed.value).startswith(
        f"cannot open the folder {tmp_path / 'plain' / 'store'}: [Errno 20] "
    )


def test_where_owners_cannot_be_known_files_of_any_owner_are_read(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, _, _ = _raw(folder)
    storage["k"] = b"planted?"
    os.chown(folder / "k.bin", 65534, 65534)
    monkeypatch.delattr(os, "geteuid")  # as on Windows: no user to compare with
    assert Storage(Codec("raw"), Files(folder, "bin"))["k"] == b"planted?"


def test_a_link_at_a_key_name_is_neither_listed_nor_counted(folder: Path, tmp_path: Path) -> None:
    storage, _, _ = _raw(folder)
    outside = tmp_path / "outside"
    outside.write_bytes(b"not ours")
    os.symlink(outside, folder / "k.bin")
    assert list(storage) == [] and len(storage) == 0 and "k" not in storage


def test_a_read_with_a_key_that_is_not_a_str_names_the_key(folder: Path) -> None:
    storage, _, _ = _raw(folder)
    with pytest.raises(InvalidKeyError) as refused:
        storage[b"k"]  # type: ignore[index]
    assert str(refused.value) == "keys are str, not bytes: b'k'"


def test_a_missing_key_is_a_key_error_naming_it_whatever_holds_its_name(folder: Path) -> None:
    storage, _, _ = _raw(folder)
    (folder / "dir.bin").mkdir()  # a folder at a key's name: no entry
    for key in ("missing", "dir"):
        with pytest.raises(KeyError) as missing:
            storage[key]
        assert missing.value.args == (key,)


def test_an_io_error_reading_a_value_names_the_key_and_the_action(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage, _, _ = _raw(folder)
    storage["k"] = b"v"

    def failing_disk(fd: int, size: int) -> bytes:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(files_module, "_read_all", failing_disk)
    with pytest.raises(BackendError) as failed:
        storage["k"]
    assert str(failed.value) == f"cannot read key 'k' in {folder}: [Errno 5] Input/output error"


def test_a_hashed_file_holding_another_keys_line_is_a_key_error_naming_the_key(
    folder: Path,
) -> None:
    storage, _, _ = _raw(folder)
    first, second = "a" * 300, "b" * 300
    storage[first] = b"v"
    storage[second] = b"w"
    names_ = {key: _only_new(folder, key, storage) for key in (first, second)}
    os.replace(folder / names_[first], folder / names_[second])  # a's file under b's name
    with pytest.raises(KeyError) as missing:
        storage[second]
    assert missing.value.args == (second,)


def _only_new(folder: Path, key: str, storage: Storage) -> str:
    """The file name of ``key``: the one that goes when it is deleted and comes back."""
    before = set(os.listdir(folder))
    value = storage[key]
    del storage[key]
    (name,) = before - set(os.listdir(folder))
    storage[key] = value
    return str(name)


def test_a_key_as_long_as_the_bound_is_stored_and_listed_and_a_longer_one_refused(
    folder: Path,
) -> None:
    storage, _, _ = _raw(folder, max_value_bytes=300)
    storage["k" * 300] = b"v"  # escaped, exactly the bound: listing reads it whole
    assert list(storage) == ["k" * 300]
    with pytest.raises(InvalidKeyError) as refused:
        storage["k" * 301] = b"v"
    assert str(refused.value) == (
        f"key {'k' * 40!r}... is too long: escaped, it exceeds max_value_bytes=300, so it "
        "could be stored but never listed"
    )


def test_a_link_at_a_key_name_does_not_make_a_folder_look_like_an_old_format(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    outside = tmp_path / "outside"
    outside.write_bytes(b"not ours")
    os.symlink(outside, folder / "k.bin")  # no marker yet: a folder of format 0 if an entry
    storage = Storage(Codec("raw"), Files(folder, "bin"))
    assert list(storage) == [] and (folder / ".pystorage").exists()


def test_a_file_with_a_deadline_is_private_with_its_mark(folder: Path) -> None:
    storage, _, _ = _raw(folder)
    storage.set("t", b"v", ttl=60)
    assert stat.S_IMODE(os.stat(folder / "t.bin").st_mode) == 0o700


def test_a_failed_replace_names_the_key_and_the_action(folder: Path) -> None:
    storage, _, _ = _raw(folder)
    (folder / "d.bin").mkdir()  # os.replace cannot put a file over a folder
    with pytest.raises(BackendError) as failed:
        storage["d"] = b"v"
    assert str(failed.value).startswith(f"cannot write key 'd' in {folder}: [Errno 21] ")


def test_a_delete_of_what_is_no_entry_is_a_key_error_naming_the_key(folder: Path) -> None:
    storage, _, clock = _raw(folder)
    (folder / "dir.bin").mkdir()
    storage.set("old", b"v", ttl=1)
    clock.now += 1
    for key in ("missing", "dir", "old"):
        with pytest.raises(KeyError) as missing:
            del storage[key]
        assert missing.value.args == (key,)


def test_sizes_by_age_give_each_value_its_own_size_and_drop_the_expired(folder: Path) -> None:
    storage, files, clock = _raw(folder)
    long = "k" * 300  # a hashed name: the key line before the value is not its size
    storage.set_many({"plain": b"123", long: b"12345"})
    storage.set_many({"framed": b"1234", long + "t": b"123456"}, ttl=100)
    storage.set_many({f"gone{i}": b"x" for i in range(8)}, ttl=10)
    clock.now += 10  # those at their deadline exactly: expired
    assert len(storage) == 4
    assert sorted(storage) == sorted(["plain", long, "framed", long + "t"])
    assert dict(files.sizes_by_age()) == {"plain": 3, long: 5, "framed": 4, long + "t": 6}
    assert files.counters() == {"expirations": 8}
    assert len(os.listdir(folder)) == 1 + 4  # the marker and the live files


def test_a_folder_removed_underneath_is_an_error_naming_it(folder: Path) -> None:
    storage, _, _ = _raw(folder)
    storage["k"] = b"v"
    shutil.rmtree(folder)
    with pytest.raises(BackendError) as failed:
        list(storage)
    assert str(failed.value).startswith(f"cannot list {folder}: [Errno 2] ")


# -- files beside the entries: notes and tag tokens -----------------------------------------


def test_a_note_is_written_whole_read_back_and_never_an_entry(folder: Path) -> None:
    files = Files(folder, "bin")
    assert files.read_note("sketch") is None
    files.write_note("sketch", b"first")
    files.write_note("sketch", b"second")  # replaced
    assert files.read_note("sketch") == b"second"
    assert Files(folder, "bin").read_note("sketch") == b"second"  # another opener
    assert Files(folder, "txt").read_note("sketch") is None  # notes are per suffix
    assert sorted(os.listdir(folder)) == [".note-sketch.bin", ".pystorage"]
    assert list(files.keys()) == [] and files.count() == 0


def test_a_note_that_is_no_regular_file_of_ours_or_too_large_is_not_read(folder: Path) -> None:
    files = Files(folder, "bin", max_value_bytes=8)
    files.write_note("big", b"123456789")  # written: the bound is for reading
    assert files.read_note("big") is None
    files.write_note("fits", b"12345678")
    assert files.read_note("fits") == b"12345678"
    (folder / ".note-dir.bin").mkdir()
    assert files.read_note("dir") is None
    (folder / ".note-link.bin").symlink_to(folder / ".note-fits.bin")
    assert files.read_note("link") is None  # never through a link


def test_a_note_that_cannot_be_written_or_read_names_the_file(folder: Path) -> None:
    files = Files(folder, "bin")
    target = folder / ".note-n.bin"
    target.mkdir()
    (target / "inside").write_bytes(b"")
    with pytest.raises(BackendError) as error:
        files.write_note("n", b"v")
    assert str(error.value).startswith(f"cannot write the note {target}: [Errno ")
    assert sorted(os.listdir(folder)) == [".note-n.bin", ".pystorage"]  # no temporary left
    files.write_note("m", b"v")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    try:
        # A few descriptors above those open: taken one by one until the note has none.
        top = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (top + 8, hard))
        with pytest.raises(BackendError) as error:
            for _ in range(top + 16):  # the free descriptors below the top ones too
                assert files.read_note("m") == b"v"
                held.append(os.open(os.devnull, os.O_RDONLY))
        assert str(error.value).startswith(
            f"cannot read the note {folder}/.note-m.bin: [Errno {errno.EMFILE}] "
        )
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_tag_token_is_made_once_shared_and_renewed(folder: Path) -> None:
    files = Files(folder, "bin")
    assert files.tag_tokens(["t"], create=False) == {}
    assert not (folder / ".tag-t.bin").exists()
    made = files.tag_tokens(["t", "u"], create=True)
    assert sorted(made) == ["t", "u"] and made["t"] != made["u"]
    assert all(len(token) >= 16 and token.isascii() for token in made.values())
    assert (folder / ".tag-t.bin").read_bytes() == made["t"].encode()
    other = Files(folder, "bin")  # another opener: the same tokens, none made again
    assert other.tag_tokens(["u", "t"], create=True) == made
    assert other.tag_tokens(["t", "v"], create=False) == {"t": made["t"]}
    other.renew_tag("t")
    renewed = files.tag_tokens(["t"], create=False)["t"]
    assert renewed != made["t"] and (folder / ".tag-t.bin").read_bytes() == renewed.encode()
    assert files.tag_tokens(["u"], create=False) == {"u": made["u"]}
    assert list(files.keys()) == [] and Files(folder, "txt").tag_tokens(["t"], False) == {}


def test_a_tag_token_that_cannot_be_made_names_the_tag(folder: Path) -> None:
    files = Files(folder, "bin")
    (folder / ".tag-t.bin").mkdir()  # in the way: the link fails, nothing is readable
    with pytest.raises(BackendError) as error:
        files.tag_tokens(["t"], create=True)
    assert str(error.value) == f"the token of tag 't' ({folder}/.tag-t.bin) is not readable"
    assert sorted(os.listdir(folder)) == [".pystorage", ".tag-t.bin"]  # no temporary left
    (folder / ".tag-t.bin" / "inside").write_bytes(b"")
    with pytest.raises(BackendError) as error:
        files.renew_tag("t")
    assert str(error.value).startswith(f"cannot write the tag token {folder}/.tag-t.bin: ")


def test_the_lease_file_of_a_key_is_no_entry(folder: Path) -> None:
    from pystorage.layers.base import new_token

    files = Files(folder, "bin")
    mine, theirs = new_token(), new_token()
    assert files.take_lease("k", mine, 60.0) == mine
    assert files.take_lease("k", theirs, 60.0) == mine  # held
    assert ".key-lock-k.bin" in os.listdir(folder)  # a leading dot: no key's file name
    assert list(files.keys()) == [] and files.count() == 0
    files.end_lease("k", mine)
    assert files.take_lease("k", theirs, 60.0) == theirs


def test_without_flock_each_key_has_a_lock_of_its_own(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = Files(folder)
    monkeypatch.setattr(files_module, "fcntl", None)  # as on Windows: a lock of the process
    taken = threading.Event()

    def take_another() -> None:
        with files.key_lock("b"):
            taken.set()

    with files.key_lock("a"):
        thread = threading.Thread(target=take_another)
        thread.start()
        assert taken.wait(timeout=10)  # "b" is free while "a" is held
    thread.join()


def test_a_tag_token_is_read_as_ascii_whatever_the_file_holds(folder: Path) -> None:
    files = Files(folder, "bin")
    (folder / ".tag-t.bin").write_bytes(b"\xff\xfe-token")
    assert files.tag_tokens(["t"], create=True) == {"t": "\ufffd\ufffd-token"}


def test_a_tag_token_that_cannot_be_written_names_it(folder: Path) -> None:
    files = Files(folder, "bin")
    # The next temporary file's name is taken: the write of the new token fails.
    taken = folder / f".tmp-{os.getpid()}-{next(files_module._temp_ids) + 1}"
    taken.mkdir()
    with pytest.raises(BackendError) as error:
        files.tag_tokens(["t"], create=True)
    assert str(error.value).startswith(
        f"cannot write the tag token {folder}/.tag-t.bin: [Errno {errno.EEXIST}] "
    )
    assert sorted(os.listdir(folder)) == [".pystorage", taken.name]  # nothing else left


def test_a_tag_token_that_cannot_be_read_names_it(folder: Path) -> None:
    files = Files(folder, "bin")
    files.tag_tokens(["t"], create=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    try:
        top = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (top + 8, hard))
        with pytest.raises(BackendError) as error:
            for _ in range(top + 16):  # until no descriptor is left for the token
                assert files.tag_tokens(["t"], create=False)
                held.append(os.open(os.devnull, os.O_RDONLY))
        assert str(error.value).startswith(
            f"cannot read the tag token {folder}/.tag-t.bin: [Errno {errno.EMFILE}] "
        )
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_giving_a_lease_back_through_a_link_names_the_key(folder: Path) -> None:
    from pystorage.layers.base import new_token

    files = Files(folder, "bin")
    token = new_token()
    assert files.take_lease("k", token, 60.0) == token
    guard = folder / ".key-locks.bin"
    guard.unlink()
    guard.symlink_to(folder / "elsewhere")
    with pytest.raises(BackendError) as error:
        files.end_lease("k", token)
    assert str(error.value) == "cannot release the lock of key 'k': a link is in its place"


def test_the_longest_keys_and_tags_get_lease_and_token_files(folder: Path) -> None:
    from pystorage.layers.base import new_token

    files = Files(folder, "bin")
    # Keys and tags just short of the longest stem of an entry's name: with the prefix
    # of a lease or tag file before them, hashed like longer ones, to fit a name.
    for length in (files._max_stem - 1, files._max_stem + 1, 1000):
        key, tag = "k" * length, "t" * length
        token = new_token()
        assert files.take_lease(key, token, 60.0) == token
        made = files.tag_tokens([tag], create=True)
        assert Files(folder, "bin").tag_tokens([tag], create=False) == made
        files.end_lease(key, token)
    assert all(len(name) <= 255 for name in os.listdir(folder))


def test_notes_and_tag_tokens_are_private_files(folder: Path) -> None:
    files = Files(folder, "bin")
    files.write_note("n", b"v")
    files.tag_tokens(["t"], create=True)
    for name in (".note-n.bin", ".tag-t.bin"):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600, name


def test_a_deadline_that_cannot_be_read_for_want_of_a_descriptor_names_the_file(
    folder: Path,
) -> None:
    # In this process (tests/test_hostile_deadlines.py checks the same in a child): an
    # entry with a deadline is never said missing because its header could not be read.
    storage, _, _ = _raw(folder)
    storage.set("k", b"v", ttl=3600)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    try:
        top = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (top + 8, hard))
        with pytest.raises(BackendError) as error:
            for _ in range(top + 16):  # until no descriptor is left for the header
                assert "k" in storage
                held.append(os.open(os.devnull, os.O_RDONLY))
        assert str(error.value) == (
            f"cannot read the deadline of {folder}/k.bin: [Errno {errno.EMFILE}] Too many "
            f"open files: '{folder}/k.bin'"
        )
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_expired_files_are_judged_again_before_removal(folder: Path) -> None:
    # The caller's list of expired files is judged again under the gate: a name gone
    # meanwhile is skipped (the others still go), a file written again meanwhile stays.
    storage, files, clock = _raw(folder)
    storage.set("old", b"v", ttl=10)
    storage.set("other", b"v", ttl=10)
    storage.set("renewed", b"v", ttl=100)
    storage.set("plain", b"v")
    clock.now += 20
    names = ["gone.bin", "old.bin", "renewed.bin", "plain.bin", "other.bin"]
    assert files._remove_expired(names) == 2
    assert sorted(os.listdir(folder)) == [".pystorage", "plain.bin", "renewed.bin"]
    assert files.counters() == {"expirations": 2}


def test_the_lock_file_is_private(folder: Path) -> None:
    storage, _, _ = _raw(folder)
    storage.set("k", b"v", ttl=10)
    with storage.top.exclusive():  # made by the first section
        pass
    assert stat.S_IMODE((folder / ".lock.bin").stat().st_mode) == 0o600


def test_a_write_by_an_opener_that_never_read_the_token_renews_it(folder: Path) -> None:
    # Another process's memory front reads the token; this opener has not opened the lock
    # file yet, but finds it made: its write renews the token all the same.
    reading = Files(folder, "bin")
    before = reading.version()  # makes the lock file
    Storage(Codec("raw"), Files(folder, "bin"))["k"] = b"v"
    assert reading.version() != before


def test_a_lock_file_that_is_not_regular_is_refused_and_named_by_its_kind(tmp_path: Path) -> None:
    """Whatever took the lock file's place (planted by someone who can write the folder),
    the refusal names the file and what it is, and says what to do."""
    import socket

    (tmp_path / "folder").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    os.mkfifo(tmp_path / "fifo")
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(tmp_path / "socket"))
        kinds = {
            str(tmp_path / "link"): "a symbolic link",
            str(tmp_path / "fifo"): "a FIFO",
            str(tmp_path / "folder"): "a folder",
            str(tmp_path / "socket"): "a socket",
            os.devnull: "a device",
        }
        for file, kind in kinds.items():
            with pytest.raises(BackendError) as refused:
                files_module._refuse_unless_regular(file, os.lstat(file))
            assert str(refused.value) == (
                f"the lock file {file} is {kind}, not a regular file: PyStorage refuses to use "
                "it (someone who can write the folder may have planted it); remove it"
            )
    typeless = os.stat_result((0o644, 0, 0, 1, 0, 0, 0, 0, 0, 0))  # no file type bits
    with pytest.raises(BackendError, match=r"^the lock file f is no regular file, not a"):
        files_module._refuse_unless_regular("f", typeless)
    (tmp_path / "regular").write_bytes(b"")
    files_module._refuse_unless_regular("r", os.lstat(tmp_path / "regular"))  # no error
