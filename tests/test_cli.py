"""The ``pystorage`` command, run for real in a subprocess as a user would run it."""

from __future__ import annotations

import io
import json
import os
import pickle
import pty
import re
import signal
import stat
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis

import pystorage
from pystorage import cli as cli_module
from pystorage.cli import copy as copy_command
from pystorage.cli.batches import BatchResult
from pystorage.errors import BackendError
from pystorage.layers import Files
from pystorage.testing import free_port
from tests.helpers import in_child, other_user, shared_folder, unique

SCRIPT = Path(sys.executable).with_name("pystorage")
SUMMARY = re.compile(r"copied (\d+), skipped (\d+), failed (\d+)")


def cli(
    *args: str,
    script: bool = False,
    stdin: bytes | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pystorage ARGS`` (or the console script); output decoded."""
    command = [str(SCRIPT)] if script else [sys.executable, "-m", "pystorage"]
    process = subprocess.run(
        [*command, *args],
        input=stdin,
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )
    return subprocess.CompletedProcess(
        process.args,
        process.returncode,
        process.stdout.decode("utf-8", "replace"),
        process.stderr.decode("utf-8", "replace"),
    )


def cli_bytes(*args: str) -> bytes:
    """The raw stdout of a successful ``python -m pystorage ARGS``."""
    process = subprocess.run(
        [sys.executable, "-m", "pystorage", *args], capture_output=True, timeout=60, check=True
    )
    return process.stdout


def assert_one_error_line(result: subprocess.CompletedProcess[str], status: int) -> str:
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pystorage: error: "), result.stderr
    return lines[0]


def counts(stderr: str) -> tuple[int, int, int]:
    """(copied, skipped, failed) from a copy's summary line."""
    found = SUMMARY.search(stderr)
    assert found, stderr
    copied, skipped, failed = map(int, found.groups())
    return copied, skipped, failed


def fill(url: str, items: dict[str, Any]) -> None:
    with pystorage.open(url) as storage:
        storage.set_many(items)


def contents(url: str) -> dict[str, Any]:
    with pystorage.open(url) as storage:
        return storage.get_many(list(storage))


def records(count: int) -> dict[str, Any]:
    return {f"key-{i}": {"n": i, "tags": ["a", str(i)], "ok": i % 2 == 0} for i in range(count)}


# -- put, get, ls, rm, stats -----------------------------------------------------------


def test_round_trip_with_the_console_script(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store?codec=pickle"
    assert cli("put", url, "greeting", "héllo", script=True).returncode == 0
    assert cli_bytes("get", url, "greeting") == "héllo\n".encode()
    help_text = cli("--help", script=True)
    assert help_text.returncode == 0 and "copy" in help_text.stdout


def test_put_get_ls_rm_stats(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store?codec=json&stats=1"
    assert cli("put", url, "b", "text").returncode == 0
    assert cli("put", url, "a", "--json", '{"x": [1, 2]}').returncode == 0
    assert cli_bytes("get", url, "b") == b"text\n"
    assert json.loads(cli_bytes("get", url, "a")) == {"x": [1, 2]}
    assert contents(url) == {"a": {"x": [1, 2]}, "b": "text"}
    assert cli("ls", url, "--sort").stdout == "a\nb\n"
    stats = dict(line.split() for line in cli("stats", url).stdout.splitlines())
    assert stats["entries"] == "2" and "hits" in stats and "writes" in stats
    assert cli("rm", url, "a", "b").returncode == 0
    assert cli("ls", url).stdout == ""
    assert cli("stats", url).stdout.splitlines()[0] == "entries 0"


def test_put_bytes_from_stdin_and_file_and_get_into_a_file(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store?codec=raw"
    blob = bytes(range(256)) * 4
    (tmp_path / "in.bin").write_bytes(blob)
    assert cli("put", url, "stdin", "-", stdin=blob).returncode == 0
    assert cli("put", url, "file", "-f", str(tmp_path / "in.bin")).returncode == 0
    assert cli_bytes("get", url, "stdin") == blob
    assert cli("get", url, "file", "-o", str(tmp_path / "out.bin")).returncode == 0
    assert (tmp_path / "out.bin").read_bytes() == blob


def test_get_renders_objects_as_json_or_repr(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store?codec=pickle"  # any object
    fill(url, {"json": {"a": [1, None]}, "set": {3}})
    assert cli_bytes("get", url, "json") == b'{"a": [1, null]}\n'
    assert cli_bytes("get", url, "set") == b"{3}\n"


def test_ttl_is_kept_by_every_file_stack(tmp_path: Path) -> None:
    url = f"file://{tmp_path}?codec=json"
    assert cli("put", f"{url}&ttl=60", "k", "v", "--ttl", "5").returncode == 0
    assert cli("put", url, "k2", "v", "--ttl", "5").returncode == 0
    assert os.stat(tmp_path / "k2").st_mode & stat.S_IXUSR  # framed: it has a deadline


def test_copy_carries_the_time_each_entry_has_left(tmp_path: Path) -> None:
    for side in ("src", "dst"):
        (tmp_path / side).mkdir()
    src, dst = (f"file://{tmp_path}/{side}?codec=json" for side in ("src", "dst"))
    with pystorage.open(src) as storage:
        storage.set("session", {"user": 7}, ttl=100)
        storage["forever"] = 1
    assert cli("copy", src, dst).returncode == 0
    with pystorage.open(dst) as copied:
        value, left = copied.get_with_ttl("session")
        assert value == {"user": 7} and left is not None and 50 < left <= 100
        assert copied.get_with_ttl("forever") == (1, None)


# -- errors ----------------------------------------------------------------------------


def test_missing_key_is_one_line_and_status_1(tmp_path: Path) -> None:
    url = f"file://{tmp_path}?codec=json"
    line = assert_one_error_line(cli("get", url, "nope"), 1)
    assert line == "pystorage: error: no such key 'nope'"
    assert_one_error_line(cli("rm", url, "nope"), 1)
    assert cli("rm", url, "nope", "--force").returncode == 0


@pytest.mark.parametrize(
    "url", ["nosuch://x", "file:///tmp?codec=nosuch", "file:///tmp?limit=many", "s3://"]
)
def test_bad_url_is_one_line_and_status_2(url: str) -> None:
    assert_one_error_line(cli("ls", url), 2)


def test_runtime_failures_are_one_line_and_status_1(tmp_path: Path) -> None:
    line = assert_one_error_line(cli("ls", f"file://{tmp_path}/typo"), 1)
    assert "no such folder" in line and not (tmp_path / "typo").exists()
    assert_one_error_line(cli("ls", "redis://127.0.0.1:1/0?socket_connect_timeout=1"), 1)


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = cli("--debug", "get", f"file://{tmp_path}?codec=json", "nope")
    assert result.returncode == 1 and "Traceback" in result.stderr


# -- copy ------------------------------------------------------------------------------


def test_copy_changes_codec(tmp_path: Path) -> None:
    src, dst = f"file://{tmp_path}/src?codec=json", f"file://{tmp_path}/dst?codec=msgpack"
    items = records(1000)
    fill(src, items)
    result = cli("copy", src, dst, "--batch", "64", "--workers", "4")
    assert result.returncode == 0, result.stderr
    assert counts(result.stderr) == (1000, 0, 0)
    assert contents(dst) == items
    for file in (tmp_path / "dst").iterdir():
        if not file.name.startswith("."):
            assert msgpack.unpackb(file.read_bytes()) == items[file.name]


def test_copy_files_to_redis(tmp_path: Path, redis_url: str) -> None:
    src = f"file://{tmp_path}/src?codec=json"
    prefix = unique("cli:") + ":"
    dst = f"{redis_url}?prefix={prefix}&codec=json"
    items = records(300)
    fill(src, items)
    result = cli("copy", src, dst)
    assert result.returncode == 0, result.stderr
    assert counts(result.stderr) == (300, 0, 0)
    assert contents(dst) == items
    client = redis.Redis.from_url(redis_url)
    assert json.loads(client.get(f"{prefix}key-7") or b"") == items["key-7"]


def test_copy_files_to_s3(tmp_path: Path, s3_options: dict[str, Any], s3_bucket: str) -> None:
    src = f"file://{tmp_path}/src?codec=json"
    endpoint = s3_options["endpoint_url"]
    dst = f"s3://{s3_bucket}/{unique('cli-')}?codec=msgpack&endpoint_url={endpoint}"
    env = {
        "AWS_ACCESS_KEY_ID": s3_options["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": s3_options["aws_secret_access_key"],
        "AWS_DEFAULT_REGION": s3_options["region_name"],
    }
    items = records(200)
    fill(src, items)
    result = cli("copy", src, dst, "--batch", "50", env=env)
    assert result.returncode == 0, result.stderr
    assert counts(result.stderr) == (200, 0, 0)
    listing = cli("ls", dst, env=env).stdout.splitlines()
    assert sorted(listing) == sorted(items)
    assert json.loads(cli("get", dst, "key-3", env=env).stdout) == items["key-3"]


def test_resume_skips_what_dst_has(tmp_path: Path) -> None:
    src, dst = f"file://{tmp_path}/src?codec=json", f"file://{tmp_path}/dst?codec=json"
    fill(src, {f"k{i}": f"src-{i}" for i in range(100)})
    fill(dst, {f"k{i}": f"dst-{i}" for i in range(30)})
    result = cli("copy", src, dst, "--resume", "--batch", "16")
    assert result.returncode == 0, result.stderr
    assert counts(result.stderr) == (70, 30, 0)
    assert contents(dst) == {f"k{i}": f"dst-{i}" if i < 30 else f"src-{i}" for i in range(100)}


def test_delete_empties_src(tmp_path: Path) -> None:
    src, dst = f"file://{tmp_path}/src?codec=pickle", f"file://{tmp_path}/dst?codec=json"
    fill(src, {"a": 1, "b": [2]})
    result = cli("copy", src, dst, "--delete")
    assert result.returncode == 0, result.stderr
    assert contents(dst) == {"a": 1, "b": [2]} and contents(src) == {}


def test_copy_into_itself_is_refused(tmp_path: Path) -> None:
    line = assert_one_error_line(
        cli("copy", f"file://{tmp_path}?codec=json", f"file://{tmp_path}/?codec=msgpack"), 2
    )
    assert "same storage" in line


def test_entries_dst_cannot_encode_fail_and_are_named(tmp_path: Path) -> None:
    src, dst = f"file://{tmp_path}/src?codec=pickle", f"file://{tmp_path}/dst?codec=json"
    good = {f"good-{i}": [i] for i in range(50)}
    fill(src, {**good, "bad-set": {1, 2}})
    result = cli("copy", src, dst, "--batch", "8")
    assert result.returncode == 1
    assert counts(result.stderr) == (50, 0, 1)
    assert "failed 'bad-set'" in result.stderr and "CodecError" not in result.stderr
    assert "Traceback" not in result.stderr
    assert contents(dst) == good


def test_progress_into_a_pipe_is_plain_lines(tmp_path: Path) -> None:
    src, dst = f"file://{tmp_path}/src?codec=json", f"file://{tmp_path}/dst?codec=json"
    fill(src, records(500))
    result = cli("copy", src, dst, "--batch", "10", "--workers", "2")
    assert result.returncode == 0
    assert "\r" not in result.stderr and "\x1b" not in result.stderr
    progress = [line for line in result.stderr.splitlines() if "entries/s ETA" in line]
    assert progress and progress[-1].startswith("pystorage: copy 500/500 100%")
    assert result.stderr.splitlines()[-1].startswith("pystorage: copied 500")


def test_progress_on_a_terminal_is_a_redrawn_bar(tmp_path: Path) -> None:
    src, dst = f"file://{tmp_path}/src?codec=json", f"file://{tmp_path}/dst?codec=json"
    fill(src, records(500))
    output = run_with_terminal_stderr(["copy", src, dst, "--batch", "10", "--workers", "2"])
    assert output.count("\r[") >= 2  # drawn at the start, redrawn at least at the end
    assert re.search(r"\r\[#+\] 500/500 100% [\d,]+ entries/s ETA 0:00", output), output
    assert "copied 500, skipped 0, failed 0" in output


def run_with_terminal_stderr(args: list[str]) -> str:
    """Run the command with a pseudo-terminal as stderr; what it wrote there."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "pystorage", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # EIO: the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert process.wait(timeout=60) == 0
    return b"".join(chunks).decode()


# -- copy --delete: never lose an entry (issue 10 #8) -------------------------------------


def _redis_spellings(redis_url: str) -> list[str]:
    """One Redis database and prefix, spelled four ways."""
    port = redis_url.rsplit(":", 1)[1].split("/")[0]
    return [
        f"redis://localhost:{port}/0",
        f"redis://localhost:{port}",
        f"redis://127.0.0.1:{port}/?db=0",
        f"redis://127.0.0.1:{port}/00",
    ]


@pytest.mark.parametrize("spelling", range(4))
def test_copy_refuses_one_redis_database_spelled_two_ways(redis_url: str, spelling: int) -> None:
    options = f"prefix={unique('same:')}:&codec=json"
    src = f"{redis_url}?{options}"
    dst = _redis_spellings(redis_url)[spelling]
    dst += ("&" if "?" in dst else "?") + options
    items = records(20)
    fill(src, items)
    line = assert_one_error_line(cli("copy", src, dst, "--delete"), 2)
    assert "same storage" in line
    assert contents(src) == items


def test_copy_between_two_databases_of_one_server_is_allowed(redis_url: str) -> None:
    options = f"prefix={unique('other:')}:&codec=json"
    src = f"{redis_url}?{options}"
    dst = _redis_spellings(redis_url)[0].replace("/0", "/1") + f"?{options}"
    fill(src, records(20))
    result = cli("copy", src, dst, "--delete")
    assert result.returncode == 0, result.stderr
    assert contents(dst) == records(20) and contents(src) == {}


def test_copy_refuses_one_folder_spelled_two_ways(tmp_path: Path) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    (tmp_path / "link").symlink_to(folder)
    src = f"file://{folder}?codec=json&suffix=json"
    fill(src, records(10))
    for dst in (
        f"file://{tmp_path}/link?codec=msgpack&suffix=.json",
        f"file://localhost{tmp_path}/./store/?codec=json&suffix=json",
    ):
        line = assert_one_error_line(cli("copy", src, dst, "--delete"), 2)
        assert "same storage" in line
    assert contents(src) == records(10)


def test_delete_leaves_in_src_what_dst_does_not_hold(tmp_path: Path) -> None:
    src, dst = f"file://{tmp_path}/src?codec=json", f"file://{tmp_path}/dst?codec=json&limit=10"
    items = records(50)
    fill(src, items)
    result = cli("copy", src, dst, "--delete", "--batch", "8")
    assert result.returncode == 1, result.stderr
    assert "deleted from SRC 10, kept in SRC 40, evicted by DST's limit 40" in result.stderr
    assert "not readable in DST at the end of the copy" in result.stderr
    left, moved = contents(src), contents(dst)
    assert len(left) == 40 and len(moved) == 10 and {**left, **moved} == items


def test_an_alias_same_storage_misses_is_caught_before_anything_is_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Two mounts of one network share look like two folders; the first batch's delete
    # shows that they are one.
    monkeypatch.setattr(copy_command, "same_storage", lambda a, b: False)
    src = f"file://{tmp_path}?codec=json"
    dst = f"file://{tmp_path}/.?codec=json"
    items = records(50)
    fill(src, items)
    assert cli_module.main(["copy", src, dst, "--delete", "--batch", "8", "-q"]) == 1
    assert "SRC and DST are one storage" in capsys.readouterr().err
    assert contents(src) == items


def test_resume_finishes_what_an_interrupted_delete_left(tmp_path: Path) -> None:
    src, dst = f"file://{tmp_path}/src?codec=json", f"file://{tmp_path}/dst?codec=msgpack"
    items = records(100)
    fill(src, items)
    fill(dst, {key: items[key] for key in list(items)[:40]})  # copied, not yet deleted
    result = cli("copy", src, dst, "--delete", "--resume", "--batch", "16")
    assert result.returncode == 0, result.stderr
    assert counts(result.stderr) == (60, 40, 0)
    assert contents(src) == {} and contents(dst) == items


def test_resume_keeps_in_src_what_dst_holds_differently(tmp_path: Path) -> None:
    src, dst = f"file://{tmp_path}/src?codec=json", f"file://{tmp_path}/dst?codec=json"
    fill(src, {"same": 1, "other": 2, "new": 3})
    fill(dst, {"same": 1, "other": "dst's own"})
    result = cli("copy", src, dst, "--delete", "--resume")
    assert result.returncode == 1
    assert "kept in SRC 'other': DST already has another value" in result.stderr
    assert contents(src) == {"other": 2}
    assert contents(dst) == {"same": 1, "other": "dst's own", "new": 3}


def _entry_names(folder: Path) -> set[str]:
    try:
        return {name for name in os.listdir(folder) if not name.startswith(".")}
    except FileNotFoundError:
        return set()


@pytest.mark.parametrize("phase", ["copying", "deleting"])
def test_resume_after_a_sigkill_finishes_a_delete(tmp_path: Path, phase: str) -> None:
    src, dst = f"file://{tmp_path}/src?codec=json", f"file://{tmp_path}/dst?codec=json"
    items = records(4000)
    fill(src, items)
    command = [sys.executable, "-m", "pystorage", "copy", src, dst, "--delete", "-q"]
    # Killed once DST holds part of the entries, or once SRC lost part of them while an
    # entry is in both (copied, not yet deleted). The child is stopped (SIGSTOP) while
    # the folders are looked at, so the state seen is the state it is killed in: racing
    # a running child for that window took up to a minute of retries under load.
    if phase == "copying":
        wanted = lambda: len(_entry_names(tmp_path / "dst")) > 0  # noqa: E731
    else:

        def wanted() -> bool:
            left = _entry_names(tmp_path / "src")
            return len(left) < len(items) and bool(left & _entry_names(tmp_path / "dst"))

    child = subprocess.Popen(
        [*command, "--batch", "1000"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    try:
        while True:
            assert child.poll() is None, f"the copy ended before it was seen {phase}"
            assert time.monotonic() < deadline, f"the copy never started {phase}"
            child.send_signal(signal.SIGSTOP)
            if wanted():
                break
            child.send_signal(signal.SIGCONT)
            time.sleep(0.002)  # not a wait for a state: the child runs between looks
    finally:
        child.kill()
        child.wait(timeout=60)
    left, moved = contents(src), contents(dst)
    assert {**left, **moved} == items  # the kill lost nothing
    assert phase == "copying" or set(left) & set(moved)
    result = cli("copy", src, dst, "--delete", "--resume")
    assert result.returncode == 0, result.stderr
    assert contents(src) == {} and contents(dst) == items


# -- put, get and copy with text, JSON and limits (issue 10 #16) ---------------------------


def test_put_text_from_stdin_and_file(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store?codec=text"
    (tmp_path / "in.txt").write_text("from a fïle", encoding="utf-8")
    assert cli("put", url, "stdin", "-", stdin="héllo\nwörld".encode()).returncode == 0
    assert cli("put", url, "file", "-f", str(tmp_path / "in.txt")).returncode == 0
    assert contents(url) == {"stdin": "héllo\nwörld", "file": "from a fïle"}
    line = assert_one_error_line(cli("put", url, "bad", "-", stdin=b"\xff\xfe"), 2)
    assert "not UTF-8" in line


def test_put_a_json_document_from_stdin_and_file(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store?codec=json"
    (tmp_path / "config.json").write_text('{"debug": true, "names": ["a"]}')
    assert cli("put", url, "file", "-f", str(tmp_path / "config.json")).returncode == 0
    assert cli("put", url, "stdin", "-", stdin=b"[1, 2.5, null]").returncode == 0
    assert cli("put", url, "arg", "[1]").returncode == 0  # an argument stays a str
    assert contents(url) == {
        "file": {"debug": True, "names": ["a"]},
        "stdin": [1, 2.5, None],
        "arg": "[1]",
    }
    assert "not valid JSON" in assert_one_error_line(cli("put", url, "k", "-", stdin=b"{"), 2)


def test_get_ends_a_str_with_a_newline_and_writes_it_exactly_to_a_file(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store?codec=text"
    fill(url, {"k": "line"})
    assert cli_bytes("get", url, "k") == b"line\n"
    assert cli("get", url, "k", "-o", str(tmp_path / "out")).returncode == 0
    assert (tmp_path / "out").read_bytes() == b"line"


def test_copy_reports_what_the_destination_evicted(tmp_path: Path) -> None:
    src, dst = f"file://{tmp_path}/src?codec=json", f"file://{tmp_path}/dst?codec=json&limit=10"
    fill(src, records(300))
    result = cli("copy", src, dst)
    assert result.returncode == 0, result.stderr
    assert "copied 300, skipped 0, failed 0, evicted by DST's limit 290" in result.stderr
    assert len(contents(dst)) == 10


def test_reading_commands_never_trim_a_count_limited_folder(tmp_path: Path) -> None:
    plain = f"file://{tmp_path}/store?codec=json"
    fill(plain, records(30))
    limited = f"{plain}&limit=10&stats=1"
    assert len(cli("ls", limited).stdout.splitlines()) == 30
    assert cli("stats", limited).stdout.splitlines()[0] == "entries 30"
    assert json.loads(cli_bytes("get", limited, "key-0")) == records(1)["key-0"]
    copied = cli("copy", limited, f"file://{tmp_path}/copy?codec=json")
    assert counts(copied.stderr) == (30, 0, 0)
    assert contents(plain) == records(30)


def run_main(*args: str) -> tuple[int, bytes]:
    """Run the command line in this process: its exit status and what it printed."""
    printed = io.BytesIO()
    stream = io.TextIOWrapper(printed)
    with redirect_stdout(stream):
        status = cli_module.main(list(args))
    stream.flush()
    return status, printed.getvalue()


def test_a_count_limited_folder_opens_read_only() -> None:
    with shared_folder() as shared:
        url = f"file://{shared}/store?codec=json&limit=5"
        fill(url, records(5))
        # Readable, not writable, by another user than root (who may write anything).
        for file in (shared / "store").iterdir():
            file.chmod(0o644)
        (shared / "store").chmod(0o555)
        trusting = f"{url}&trust_others=1"  # the files are root's: reading them is a choice

        def read() -> tuple[tuple[int, bytes], tuple[int, bytes], tuple[int, bytes]]:
            return (
                run_main("ls", url, "--sort"),
                run_main("get", trusting, "key-3"),
                run_main("get", url, "key-3"),
            )

        (listing, listed), (value, got), (refused, _) = in_child(read, user=other_user())
    assert listing == 0 and listed.decode().split() == sorted(records(5))
    assert value == 0 and json.loads(got) == records(5)["key-3"]
    assert refused == 1  # another user's file, not trusted: a BackendError, never decoded


# -- the command line never unpickles unless asked (issue 10 #11) ------------------------


class Planted:
    """Unpickling it makes a folder: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def test_no_command_unpickles_a_planted_value_unless_the_url_asks(tmp_path: Path) -> None:
    folder, marker = tmp_path / "store", tmp_path / "code-ran"
    Files(folder)  # a folder of this release (format 1), then a file planted in it
    (folder / "k").write_bytes(pickle.dumps(Planted(marker)))
    url, dst = f"file://{folder}", f"file://{tmp_path}/dst?codec=json"
    secret = "secret=sixteen-bytes-or-more"
    for args, status in [
        (("get", url, "k"), 2),
        (("copy", url, dst), 2),
        (("put", f"{url}?ttl=60", "other", "v"), 2),
        (("get", f"{url}?{secret}", "k"), 1),  # signed: the planted value has no tag
        (("ls", url), 0),
        (("ls", f"{url}?ttl=60&limit=5"), 0),
        (("stats", f"{url}?ttl=60&stats=1"), 0),
    ]:
        result = cli(*args)
        assert result.returncode == status, (args, result.stderr)
        assert not marker.exists(), args
    assert cli("get", f"{url}?codec=pickle", "k").returncode == 0  # asked for: it runs
    assert marker.is_dir()


def test_ls_and_stats_never_decode_even_pickles_asked_for(tmp_path: Path) -> None:
    folder, marker = tmp_path / "store", tmp_path / "code-ran"
    Files(folder)  # a folder of this release (format 1), then a file planted in it
    (folder / "k").write_bytes(pickle.dumps(Planted(marker)))
    url = f"file://{folder}?codec=pickle&ttl=60&limit=5"  # Expiry would read every value
    assert cli("ls", url).stdout == "k\n"
    assert cli("stats", url).stdout.splitlines()[0] == "entries 1"
    assert not marker.exists()


def test_delete_into_a_memory_of_the_command_is_refused(tmp_path: Path) -> None:
    src = f"file://{tmp_path}/src?codec=json"
    fill(src, records(5))
    line = assert_one_error_line(cli("copy", src, "memory://?lru=10", "--delete"), 2)
    assert "memory" in line and contents(src) == records(5)


def test_a_copy_to_an_unreachable_redis_counts_every_entry_as_failed(tmp_path: Path) -> None:
    src = f"file://{tmp_path}/src?codec=json"
    fill(src, records(50))
    nowhere = f"redis://127.0.0.1:{free_port()}/0?codec=json"
    result = cli("copy", src, nowhere, "--batch", "8", "--workers", "2")
    assert result.returncode == 1, result.stderr
    assert counts(result.stderr) == (0, 0, 50)
    assert "stopped by the error below" in result.stderr
    lines = result.stderr.splitlines()
    progress = [line for line in lines if "entries/s ETA" in line]
    assert progress and all(line.endswith(" failed)") for line in progress), lines
    assert lines[-1].startswith("pystorage: error: ") and "cannot write" in lines[-1]
    assert "Traceback" not in result.stderr
    assert contents(src) == records(50)


def test_a_copy_stopped_by_an_error_counts_what_it_wrote_and_what_it_did_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # One batch meets an error: those already running finish and are counted, the ones
    # not begun are not written, and every entry is either copied or failed.
    src, dst = f"file://{tmp_path}/src?codec=json", f"file://{tmp_path}/dst?codec=json"
    fill(src, records(100))
    batch = copy_command.copy_batch

    def failing(*args: Any) -> BatchResult:
        if "key-40" in args[2]:
            raise BackendError("the destination went away")
        return batch(*args)

    monkeypatch.setattr(copy_command, "copy_batch", failing)
    assert cli_module.main(["copy", src, dst, "--batch", "8", "--workers", "3", "-q"]) == 1
    err = capsys.readouterr().err
    copied, skipped, failed = counts(err)
    assert copied == len(contents(dst)) and skipped == 0
    assert failed == 100 - copied and failed >= 8
    assert err.splitlines()[-1] == "pystorage: error: the destination went away"


def test_a_delete_stopped_by_an_error_says_what_may_still_be_in_src(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    src, dst = f"file://{tmp_path}/src?codec=json", f"file://{tmp_path}/dst?codec=json"
    fill(src, records(100))
    batch = copy_command.delete_batch

    def failing(*args: Any) -> BatchResult:
        if "key-40" in args[2]:
            raise BackendError("SRC went away")
        return batch(*args)

    monkeypatch.setattr(copy_command, "delete_batch", failing)
    assert cli_module.main(["copy", src, dst, "--delete", "--batch", "8", "-q"]) == 1
    err = capsys.readouterr().err
    assert counts(err) == (100, 0, 0) and contents(dst) == records(100)
    found = re.search(
        r"deleted from SRC (\d+), kept in SRC 0, deleting stopped by the error below, "
        r"(\d+) entries held by DST perhaps still in SRC",
        err,
    )
    assert found, err
    deleted, undeleted = map(int, found.groups())
    assert deleted + undeleted == 100 and undeleted >= 8
    assert len(contents(src)) == 100 - deleted
    assert err.splitlines()[-1] == "pystorage: error: SRC went away"
