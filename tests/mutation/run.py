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

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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
        ["pystorage/layers/sqlite.py", "pystorage/_gate.py"],
        [
            "tests/test_sqlite.py",
            "tests/test_fork_gate.py",
            # Tags' tokens, memoize's leases and the gauges of a bound, in SQLite: a fresh
            # run of 2026-12-08 found their functions reached by no test of the selection.
            "tests/test_tags.py",
            "tests/test_leases.py",
            "tests/test_metrics.py",
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
        # The children forked beside busy threads: a gate that lets a fork copy SQLite's
        # mutexes held fails them by chance; test_fork_gate's other tests, every time.
        # The reads cut short by signals: mutmut wraps ``enter`` in a function of its own,
        # where a signal handler's exception leaves the entry behind (``_gate.leave``).
        "killed or another_process or across_processes or racing or children_forked_while"
        " or signal_handlers_exception",
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
            "tests/test_tags.py",
            "tests/test_leases.py",
            "tests/conformance",
        ],
        # And the ten thousand threads' leak check: 17 of the 74 seconds the clean run
        # takes, run again for every mutant of the gate that survives. h/24x: also the
        # async stacks of the conformance, hostile-key and atomic tests (the same calls
        # to Files through OffLoop's threads, which the sync stacks make directly; OffLoop
        # is judged as aio_backend), the forked children (mutmut judges nothing a child
        # runs: tests/test_mutation_files.py renews the lock in the test's process), and
        # the add and incr over an entry that expires in a second of real time (the fake
        # clock's twins in tests/test_mutation_files.py check them at the exact deadline).
        # Of the 24 seconds of tests that judge each mutant of the gate, about 10 are left.
        # The tags' and leases' tests judge the tag tokens and lease files of Files; left
        # out of them: the leases of many processes (children again) and the tag records
        # of every backend (it starts Redis and S3: its Files part has a twin in
        # tests/test_mutation_files.py).
        "killed or another_process or across_processes or racing or ten_thousand"
        " or async- or forked or add_replaces_an_expired_entry"
        " or incr_starts_an_expired_entry_again or many_processes"
        " or tag_records_are_never_entries",
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
            # set/add/set_many with tags=, invalidate_tag, snapshot_tags and the checks
            # of a tags stack, on the server-free stacks.
            "tests/test_tags.py",
        ],
        "processes or another_process",
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
    # h/24x: the command line, every module of pystorage/cli/, judged by the tests that
    # run main() in the test's own process (tests/test_cli.py runs it in a child process
    # nearly everywhere: mutmut maps a test to the code its own process runs, so those
    # judge nothing, and are left out but for the three that call main() here).
    "cli": (
        ["pystorage/cli/*.py"],
        [
            "tests/test_mutation_cli.py",
            "tests/test_cli.py::test_a_copy_stopped_by_an_error_counts_what_it_wrote_and_what_it_did_not",
            "tests/test_cli.py::test_a_delete_stopped_by_an_error_says_what_may_still_be_in_src",
            # A copy keeps tags (SRC and DST with tags=1), or refuses to drop them.
            "tests/test_tags.py::test_copy_keeps_each_entrys_tags_and_time_left",
            "tests/test_tags.py::test_copy_from_tags_to_a_store_without_them_is_refused_before_dst_exists",
        ],
        "False",
    ),
}

