"""The command line: ``python -m benchmarks [--quick] [--group NAME] [--out DIR]``."""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from benchmarks.groups import GROUPS, Group
from benchmarks.model import GroupResult, Settings
from benchmarks.report import Run, text_table, write

RESULTS = Path(__file__).resolve().parent / "results"


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time PyStorage against its anchors and write results.json, "
        "results.md and results.png. Misses are reported, never fatal: the exit status "
        "is non-zero only if a group crashed.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes and few rounds, S3 skipped: seconds, for `make test`; asserts "
        "nothing about speed; results go to benchmarks/results/quick/ (gitignored) "
        "unless --out is given",
    )
    parser.add_argument(
        "--group",
        action="append",
        choices=[group.name for group in GROUPS],
        metavar="NAME",
        help="run this group only (repeatable): " + ", ".join(g.name for g in GROUPS),
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="keep the results of the groups not run now from the results.json already in "
        "the output folder (each marked with the run it comes from), and rewrite the files "
        "with both: for re-running some groups without losing the others'",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="folder for the results (default: benchmarks/results)",
    )
    parser.add_argument(
        "--tmp",
        metavar="DIR",
        help="where the files and scaling groups create their folders (default: the "
        "system temp folder, as the presets do)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    settings = Settings(quick=args.quick, scratch=args.tmp)
    out = args.out or (RESULTS / "quick" if args.quick else RESULTS)
    chosen = [g for g in GROUPS if not args.group or g.name in args.group]
    run = Run(quick=args.quick)
    began = time.perf_counter()
    for group in chosen:
        run.groups.append(run_group(group, settings))
    run.seconds = time.perf_counter() - began
    if args.merge:
        run.keep(out / "results.json", [group.name for group in GROUPS])
    for file in write(run, out):
        print(f"wrote {file}")
    failed = [g.name for g in run.groups if g.error]
    print(f"done in {run.seconds:.1f} s" + (f"; crashed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def run_group(group: Group, settings: Settings) -> GroupResult:
    result = GroupResult(group.name, group.title)
    print(f"\n== {group.title}", flush=True)
    began = time.perf_counter()
    try:
        group.run(settings, result)
    except Exception:
        result.error = traceback.format_exc()
        print(result.error, file=sys.stderr)
    result.seconds = time.perf_counter() - began
    if result.skipped:
        print(f"{group.label} group: {result.skipped}")
    if result.rows:
        print(text_table(result))
    for note in result.notes:
        print(note)
    print(f"({result.seconds:.1f} s)", flush=True)
    return result
