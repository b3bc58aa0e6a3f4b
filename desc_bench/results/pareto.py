"""Accuracy against speed: per benchmark, the headline number against throughput, and its Pareto front.

Both numbers come from one record: the benchmark's ranking headline (the one its summary table
sorts by) and the descriptor's timing row of that record (patches/s for patch benchmarks, images/s
for a benchmark timed per image) at the record's own batch size and device; a descriptor without
a timing row in the same record is left out (never joined with another record's speed). A
descriptor is on the front when no other one is at least as accurate and at least as fast, and
strictly better in one (the headline's ``higher_is_better``: False for FPR95).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from tabulate import tabulate

from ..bench.benchmarks.base import Benchmark, registered
from ..io.atomic import atomic_path
from ..records.schema import Record
from .tables import run_time_batch


@dataclass(frozen=True)
class Point:
    descriptor: str
    value: float
    per_second: float
    interval: tuple[float, float] | None = None
    front: bool = False


@dataclass(frozen=True)
class Panel:
    """One benchmark's headline on one dataset, device and batch size."""

    benchmark: str
    headline: str
    higher_is_better: bool
    dataset: str
    split: str
    device: str
    batch: int
    unit: str
    points: tuple[Point, ...]


def _rank_headline(cls: type[Benchmark]):
    return cls.headlines[min(1, len(cls.headlines) - 1)] if cls.headlines else None


def mark_front(points: list[Point], lower_is_better: bool = False) -> list[Point]:
    """The points, each marked whether it is on the Pareto front (higher accuracy and speed win)."""
    sign = -1.0 if lower_is_better else 1.0

    def dominated(p: Point) -> bool:
        return any(
            sign * q.value >= sign * p.value
            and q.per_second >= p.per_second
            and (sign * q.value > sign * p.value or q.per_second > p.per_second)
            for q in points
        )

    return [replace(p, front=not dominated(p)) for p in points]


def panels(records: Iterable[Record]) -> list[Panel]:
    """Every benchmark with at least two timed descriptors in one record, as a panel."""
    classes = registered()
    groups: dict[tuple, dict[str, Point]] = {}
    for record in records:
        batch, device = run_time_batch(record), str(record.metadata.get("device", ""))
        for row in record.results:
            cls = classes.get(row.protocol)
            headline = _rank_headline(cls) if cls else None
            if headline is None or not headline.matches(row):
                continue
            unit = cls.time_unit or "image"
            speeds = [
                t.per_second
                for t in record.timings
                if t.error is None and t.descriptor == row.descriptor and t.unit == unit and t.per_second
                and t.batch == (batch if unit == "patch" else t.batch) and t.device == device
            ]  # fmt: skip
            if speeds:
                key = (cls.name, headline.label, headline.higher_is_better, row.dataset, row.split, device, batch, unit)
                setting = headline.setting(row)
                label = f"{row.descriptor} ({setting})" if setting else row.descriptor
                groups.setdefault(key, {})[label] = Point(label, row.value, speeds[0], row.interval)
    out = []
    for key, found in groups.items():
        if len(found) >= 2:
            pts = mark_front(sorted(found.values(), key=lambda p: p.per_second), lower_is_better=not key[2])
            out.append(Panel(*key, points=tuple(pts)))
    return out


def _value(panel: Panel, value: float) -> str:
    return f"{value * 100:.2f}"


def _timed_at(panel: Panel) -> str:
    if panel.unit == "patch":
        return f"{panel.device}, batch {panel.batch}"
    return f"{panel.device}, one {panel.unit} a call"


def front_table(found: list[Panel]) -> str:
    """Markdown: the descriptors on each panel's front, fastest first."""
    body = []
    for p in found:
        for point in sorted((q for q in p.points if q.front), key=lambda q: -q.per_second):
            body.append(
                [f"{p.benchmark} / {p.dataset}", p.headline, point.descriptor, _value(p, point.value)]
                + [f"{point.per_second:,.{0 if point.per_second >= 100 else 1}f}", _timed_at(p)]
            )
    header = ["benchmark / dataset", "headline (%)", "descriptor on the front", "value", "per second", "timed at"]
    return tabulate(body, headers=header, tablefmt="github", disable_numparse=True)


def plot_pareto(found: list[Panel], path: Path | str) -> Path:
    """PNG: one panel per benchmark, headline (with its interval) against throughput (log scale);
    front points filled and joined, the others hollow, every point labelled."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(max(6.5, 5.2 * len(found)), 4.6), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(found), squeeze=False)[0]
    for ax, panel in zip(axes, found):
        for p in panel.points:
            low, high = p.interval or (p.value, p.value)
            ax.errorbar(
                p.per_second, p.value * 100, yerr=[[(p.value - low) * 100], [(high - p.value) * 100]],
                fmt="o", color="C0" if p.front else "0.5", mfc="C0" if p.front else "white", capsize=3, zorder=3,
            )  # fmt: skip
            ax.annotate(p.descriptor, (p.per_second, p.value * 100), textcoords="offset points", xytext=(5, 5))
        front = sorted((p for p in panel.points if p.front), key=lambda p: p.per_second)
        ax.plot([p.per_second for p in front], [p.value * 100 for p in front], color="C0", linewidth=1.2, zorder=2)
        ax.set_xscale("log")
        unit = "patches" if panel.unit == "patch" else f"{panel.unit}s"
        batch = f", batch {panel.batch}" if panel.unit == "patch" else ""
        ax.set_xlabel(f"{unit} per second ({panel.device}{batch})")
        ax.margins(x=0.25)  # room for the labels
        better = "higher is better" if panel.higher_is_better else "lower is better"
        ax.set_ylabel(f"{panel.headline} (%, {better})")
        ax.set_title(f"{panel.benchmark} on {panel.dataset}", fontsize=11)
        ax.grid(alpha=0.3)
    figure.suptitle("Accuracy against speed\nfilled: on the Pareto front; bars: confidence intervals", fontsize=11)
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    return path
