"""Tables for the terminal and for results.md, results.json, and the run's context."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.model import GroupResult, Row

HEADER = ("operation", "PyStorage", "anchor", "anchor time", "ratio", "target", "holds", "note")
LIBRARIES = (
    "pystorage-layers", "attrs", "cachetools", "lru-dict", "diskcache", "msgpack", "zstandard",
    "redis", "boto3", "matplotlib",
)  # fmt: skip


@dataclass
class Run:
    """The context of one run: where, when, how, and what each group found."""

    quick: bool
    command: str = field(default_factory=lambda: shlex.join(getattr(sys, "orig_argv", sys.argv)))
    date: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    machine: dict[str, Any] = field(default_factory=lambda: machine())
    groups: list[GroupResult] = field(default_factory=list)
    seconds: float = 0.0

    def rows(self) -> list[Row]:
        return [r for group in self.groups for r in group.rows]

    def keep(self, file: Path, order: Sequence[str]) -> None:
        """Add the groups of an earlier results.json that this run did not measure, each
        marked with the run it comes from, in the order of ``order`` (group names)."""
        if not file.is_file():
            return
        earlier = json.loads(file.read_text(encoding="utf-8"))
        ran = {group.name for group in self.groups}
        self.groups += [
            GroupResult.from_dict(group, earlier)
            for group in earlier["groups"]
            if group["name"] not in ran
        ]
        rank = {name: index for index, name in enumerate(order)}
        self.groups.sort(key=lambda group: rank.get(group.name, len(rank)))

    def kept(self) -> list[GroupResult]:
        return [group for group in self.groups if group.earlier]

    def to_dict(self) -> dict[str, Any]:
        return {
            "quick": self.quick,
            "command": self.command,
            "date": self.date,
            "seconds": round(self.seconds, 1),
            "machine": self.machine,
            "summary": summary(self.rows()),
            "groups": [group.to_dict() for group in self.groups],
        }


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "libraries": {name: _version(name) for name in LIBRARIES},
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def duration(ns: float) -> str:
    """A time per operation in the unit that keeps it readable: 48 ns, 3.21 µs, 1.05 ms."""
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.0f} ns"


def figure(value: float, unit: str) -> str:
    """A row's figure: a duration, or a share in percent."""
    return duration(value) if unit == "ns" else f"{value:.1f} {unit}"


def ratio(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def cells(r: Row) -> tuple[str, ...]:
    holds = {None: "", True: "yes", False: "NO"}[r.holds]
    target = r.target.label if r.target else ""
    return (
        r.operation, figure(r.pystorage_ns, r.unit), r.anchor, figure(r.anchor_ns, r.unit),
        ratio(r.ratio), target, holds, r.note,
    )  # fmt: skip


def summary(rows: Sequence[Row]) -> dict[str, Any]:
    checked = [r for r in rows if r.target is not None]
    missed = [r for r in checked if not r.holds]
    return {
        "targets": len(checked),
        "hold": len(checked) - len(missed),
        "missed": [f"{r.operation} vs {r.anchor}: {ratio(r.ratio)}" for r in missed],
    }


def text_table(group: GroupResult) -> str:
    rows = [HEADER, *(cells(r) for r in group.rows)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)) for r in rows
    ]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines)


def markdown(run: Run) -> str:
    info = run.machine
    done = summary(run.rows())
    lines = [
        "# PyStorage benchmarks"
        + (" (quick mode: tiny sizes, not for reading)" if run.quick else ""),
        "",
        f"- Date: {run.date}",
        f"- Command: `{run.command}` (in `{os.getcwd()}`), {run.seconds:.0f} s",
        *_kept_lines(run),
        f"- Machine: {info['platform']}, {info['cpu']}, {info['cpu_count']} CPUs",
        f"- Python: {info['python']}",
        f"- Load average (1, 5, 15 min) at start: {info['load_average_at_start']}, at end: "
        f"{[round(x, 2) for x in os.getloadavg()]} (other processes share these CPUs)",
        "- Libraries: " + ", ".join(f"{k} {v}" for k, v in info["libraries"].items()),
        f"- Targets: {done['hold']} of {done['targets']} hold",
        "",
        "Each group runs in this one process (the groups that time opens or several "
        "processes start children of their own: their notes say how). Every subject is "
        "warmed up, then timed with `time.perf_counter_ns` over several rounds of many "
        "calls, the rounds of PyStorage and its anchors interleaved (their order rotated "
        "each round) so that noise hits both alike; times are medians of the per-round time "
        "per operation, and a ratio is the median of the per-round ratios PyStorage / "
        "anchor: lower is better.",
        "",
    ]
    if done["missed"]:
        lines += ["Missed targets:", "", *(f"- {miss}" for miss in done["missed"]), ""]
    for number, group in enumerate(run.groups, 1):
        lines += [f"## {number}. {group.title}", ""]
        if group.earlier:
            lines += [
                f"Kept from the run of {group.earlier['date']} (`{group.earlier['command']}`, "
                f"load average at its start {group.earlier['machine']['load_average_at_start']}"
                "): not re-run in this one.",
                "",
            ]
        if group.skipped:
            lines += [f"Skipped: {group.skipped}", ""]
        if group.error:
            lines += ["Failed:", "", "```", group.error.rstrip(), "```", ""]
        if group.rows:
            lines += [_markdown_row(HEADER), _markdown_row(("---",) * 4 + ("---:",) + ("---",) * 3)]
            lines += [_markdown_row(cells(r)) for r in group.rows]
            lines.append("")
        lines += [*group.notes, f"Group time: {group.seconds:.1f} s.", ""]
    return "\n".join(lines)


def _kept_lines(run: Run) -> list[str]:
    by_run: dict[tuple[str, str], list[str]] = {}
    for group in run.kept():
        if group.earlier:
            source = (group.earlier["date"], group.earlier["command"])
            by_run.setdefault(source, []).append(f"`{group.name}`")
    if not by_run:
        return []
    total = sum(group.seconds for group in run.groups)
    return [
        *(
            f"- Kept from the run of {date} (`{command}`), not re-run (`--merge`): "
            + ", ".join(names)
            for (date, command), names in by_run.items()
        ),
        f"- Every group's own time, added up: {total:.0f} s",
    ]


def _markdown_row(values: Sequence[str]) -> str:
    return "| " + " | ".join(value.replace("|", "\\|") for value in values) + " |"


def write(run: Run, folder: Path) -> list[Path]:
    from benchmarks.chart import draw, draw_hit_ratios

    folder.mkdir(parents=True, exist_ok=True)
    json_file = folder / "results.json"
    json_file.write_text(json.dumps(run.to_dict(), indent=2, ensure_ascii=False) + "\n")
    md_file = folder / "results.md"
    md_file.write_text(markdown(run))
    png_file = folder / "results.png"
    draw(run, png_file)
    written = [json_file, md_file, png_file]
    hit_ratios = {
        trace: ratios for g in run.groups for trace, ratios in g.data.get("hit_ratios", {}).items()
    }
    if hit_ratios:
        written.append(folder / "hit_ratios.png")
        draw_hit_ratios(hit_ratios, written[-1])
    return written
