"""What a benchmark group reports: rows of ratios, each with an optional target."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from benchmarks.harness import Samples, paired_ratio

T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    """Run-wide options; ``pick(full, quick)`` chooses a size for the current mode."""

    quick: bool = False
    #: Where the file groups make their folders (None: the system's temp folder).
    scratch: str | None = None

    def pick(self, full: T, quick: T) -> T:
        return quick if self.quick else full


@dataclass(frozen=True)
class Target:
    """The ratio must be at most ``limit``; ``text`` says it in the reader's terms."""

    limit: float
    text: str = ""

    @property
    def label(self) -> str:
        return self.text or f"<= {self.limit:g}"

    def holds(self, ratio: float) -> bool:
        return ratio <= self.limit


@dataclass(frozen=True)
class Row:
    """One comparison: PyStorage's time per operation against an anchor's.

    ``ratio`` is PyStorage / anchor (lower is better) unless the anchor's description
    says otherwise; it is the median of per-round ratios when both were timed side by
    side.
    """

    operation: str
    pystorage_ns: float
    anchor: str
    anchor_ns: float
    ratio: float
    target: Target | None = None
    note: str = ""
    #: What the two figures are: "ns" (a time per operation, the usual), or "%" (a share,
    #: e.g. a miss ratio, where the ratio of two shares is compared the same way).
    unit: str = "ns"

    @property
    def holds(self) -> bool | None:
        return None if self.target is None else self.target.holds(self.ratio)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["holds"] = self.holds
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        """The row of ``to_dict`` (results.json), its target included."""
        target = data["target"]
        return cls(
            data["operation"],
            data["pystorage_ns"],
            data["anchor"],
            data["anchor_ns"],
            data["ratio"],
            None if target is None else Target(target["limit"], target["text"]),
            data["note"],
            data.get("unit", "ns"),
        )


def row(
    operation: str,
    mine: Samples,
    anchor: str,
    theirs: Samples,
    target: Target | None = None,
    note: str = "",
) -> Row:
    """A row from two subjects timed in the same :func:`~benchmarks.harness.compare`."""
    return Row(
        operation, mine.median, anchor, theirs.median, paired_ratio(mine, theirs), target, note
    )


def median_row(
    operation: str,
    mine: Samples,
    anchor: str,
    theirs: Samples,
    target: Target | None = None,
    note: str = "",
) -> Row:
    """A row whose ratio is the ratio of the two medians: for samples that are single
    events (an open, a whole multi-process run), where no two were truly side by side."""
    return Row(
        operation, mine.median, anchor, theirs.median, mine.median / theirs.median, target, note
    )


@dataclass
class GroupResult:
    """Everything one group measured, or why it was skipped."""

    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: str | None = None
    error: str | None = None
    seconds: float = 0.0
    #: When the group was kept from an earlier run (``--merge``): that run's date,
    #: command and machine; None when it was measured in the run that wrote it.
    earlier: dict[str, Any] | None = None
    #: Figures a group keeps for a chart of its own (e.g. the hit ratios of each policy).
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "seconds": round(self.seconds, 3),
            "skipped": self.skipped,
            "error": self.error,
            "notes": self.notes,
            "rows": [r.to_dict() for r in self.rows],
            "earlier": self.earlier,
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], run: dict[str, Any]) -> GroupResult:
        """A group of results.json, marked as measured in ``run`` (that file's context)
        unless it already was kept from an earlier one."""
        return cls(
            data["name"],
            data["title"],
            [Row.from_dict(r) for r in data["rows"]],
            list(data["notes"]),
            data["skipped"],
            data["error"],
            data["seconds"],
            data.get("earlier")
            or {key: run[key] for key in ("date", "command", "quick", "machine")},
            data.get("data", {}),
        )
