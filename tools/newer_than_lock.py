"""`make test-latest`: which installed packages (``uv pip freeze`` on stdin) differ from
the lock given as the argument, so that a failure of the newest releases names its
suspects. Prints one line per package; exits 0 either way."""

from __future__ import annotations

import re
import sys
from pathlib import Path

#: What a new venv comes with, not what the project asks for.
VENV_OWN = {"pip", "setuptools", "pystorage-layers"}
PIN = re.compile(r"^([A-Za-z0-9._-]+)(?:\[[^]]*\])?==([^\s;]+)")


def pins(lines: list[str]) -> dict[str, str]:
    found = {}
    for line in lines:
        match = PIN.match(line.strip())
        if match:
            found[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return found


def main() -> None:
    locked = pins(Path(sys.argv[1]).read_text().splitlines())
    installed = pins(sys.stdin.read().splitlines())
    changed = [
        f"  {name}: {locked.get(name, 'not in the lock')} -> {version}"
        for name, version in sorted(installed.items())
        if locked.get(name) != version and name not in VENV_OWN
    ]
    print(f"newer than {sys.argv[1]}: {len(changed)} package(s)")
    print("\n".join(changed))


if __name__ == "__main__":
    main()
