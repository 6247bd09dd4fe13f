"""The mutation score of each core module, from the last ``mutmut run`` (``make mutation``).

A mutant counts as detected when its tests failed or ran out of time. The mutants listed
in EQUIVALENT.md (next to this file) are left out of the score, once it is checked that
each still exists, still makes the change recorded there and still survives: a list that
no longer matches the code is an error, not a silent discount. Exits non-zero when a
module scores below the goal or the list is out of date.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

GOAL = 95.0
EQUIVALENT = Path(__file__).with_name("EQUIVALENT.md")
# mutmut through run.py, so that results and show see the selection of the run (MODULE).
MUTMUT = [sys.executable, str(Path(__file__).with_name("run.py"))]
DETECTED = ("killed", "timeout")


def _mutmut(*args: str) -> str:
    return subprocess.run([*MUTMUT, *args], capture_output=True, text=True, check=True).stdout


def statuses() -> dict[str, str]:
    """Every mutant of the last run and what became of it (killed, survived, ...)."""
    found = {}
    for line in _mutmut("results", "--all", "true").splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep:
            found[name] = status
    return found


def equivalents() -> dict[str, str]:
    """Each mutant listed in EQUIVALENT.md, with the mutated line recorded for it."""
    rows = re.findall(r"^\| `([^`]+)` \| `(.+?)` \|", EQUIVALENT.read_text(), re.MULTILINE)
    return dict(rows)


def mutated_line(name: str) -> str:
    """The line(s) the mutant puts in place of the original, as ``mutmut show`` gives them."""
    shown = _mutmut("show", name).splitlines()
    return " / ".join(line[1:].strip() for line in shown if line[:1] == "+" and line[:3] != "+++")


def module_of(name: str) -> str:
    match = re.match(r"(.+?)\.x[_\u01c1]", name)
    return match.group(1) if match else name


def main() -> int:
    found = statuses()
    listed = equivalents()
    problems = []
    run = {module_of(name) for name in found}
    for name, line in listed.items():
        if module_of(name) not in run:
            continue  # a module this run left out (make mutation MODULE=...)
        if name not in found:
            problems.append(f"{name}: listed as equivalent but no longer a mutant")
        elif found[name] != "survived":
            problems.append(f"{name}: listed as equivalent but {found[name]}: remove it")
        elif mutated_line(name) != line:
            problems.append(f"{name}: now changes `{mutated_line(name)}`, not `{line}`")

    counts: dict[str, Counter[str]] = {}
    for name, status in found.items():
        kind = "equivalent" if name in listed and status == "survived" else status
        counts.setdefault(module_of(name), Counter())[kind] += 1
    columns = ["killed", "timeout", "equivalent", "survived", "no tests"]
    print(f"{'module':32} {'mutants':>7} " + " ".join(f"{c:>10}" for c in columns) + "  score")
    total: Counter[str] = Counter()
    failing = []
    for module in sorted(counts):
        count = counts[module]
        total.update(count)
        score = _score(count)
        print(_row(module, count, columns, score))
        if score < GOAL:
            failing.append(module)
    print(_row("all", total, columns, _score(total)))

    survivors = [n for n, s in found.items() if s != "survived" and s not in DETECTED]
    survivors += [n for n, s in found.items() if s == "survived" and n not in listed]
    for name in sorted(survivors):
        print(f"not detected: {name} ({found[name]}): {mutated_line(name)}")
    for problem in problems:
        print(f"EQUIVALENT.md: {problem}")
    if failing:
        print(f"below {GOAL}%: {', '.join(failing)}")
    return 1 if failing or problems else 0


def _score(count: Counter[str]) -> float:
    judged = sum(count.values()) - count["equivalent"]
    return 100.0 * sum(count[kind] for kind in DETECTED) / judged if judged else 100.0


def _row(module: str, count: Counter[str], columns: list[str], score: float) -> str:
    cells = " ".join(f"{count[c]:>10}" for c in columns)
    return f"{module:32} {sum(count.values()):>7} {cells}  {score:5.1f}%"


if __name__ == "__main__":
    sys.exit(main())
