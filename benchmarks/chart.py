"""results.png: per group, one horizontal bar per row, with the target marked where the row
has one (grey bars: figures reported without a target). hit_ratios.png: per trace and
cache size, the hit ratio of every policy, the optimal marked."""

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

HOLDS, MISSES, REPORTED = "#3a923a", "#d0433b", "#9a9a9a"
ROW_INCHES = 0.27
TITLE_INCHES = 0.6  # the two lines of the figure's title, above the first panel


def draw(run: Run, file: Path) -> None:
    groups = [(g.title, g.rows) for g in run.groups if g.rows]
    if not groups:
        groups = [("nothing measured", [])]
    heights = [max(len(rows), 1) * ROW_INCHES + 0.9 for _, rows in groups]
    tall = sum(heights) + TITLE_INCHES
    figure, axes = plt.subplots(
        len(groups),
        1,
        figsize=(13, tall),
        gridspec_kw={"height_ratios": heights},
        squeeze=False,
    )
    for ax, (title, rows) in zip(axes[:, 0], groups, strict=True):
        _panel(ax, title, rows)
    mode = "quick mode, tiny sizes: not for reading" if run.quick else run.date
    if run.kept():
        mode += f" ({len(run.kept())} groups kept from earlier runs: see results.md)"
    figure.suptitle(
        f"PyStorage / anchor (lower is better); green: target holds, red: missed, "
        "grey: reported (no target); | marks the target\n"
        f"{run.machine['cpu']}, {run.machine['cpu_count']} CPUs, {run.machine['python']}, {mode}",
        fontsize=10,
        # Placed in inches from the top: a fraction of the figure's height would drift
        # into the first panel as the figure grows.
        y=1 - 0.1 / tall,
        va="top",
    )
    figure.tight_layout(rect=(0, 0, 1, 1 - TITLE_INCHES / tall))
    figure.savefig(file, dpi=110)
    plt.close(figure)


def _panel(ax: Axes, title: str, rows: list[Row]) -> None:
    ax.set_title(title, loc="left", fontsize=11, fontweight="bold")
    if not rows:
        ax.axis("off")
        return
    positions = range(len(rows))
    ratios = [r.ratio for r in rows]
    colors = [{True: HOLDS, False: MISSES, None: REPORTED}[r.holds] for r in rows]
    ax.barh(positions, ratios, color=colors, height=0.65)
    marked = [(r.target.limit, y) for y, r in zip(positions, rows, strict=True) if r.target]
    limits = [limit for limit, _ in marked]
    ax.scatter(
        limits, [y for _, y in marked], marker="|", s=220, color="black", linewidths=2, zorder=3
    )
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
        mark = "  missed" if r.holds is False else ""
        ax.text(1.01, y, f"{r.ratio:.3g}{mark}", transform=side, va="center", fontsize=8)
    ax.set_yticks(list(positions), [_label(r) for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)


def _label(r: Row) -> str:
    anchor = r.anchor.split(":")[0].split(" (")[0]
    return f"{r.operation}  vs  {anchor}"


def draw_hit_ratios(traces: dict[str, dict[str, float]], file: Path) -> None:
    """One panel per trace and size: a bar per policy (PyStorage's in green), the optimal
    hit ratio as a dashed line."""
    figure, axes = plt.subplots(len(traces), 1, figsize=(9, 1.9 * len(traces) + 0.6), squeeze=False)
    for ax, (trace, ratios) in zip(axes[:, 0], traces.items(), strict=True):
        policies = [name for name in ratios if name != "optimal"]
        values = [ratios[name] for name in policies]
        colours = [HOLDS if name in ("LRU", "TinyLFU") else REPORTED for name in policies]
        ax.barh(policies, values, color=colours)
        ax.axvline(ratios["optimal"], color="black", linestyle="--", linewidth=1)
        for index, value in enumerate(values):
            ax.text(value + 0.5, index, f"{value:.1f}", va="center", fontsize=7)
        ax.set_xlim(0, 100)
        ax.invert_yaxis()
        ax.tick_params(labelsize=7)
        ax.set_title(
            f"{trace}: hit ratio, % (dashed: optimal, {ratios['optimal']:.1f})", fontsize=8
        )
    figure.suptitle("Hit ratios; green: PyStorage's policies", fontsize=10)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.4 / figure.get_figheight()))
    figure.savefig(file, dpi=100)
    plt.close(figure)
