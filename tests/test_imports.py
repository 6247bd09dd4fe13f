"""Cold start (issue 20): a program imports what it uses when it uses it.

``import pystorage`` loads no part of the package; a backend's module and its client
library load when that backend is built; a codec's library when that codec is; asyncio
with the first ``AsyncStorage``. Each check runs in a new interpreter, where
``sys.modules`` tells what was imported; the public names stay where they were.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import pystorage

#: What ``import pystorage`` must never pull in: asyncio and the optional libraries.
HEAVY = ("asyncio", "boto3", "botocore", "redis", "msgpack", "zstandard")
PACKAGES = ("pystorage", "pystorage.layers", "pystorage.codecs")


def loaded_after(code: str) -> set[str]:
    """The modules a new interpreter holds after running ``code``."""
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(json.loads(done.stdout.splitlines()[-1]))


def heavy(modules: set[str]) -> list[str]:
    return sorted(name for name in modules if name.split(".")[0] in HEAVY)


def test_import_pystorage_loads_neither_asyncio_nor_an_optional_library() -> None:
    modules = loaded_after("import pystorage")
    assert heavy(modules) == []
    # Not even its own layers: the package's names are imported on first use.
    assert sorted(name for name in modules if name.startswith("pystorage")) == [
        "pystorage",
        "pystorage._lazy",
        "pystorage.errors",
    ]


def test_the_check_sees_what_a_program_loads_later() -> None:
    # The same probe finds asyncio once an AsyncStorage is built: it can fail.
    modules = loaded_after("import pystorage\npystorage.open_async('memory://')")
    assert "asyncio" in modules
    assert "pystorage.aio.layers" in modules


def test_an_sqlite_cache_loads_its_backend_and_no_other() -> None:
    modules = loaded_after(
        "import tempfile, pystorage\n"
        "cache = pystorage.StorageProvider().create(pystorage.StorageProvider.STORAGE_SQLITE, "
        "path=tempfile.mkdtemp() + '/c.db', limit=10, max_bytes=10_000, expiration=60)\n"
        "cache['k'] = 1\n"
        "assert cache.get('k') == 1"
    )
    assert heavy(modules) == []
    assert "pystorage.layers.sqlite" in modules
    for unused in ("files", "redis", "s3", "memory", "tier", "stats"):
        assert f"pystorage.layers.{unused}" not in modules
    # Neither the async twins, memoize (asyncio, inspect, zoneinfo) nor the compressors.
    for unused in ("pystorage.aio", "pystorage.memoize", "pystorage.codecs.compress"):
        assert unused not in modules


def test_a_url_loads_only_its_own_backend() -> None:
    modules = loaded_after("import pystorage\npystorage.open('memory://?codec=json')")
    assert "pystorage.layers.memory" in modules
    assert not {"pystorage.layers.sqlite", "pystorage.layers.redis", "pystorage.layers.s3"} & (
        modules
    )


def test_the_command_line_loads_what_the_command_needs(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path}/c.db?codec=json"
    modules = loaded_after(
        "from pystorage.cli import main\n"
        f"assert main(['put', {url!r}, 'k', '1', '--json']) == 0\n"
        f"assert main(['get', {url!r}, 'k']) == 0"
    )
    assert heavy(modules) == []
    # Threads and sockets are for copy; the other backends' classes too.
    for unused in ("concurrent.futures", "socket", "pystorage.layers.files"):
        assert unused not in modules
    # Each command is a module of its own: these two, and none of the others.
    commands = {"ls", "get", "put", "rm", "stats", "copy", "batches", "progress", "identity"}
    loaded = {name.rpartition(".")[2] for name in modules if name.startswith("pystorage.cli.")}
    assert loaded & commands == {"get", "put"}


def test_a_codec_library_loads_with_its_codec() -> None:
    plain = loaded_after("from pystorage.codecs import resolve\nresolve('gzip-pickle')")
    assert heavy(plain) == []
    both = loaded_after(
        "from pystorage.codecs import resolve\n"
        "codec = resolve('zstd-msgpack')\n"
        "assert codec.decode(codec.encode({'a': 1})) == {'a': 1}"
    )
    assert {"msgpack", "zstandard"} <= both


def test_a_backend_library_loads_when_the_backend_is_built() -> None:
    modules = loaded_after(
        "from pystorage.layers import Redis\nRedis(url='redis://localhost:1/0').close()"
    )
    assert "redis" in modules
    assert "boto3" not in modules


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_is_where_it_was(package: str) -> None:
    module = importlib.import_module(package)
    assert set(module.__all__) <= set(dir(module))
    for name in module.__all__:
        value = getattr(module, name)
        assert value is not None
        # The object itself, not a copy: isinstance and identity checks keep working.
        origin = getattr(value, "__module__", None)
        if origin is not None and name not in ("errors", "open"):
            assert getattr(sys.modules[origin], name) is value
        exec(f"from {package} import {name} as imported", namespace := {})
        assert namespace["imported"] is value


@pytest.mark.parametrize("package", PACKAGES)
def test_a_name_that_is_not_there_is_an_attribute_error(package: str) -> None:
    module = importlib.import_module(package)
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        module.Nope  # noqa: B018
    assert not hasattr(module, "Nope")


def test_the_names_are_the_documented_objects() -> None:
    from pystorage.layers.sqlite import SQLite
    from pystorage.storage import Storage
    from pystorage.urls import open_url

    assert pystorage.Storage is Storage
    assert pystorage.open is open_url
    assert pystorage.layers.SQLite is SQLite
    assert pystorage.StorageProvider is pystorage.ServiceProvider


def test_subpackages_are_reached_from_a_plain_import() -> None:
    # ``import pystorage`` used to load them: code that relied on it still works.
    loaded_after(
        "import pystorage\n"
        "assert pystorage.layers.SQLite.__name__ == 'SQLite'\n"
        "assert pystorage.codecs.Pickle().decode(pystorage.codecs.Pickle().encode(1)) == 1"
    )


def test_threads_that_reach_a_name_first_at_once_get_one_object() -> None:
    code = """
