"""The ``pystorage`` command, run for real in a subprocess as a user would run it."""

from __future__ import annotations

import json
import os
import pty
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis

import pystorage
from tests.helpers import unique

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
    url = f"file://{tmp_path}/store"
    assert cli("put", url, "greeting", "héllo", script=True).returncode == 0
    assert cli_bytes("get", url, "greeting") == "héllo".encode()
    help_text = cli("--help", script=True)
    assert help_text.returncode == 0 and "copy" in help_text.stdout


def test_put_get_ls_rm_stats(tmp_path: Path) -> None:
    url = f"file://{tmp_path}/store?codec=json&stats=1"
    assert cli("put", url, "b", "text").returncode == 0
    assert cli("put", url, "a", "--json", '{"x": [1, 2]}').returncode == 0
    assert cli_bytes("get", url, "b") == b"text"
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
    url = f"file://{tmp_path}/store"  # pickle: any object
    fill(url, {"json": {"a": [1, None]}, "set": {3}})
    assert cli_bytes("get", url, "json") == b'{"a": [1, null]}\n'
    assert cli_bytes("get", url, "set") == b"{3}\n"


def test_ttl_is_kept_by_every_file_stack(tmp_path: Path) -> None:
    assert cli("put", f"file://{tmp_path}?ttl=60", "k", "v", "--ttl", "5").returncode == 0
    assert cli("put", f"file://{tmp_path}", "k2", "v", "--ttl", "5").returncode == 0
    assert os.stat(tmp_path / "k2").st_mode & stat.S_IXUSR  # framed: it has a deadline


# -- errors ----------------------------------------------------------------------------


def test_missing_key_is_one_line_and_status_1(tmp_path: Path) -> None:
    url = f"file://{tmp_path}"
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
    result = cli("--debug", "get", f"file://{tmp_path}", "nope")
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
    src, dst = f"file://{tmp_path}/src", f"file://{tmp_path}/dst?codec=json"
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
    src, dst = f"file://{tmp_path}/src", f"file://{tmp_path}/dst?codec=json"
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
