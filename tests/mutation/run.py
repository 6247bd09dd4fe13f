"""mutmut, narrowed to one module and its tests when ``MODULE`` is set (``make mutation
MODULE=...``).

mutmut reads its configuration from ``[tool.mutmut]`` in ``pyproject.toml`` only, and that
selection (every server-free module, every server-free test) is what a plain
``make mutation`` runs. A run of one module needs neither the other modules' mutants nor
the clean run of their tests that maps each test to the code it reaches: here the loaded
configuration is narrowed before mutmut starts, and mutmut forks (never re-reads the
file) for its workers, so they see the narrowed one. ``score.py`` calls mutmut through
this script too, so ``results`` and ``show`` see the same selection as the run.

Usage: ``MODULE=sqlite python tests/mutation/run.py run --max-children 1``; with
``MODULE=core`` or without ``MODULE``, exactly ``mutmut`` with the configuration of
``pyproject.toml``; ``--list`` prints the modules.
"""

from __future__ import annotations

import os
import sys

from mutmut.__main__ import cli
from mutmut.configuration import config

# Each module: the files mutmut changes, the tests that judge its mutants, and the tests
# among them left out (a ``-k`` expression, added to pyproject.toml's, which leaves out
# the tests of servers, races and several processes): tests that fork or start children
# judge only what the test's own process runs (mutmut maps a test to that code alone),
# which the tests of one process cover in a fraction of the time. The tests marked
# ``long`` are the quick ones at a larger scale: left out too.
MODULES: dict[str, tuple[list[str], list[str], str]] = {
    "sqlite": (
        ["pystorage/layers/sqlite.py"],
        [
            "tests/test_sqlite.py",
            "tests/test_mutation_sqlite.py",
            "tests/test_review_findings.py",
            "tests/test_sqlite_shared.py",
            "tests/test_limits.py",
            "tests/test_limit_index.py",
            "tests/test_atomic.py",
            "tests/test_tier.py",
            "tests/test_ttl_bound.py",
            "tests/test_hostile_keys.py",
            "tests/conformance",
        ],
        "killed or another_process or across_processes or racing",
    ),
    "files": (
        ["pystorage/layers/files.py"],
        [
            "tests/test_files.py",
            "tests/test_mutation_files.py",
            "tests/test_other_users.py",
            "tests/test_hostile_keys.py",
            "tests/test_hostile_deadlines.py",
            "tests/test_crash.py",
            "tests/test_limits.py",
            "tests/test_atomic.py",
            "tests/conformance",
        ],
        # And the ten thousand threads' leak check: 17 of the 74 seconds the clean run
        # takes, run again for every mutant of the gate that survives.
        "killed or another_process or across_processes or racing or ten_thousand",
    ),
    "stats": (
        ["pystorage/layers/stats.py"],
        ["tests/test_stats.py", "tests/test_mutation_stats.py"],
        "False",
    ),
    # Every test goes through a Storage: those of the facade itself, of the atomic
    # operations and of the dict model judge it; the others would only repeat them.
    "storage": (
        # The argument checks of Storage (ttl, incr's delta) live in interface.py.
        ["pystorage/storage.py", "pystorage/interface.py"],
        [
            "tests/test_storage.py",
            "tests/test_mutation_storage.py",
            "tests/test_atomic.py",
            "tests/test_model.py",
        ],
        "processes",
    ),
    # The presets, judged by what each builds and writes; the server tests of
    # tests/test_provider.py are left out (the stacks they build are checked without one).
    "storage_provider": (
        ["pystorage/storage_provider.py"],
        ["tests/test_provider.py", "tests/test_mutation_storage_provider.py"],
        "every_preset_name_builds",
    ),
    # URLs, judged by what parse reads and build makes; the tests that open a URL in a
    # child process (another user, a full disk) are left out.
    "urls": (
        ["pystorage/urls.py"],
        ["tests/test_urls.py", "tests/test_mutation_urls.py"],
        "unreadable_folder or untraversable or full_disk",
    ),
    # OffLoop, judged by its own tests and the async facade's; left out: the races of a
    # thousand tasks and the loop kept answering (seconds each, what they check of OffLoop
    # the tests of one task check too), and the tests of several processes.
    "aio_backend": (
        ["pystorage/aio/backend.py"],
        ["tests/test_async.py", "tests/test_mutation_aio_backend.py"],
        "thousand_concurrent or keeps_answering or across_processes",
    ),
    # memoize, judged on the server-free backends: its lock across processes is the
    # backend's key_lock (a lease on Files, SQLite, S3 and Redis alike), which memoize only
    # enters, so one process shows which key it locks. Left out: the tests of several
    # processes (the leases, the keys of other runs: seconds each; the key they check is
    # pinned in one process by tests/test_mutation_memoize.py), those that fork a child
    # during a call, and the races of a thousand tasks.
    "memoize": (
        ["pystorage/memoize.py"],
        [
            "tests/test_memoize.py",
            "tests/test_mutation_memoize.py",
            "tests/test_stampede.py",
            "tests/test_review_session.py",
            "tests/test_async.py",
            "tests/test_mutation_storage.py",
            "tests/test_ttl_bound.py",
            "tests/test_protocol.py",
            "tests/test_tags.py::test_memoize_tags_from_the_arguments_and_a_static_list",
            "tests/test_tags.py::test_memoize_stores_as_missing_what_an_invalidation_overtook",
            "tests/test_tags.py::test_async_memoize_with_tags",
            "tests/test_tags.py::test_memoize_with_refresh_and_tags",
        ],
        "other_processes or across_processes or child_forked or thousand_concurrent"
        " or keeps_answering",
    ),
    # AsyncStorage, judged by its own tests, the async facade's, the twins of a user's
    # layers and the conformance suite on every server-free async stack (its sync stacks
    # never reach it). The Redis twin is built without a server (redis-py connects at the
    # first command); what its commands do is for tests/test_async_redis.py, with a
    # server. Left out as for aio_backend: the races of a thousand tasks, the loop kept
    # answering, the tests of several processes.
    "aio_storage": (
        ["pystorage/aio/storage.py"],
        [
            "tests/test_async.py",
            "tests/test_mutation_aio_storage.py",
            "tests/test_user_layers.py",
            "tests/conformance",
        ],
        "thousand_concurrent or keeps_answering or across_processes"
        " or (test_mapping and not async)",
    ),
}


def narrow(module: str) -> None:
    """Make the loaded configuration mutate ``module`` only, judged by its tests only
    (``core``: pyproject.toml's configuration as it is)."""
    if module == "core":
        return
    if module not in MODULES:
        sys.exit(f"MODULE={module}: not one of core, {', '.join(MODULES)}")
    files, tests, left_out = MODULES[module]
    loaded = config()
    selection = loaded.pytest_add_cli_args_test_selection
    kept = selection[selection.index("-k") + 1] if "-k" in selection else "True"
    loaded.only_mutate = files
    loaded.pytest_add_cli_args_test_selection = [
        *tests,
        "-m",
        "not long",
        "-k",
        f"({kept}) and not ({left_out})",
    ]


if __name__ == "__main__":
    if sys.argv[1:] == ["--list"]:  # what a plain `make mutation` runs, one after another
        print("core", *MODULES)
        sys.exit(0)
    if os.environ.get("MODULE"):
        narrow(os.environ["MODULE"])
    cli(sys.argv[1:])