import threading
import pystorage.layers as layers

names = layers.__all__
start = threading.Barrier(8)
seen = []

def reach():
    start.wait()
    seen.append([getattr(layers, name) for name in names])

threads = [threading.Thread(target=reach) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
assert len(seen) == 8 and all(row == seen[0] for row in seen), seen
assert all(a is b for row in seen for a, b in zip(row, seen[0]))
"""
    loaded_after(code)


@pytest.mark.parametrize(
    "argv",
    [
        ["get", "memory://", "k"],
        ["--debug", "get", "memory://", "k", "-o", "out"],
        ["put", "memory://", "k", "--json", "[1]", "--ttl", "5"],
        ["ls", "-s", "-0", "memory://"],
        ["rm", "memory://", "a", "b", "-f"],
        ["stats", "memory://"],
        ["copy", "memory://", "memory://", "--workers", "2", "--resume", "-q"],
    ],
)
def test_a_command_parses_as_the_whole_command_line_would(argv: list[str]) -> None:
    # The CLI builds only the parser of the command it runs: the same arguments come out.
    from pystorage import cli

    assert cli._command_named(argv) == next(word for word in argv if word[0] != "-")
    alone = cli.build_parser(cli._command_named(argv)).parse_args(argv)
    assert vars(alone) == vars(cli.build_parser().parse_args(argv))


def test_modules_are_reached_from_their_package() -> None:
    # ``import pystorage.layers`` used to load every layer module: their attributes stay.
    loaded_after(
        "import pystorage.layers, pystorage.codecs\n"
        "assert pystorage.layers.sqlite.SQLite is pystorage.layers.SQLite\n"
        "assert pystorage.layers.names.escape('a b') == 'a%20b'\n"
        "assert pystorage.codecs.compress.Gzip is pystorage.codecs.Gzip"
    )