# -- the modules of servers (h/24r) ---------------------------------------------------------
# Their tests need a Redis server, a Redis Cluster or an S3 server. A session fixture would
# start one per mutant (mutmut forks a fresh pytest session for each), so ``run`` starts
# them once around the whole mutmut run and hands them to every mutant's tests through the
# variables tests/conftest.py reads; they are stopped when mutmut ends, fails or is
# interrupted. A mutant that breaks a cleanup cannot fail the next mutant's tests: every
# test keeps to a prefix or a folder of its own (tests/helpers.unique, from os.urandom, so
# each forked run draws new names; the one fixed namespace, the old lock prefix of
# tests/test_redis.py, is emptied by its test first), each session makes its own S3
# bucket and ACL users, and the mutants run one at a time (below), so the tests that count
# the commands a server ran see only their own. pyproject.toml's ``-k`` is not kept for
# these modules: it leaves out every test of a server.
MODULES.update(
    {
        # The layer judged by its own tests, the shared bounds' (one process), and those of
        # the leases, tags, atomic operations, limits and the conformance suite over Redis.
        # Left out: the tests of several processes and forks (they judge only the test's
        # own process: the same calls the tests of one process make), the races of threads
        # (the retry of a WATCH another client broke is provoked in one thread by
        # tests/test_mutation_redis.py), the random operations of the conformance suite
        # (hypothesis: tens of seconds per stack), and tests/test_autopipeline.py and
        # tests/test_async_redis.py (bursts of hundreds of tasks, servers killed or moved
        # mid-burst: seconds each, of the async clients' pools and pipelines, not this layer).
        "redis": (
            ["pystorage/layers/redis.py"],
            [
                "tests/test_redis.py",
                "tests/test_mutation_redis.py",
                "tests/test_shared_bounds.py",
                "tests/test_leases.py",
                "tests/test_tags.py",
                "tests/test_atomic.py",
                "tests/test_limits.py",
                "tests/conformance",
            ],
            # (And these files' tests of the other backends.)
            "s3 or processes or forked or random_operations or another_process or restart "
            "or killed or race "
            "or ((test_mapping or test_leases or test_tags or test_atomic or test_limits) "
            "and not redis)",
        ),
        # The layer judged by its own tests and those of the atomic operations and leases
        # over S3 (sync only: OffLoop hands the async stacks the same calls). Left out, as
        # for Redis: several processes, races of threads (the conditional writes that lose
        # are provoked in one thread by tests/test_mutation_s3.py), the outage (it stops the
        # server); and, for a run that fits on a loaded machine, the tests of tags, limits,
        # hostile keys and the conformance suite over S3 (seconds each; what they ask of
        # this layer, tests/test_s3.py and tests/test_mutation_s3.py ask too).
        "s3": (
            ["pystorage/layers/s3.py"],
            [
                "tests/test_s3.py",
                "tests/test_mutation_s3.py",
                "tests/test_leases.py",
                "tests/test_atomic.py",
            ],
            "redis or processes or forked or another_process or restart or killed or race "
            "or outage or async or ((test_leases or test_atomic) and not s3)",
        ),
    }
)
#: The servers each module's run needs (see above): redis, redis_cluster, s3.
SERVERS: dict[str, tuple[str, ...]] = {"redis": ("redis", "redis_cluster"), "s3": ("s3",)}


@contextlib.contextmanager
def servers_up(module: str) -> Iterator[None]:
    """The servers of ``module`` running (in a process of their own: servers.py), named in
    the environment that its tests read; stopped when the block ends, however it ends."""
    if not SERVERS.get(module):
        yield
        return
    keeper = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("servers.py")), *SERVERS[module]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert keeper.stdin is not None and keeper.stdout is not None
        line = keeper.stdout.readline()
        if not line:
            sys.exit(f"MODULE={module}: its servers did not start (see above)")
        os.environ.update(json.loads(line))
        yield
    finally:
        if keeper.stdin is not None:
            keeper.stdin.close()  # the keeper stops the servers and exits
        try:
            keeper.wait(60)
        except subprocess.TimeoutExpired:
            keeper.kill()
            keeper.wait()


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
        # With its servers up, the tests of servers are the point: pyproject's -k goes.
        f"not ({left_out})" if module in SERVERS else f"({kept}) and not ({left_out})",
    ]


if __name__ == "__main__":
    if sys.argv[1:] == ["--list"]:  # what a plain `make mutation` runs, one after another
        print("core", *MODULES)
        sys.exit(0)
    if os.environ.get("MODULE"):
        narrow(os.environ["MODULE"])
    if sys.argv[1:2] == ["run"]:  # results and show read the last run: no server
        module = os.environ.get("MODULE", "core")
        if module in SERVERS and "--max-children" in sys.argv:
            # One mutant at a time on the shared servers: some tests count the commands
            # the server ran (INFO commandstats), which another mutant's would disturb.
            sys.argv[sys.argv.index("--max-children") + 1] = "1"
        with servers_up(module):
            cli(sys.argv[1:])
    cli(sys.argv[1:])
