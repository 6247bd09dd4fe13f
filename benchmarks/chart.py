"""results.png: per group, one horizontal bar per target, with the target marked."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after use("Agg"): no display needed
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
from matplotlib.transforms import blended_transform_factory

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from benchmarks.model import Row
    from benchmarks.report import Run

HOLDS, MISSES = "#3a923a", "#d0433b"
ROW_INCHES = 0.32


def draw(run: Run, file: Path) -> None:
    groups = [(g.title, [r for r in g.rows if r.target]) for g in run.groups]
    groups = [(title, rows) for title, rows in groups if rows]
    if not groups:
        groups = [("no targets measured", [])]
    heights = [max(len(rows), 1) * ROW_INCHES + 0.9 for _, rows in groups]
    figure, axes = plt.subplots(
        len(groups),
        1,
        figsize=(13, sum(heights) + 0.6),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, (title, rows) in zip(axes[:, 0], groups, strict=True):
        _panel(ax, title, rows)
    mode = "quick mode, tiny sizes: not for reading" if run.quick else run.date
    figure.suptitle(
        f"PyStorage / anchor (lower is better); green: target holds, red: missed; "
        f"| marks the target\n{run.machine['cpu']}, {run.machine['cpu_count']} CPUs, "
        f"{run.machine['python']}, {mode}",
        fontsize=10,
    )
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.45 / (sum(heights) + 0.6)))
    figure.savefig(file, dpi=110)
    plt.close(figure)


def _panel(ax: Axes, title: str, rows: list[Row]) -> None:
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    if not rows:
        ax.axis("off")
        return
    positions = range(len(rows))
    ratios = [r.ratio for r in rows]
    colors = [HOLDS if r.holds else MISSES for r in rows]
    ax.barh(positions, ratios, color=colors, height=0.65)
    limits = [r.target.limit for r in rows if r.target]
    ax.scatter(limits, positions, marker="|", s=260, color="black", linewidths=2, zorder=3)
    values = ratios + limits
    if max(values) / min(values) > 8:
        ax.set_xscale("log")
        ax.set_xlim(min(values) / 1.5, max(values) * 1.5)
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_xlim(0, max(values) * 1.1)
    # The values in a column right of the panel, clear of the bars and target marks.
    side = blended_transform_factory(ax.transAxes, ax.transData)
    for y, r in zip(positions, rows, strict=True):
        mark = "" if r.holds else "  missed"
        ax.text(1.01, y, f"{r.ratio:.3g}{mark}", transform=side, va="center", fontsize=8)
    ax.set_yticks(list(positions), [_label(r) for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)


def _label(r: Row) -> str:
    anchor = r.anchor.split(":")[0].split(" (")[0]
    return f"{r.operation}  vs  {anchor}"
