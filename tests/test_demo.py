"""make demo, the tour of every preset, keeps working: it runs here as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pystorage import StorageProvider

TOUR = Path(__file__).resolve().parent.parent / "demo" / "tour.py"


def test_the_tour_runs_every_preset() -> None:
    done = subprocess.run(
        [sys.executable, str(TOUR)], capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    presets = [name for name in vars(StorageProvider) if name.startswith("STORAGE_")]
    for preset in presets:
        assert preset in out
    assert '{"text": "Hello World!"}' in out
    assert "'key' in volatile after 1.1 s              False" in out
    assert "len after 150 writes with limit=100        100" in out
    assert "b'<p>Hello PyStorage</p>'" in out
    assert "8 threads called square(12); computed      1" in out
