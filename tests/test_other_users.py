"""docs/security.md's rows about other local users, played by two real users.

The other tests of these promises run as one user and chown a planted file to look like
another's. Here the application runs as an unprivileged user (``nobody``) and the files are
planted by a different user (root, the test itself), in a folder both can write (mode
1777, like the temp folder): what the application's process sees is what it would see in
production. The application's side runs in a forked child that drops to ``nobody`` after
everything it needs is imported (the interpreter lives where ``nobody`` may not read).
Without root, no second user can be had: the tests are skipped and say so.
"""

from __future__ import annotations

import os
import pickle
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pystorage import Storage
from pystorage.errors import BackendError, StorageError
from pystorage.layers import Codec, Files, SQLite

NOBODY = 65534
DEADLINE = 60.0

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root to play two users (the application as nobody, the other user as root)",
)


def as_nobody(action: Callable[[], str]) -> str:
    """What ``action`` returned (or the name and message of what it raised), run in a
    forked child as user ``nobody``; fails if it takes longer than the deadline."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to nobody, act, report, leave without cleanup
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                outcome = action()
            except BaseException as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            os.write(write, outcome.encode())
        finally:
            os._exit(0)
    os.close(write)
    deadline = time.monotonic() + DEADLINE
    while os.waitpid(pid, os.WNOHANG) == (0, 0):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            os.close(read)
            pytest.fail(f"the application's process was still waiting after {DEADLINE} s")
        time.sleep(0.01)
    with os.fdopen(read, "rb") as pipe:
        return pipe.read().decode()


@pytest.fixture
def shared() -> Iterator[Path]:
    """A folder every user may write, as the temp folder (sticky, 1777). Made in /tmp
    itself: pytest's own temp folders are private to the user running the tests."""
    folder = Path(tempfile.mkdtemp(prefix="pystorage-shared-", dir="/tmp"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


class _RunsCode:
    """Unpickling it creates a file: proof that a planted pickle was decoded."""

    def __init__(self, proof: Path) -> None:
        self.proof = proof

    def __reduce__(self) -> tuple[Callable[..., object], tuple[str, str]]:
        return (os.system, (f"touch {self.proof}",))


def test_a_pickle_another_user_planted_in_the_folder_is_never_unpickled(shared: Path) -> None:
    folder, proof = shared / "cache", shared / "code-ran"

    def write() -> str:
        Storage(Codec("pickle"), Files(folder, "pkl"))["k"] = "mine"
        return "written"

    assert as_nobody(write) == "written"
    # Files made the folder private (0700): the other user cannot plant there...
    assert folder.stat().st_mode & 0o777 == 0o700
    # ...unless it is made shared, as a folder given by a careless configuration can be.
    folder.chmod(0o1777)
    planted = folder / "k.pkl"
    planted.unlink()
    planted.write_bytes(pickle.dumps(_RunsCode(proof)))

    def read() -> str:
        try:
            return repr(Storage(Codec("pickle"), Files(folder, "pkl"))["k"])
        except BackendError as exc:
            return f"refused: {exc}"

    outcome = as_nobody(read)
    assert outcome.startswith("refused:") and "belongs to user 0" in outcome, outcome
    assert not proof.exists()


def test_a_wal_another_user_planted_beside_a_database_is_refused(shared: Path) -> None:
    database = shared / "c.db"

    def write() -> str:
        storage = Storage(Codec("json"), SQLite(database))
        storage["k"] = "mine"
        storage.close()
        return "written"

    assert as_nobody(write) == "written"
    assert database.stat().st_uid == NOBODY and not Path(f"{database}-wal").exists()
    planted = Path(f"{database}-wal")
    planted.write_bytes(b"\0" * 32)
    planted.chmod(0o666)

    def read() -> str:
        try:
            return repr(Storage(Codec("json"), SQLite(database))["k"])
        except StorageError as exc:
            return f"refused: {exc}"

    outcome = as_nobody(read)
    assert outcome.startswith("refused:") and "-wal belongs to user 0" in outcome, outcome


def test_a_fifo_another_user_planted_as_the_marker_never_hangs_the_application(
    shared: Path,
) -> None:
    # The application keeps its files right in the shared folder: the other user gets
    # there first with a FIFO where the format marker goes.
    os.mkfifo(shared / ".pystorage", 0o666)

    def open_and_write() -> str:
        try:
            Storage(Codec("json"), Files(shared))["k"] = "mine"
        except StorageError as exc:
            return f"refused: {exc}"
        return "written"

    outcome = as_nobody(open_and_write)
    assert outcome.startswith("refused:") and ".pystorage" in outcome, outcome
