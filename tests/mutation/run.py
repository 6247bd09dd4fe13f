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
        ],
        "False",
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
