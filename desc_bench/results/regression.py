"""Compare a run with a baseline: accuracy drops and normalised slow-downs, as a markdown diff.

Accuracy rows are matched on everything but the value (:meth:`ResultRow.key`); a drop larger than
the tolerance (absolute, values are fractions: 0.005 = half a point) fails. Speed rows are matched
on descriptor, device, batch and input size, and compared after dividing each median by the
calibration workload timed in the same process (so a slower machine does not read as a
regression); a ratio above ``1 + tolerance`` fails. Rows present on one side only are reported:
missing rows fail (a metric that vanished is a regression), new rows do not.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass

from tabulate import tabulate

from ..errors import DescBenchError
from ..records.schema import Record, ResultRow, TimingRow, result_problem, timing_problem


class ToleranceError(DescBenchError, ValueError):
    """A check tolerance that would let regressions through (NaN, negative, or out of range)."""


def check_tolerance(name: str, value: float, upper: float | None = None) -> float:
    """``value`` if it is a finite number >= 0 (and <= ``upper``); else a ToleranceError naming ``name``.

    A NaN tolerance made every comparison false, so a 5-point drop passed; a negative one fails
    identical runs; an accuracy tolerance above 1 (values are fractions) lets everything pass.
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if not ok or (upper is not None and value > upper):
        limit = f"0..{upper:g}" if upper is not None else ">= 0"
        raise ToleranceError(f"{name} must be a finite number in {limit}, got {value!r}")
    return float(value)


class Status(str, enum.Enum):
    OK = "ok"
    WORSE = "WORSE"
    SLOWER = "SLOWER"
    BETTER = "better"
    FASTER = "faster"
    NEW = "new"
    MISSING = "MISSING"
    ERROR = "ERROR"

    @property
    def fails(self) -> bool:
        return self in (Status.WORSE, Status.SLOWER, Status.MISSING, Status.ERROR)


@dataclass(frozen=True)
class Difference:
    kind: str  # "accuracy" or "speed"
    what: str  # readable row identity
    baseline: float | None
    current: float | None
    status: Status

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline


@dataclass(frozen=True)
class Comparison:
    differences: tuple[Difference, ...]
    accuracy_tolerance: float
    speed_tolerance: float

    @property
    def failed(self) -> bool:
        return any(d.status.fails for d in self.differences)

    def markdown(self, show_ok: bool = False) -> str:
        failing = [d for d in self.differences if d.status.fails]
        shown = [d for d in self.differences if show_ok or d.status is not Status.OK]
        counts = {s: sum(d.status is s for d in self.differences) for s in Status}
        head = (
            "### desc-bench check: "
            + ("FAILED" if self.failed else "passed")
            + "\n\n"
            + ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
            + f" (accuracy tolerance {self.accuracy_tolerance:g}, speed tolerance {self.speed_tolerance:.0%};"
            " speed = median / calibration workload)"
        )
        if not shown:
            return head + "\n"
        body = [
            [
                d.kind,
                d.what,
                _num(d.baseline, d.kind),
                _num(d.current, d.kind),
                _num(d.delta, d.kind, signed=True),
                d.status.value,
            ]
            for d in sorted(shown, key=lambda d: (not d.status.fails, d.kind, d.what))
        ]
        table = tabulate(
            body,
            headers=["kind", "row", "baseline", "current", "change", "status"],
            tablefmt="github",
            disable_numparse=True,
        )
        return f"{head}\n\n{table}\n" + (f"\n{len(failing)} row(s) failed.\n" if failing else "")


def _num(value: float | None, kind: str, signed: bool = False) -> str:
    if value is None:
        return "-"
    if kind == "accuracy":
        return f"{value * 100:+.2f}" if signed else f"{value * 100:.2f}"
    return f"{value:+.4g}" if signed else f"{value:.4g}"  # speed: median / calibration median


def _describe(row: ResultRow) -> str:
    parts = [row.descriptor, row.dataset, row.split, row.protocol, row.task, row.metric]
    parts += [p for p in (row.noise, row.subset if row.subset != "all" else "", row.variant) if p]
    return " / ".join(parts)


def _accuracy(baseline: list[ResultRow], current: list[ResultRow], tolerance: float) -> list[Difference]:
    base = {r.key(): r for r in baseline}
    cur = {r.key(): r for r in current}
    out = []
    for key in sorted(base.keys() | cur.keys(), key=str):
        b, c = base.get(key), cur.get(key)
        what = _describe(b or c)
        problem = next(
            (f"{side}: {p}" for side, r in (("baseline", b), ("run", c)) if r and (p := result_problem(r))), ""
        )
        if problem:  # a value outside its range is not "better": it is a broken row
            out.append(Difference("accuracy", f"{what} ({problem})", b and b.value, c and c.value, Status.ERROR))
        elif c is None:
            out.append(Difference("accuracy", what, b.value, None, Status.MISSING))
        elif b is None:
            out.append(Difference("accuracy", what, None, c.value, Status.NEW))
        elif c.error is not None and b.error is None:
            out.append(Difference("accuracy", f"{what} ({c.error})", b.value, None, Status.ERROR))
        elif b.value is None or c.value is None:
            out.append(Difference("accuracy", what, b.value, c.value, Status.OK))
        else:
            drop = b.value - c.value
            status = Status.WORSE if drop > tolerance else Status.BETTER if -drop > tolerance else Status.OK
            out.append(Difference("accuracy", what, b.value, c.value, status))
    return out


def _timing_key(t: TimingRow) -> tuple:
    return (t.descriptor, t.device, t.batch, t.input_size, t.unit, t.fp16)


def _normalised(record: Record) -> dict[tuple, float | str]:
    """Timing key -> median / calibration median, or the reason the row cannot be compared."""
    calibration = record.calibration
    if calibration is None or not (math.isfinite(calibration.median_ms) and calibration.median_ms > 0):
        return {}
    out: dict[tuple, float | str] = {}
    for t in record.timings:
        if t.error is not None or t.random_weights:
            continue
        problem = timing_problem(t) or ("a median of 0 ms is not a measurement" if t.median_ms == 0 else None)
        out[_timing_key(t)] = problem or t.median_ms / calibration.median_ms
    return out


def _speed(baseline: Iterable[Record], current: Iterable[Record], tolerance: float) -> list[Difference]:
    base: dict[tuple, float | str] = {}
    cur: dict[tuple, float | str] = {}
    for r in baseline:
        base.update(_normalised(r))
    for r in current:
        cur.update(_normalised(r))
    out = []
    for key in sorted(base.keys() | cur.keys(), key=str):
        what = f"{key[0]} / {key[1]} / batch {key[2]} / {key[3]} per {key[4]}" + (" / fp16" if key[5] else "")
        b, c = base.get(key), cur.get(key)
        problem = next((f"{side}: {v}" for side, v in (("baseline", b), ("run", c)) if isinstance(v, str)), "")
        if problem:  # NaN, negative or zero timings never pass
            numbers = [v if isinstance(v, float) else None for v in (b, c)]
            out.append(Difference("speed", f"{what} ({problem})", *numbers, Status.ERROR))
        elif c is None:
            out.append(Difference("speed", what, b, None, Status.MISSING))
        elif b is None:
            out.append(Difference("speed", what, None, c, Status.NEW))
        else:
            ratio = c / b
            status = (
                Status.SLOWER if ratio > 1 + tolerance else Status.FASTER if ratio < 1 / (1 + tolerance) else Status.OK
            )
            out.append(Difference("speed", what, b, c, status))
    return out


def compare(
    baseline: list[Record], current: list[Record], accuracy_tolerance: float = 0.005, speed_tolerance: float = 0.25
) -> Comparison:
    """Compare the rows of the current records with the baseline records.

    Tolerances must be finite and >= 0 (accuracy at most 1): see :func:`check_tolerance`.
    """
    accuracy_tolerance = check_tolerance("accuracy tolerance", accuracy_tolerance, upper=1.0)
    speed_tolerance = check_tolerance("speed tolerance", speed_tolerance)
    base_rows = [r for rec in baseline for r in rec.results]
    cur_rows = [r for rec in current for r in rec.results]
    diffs = _accuracy(base_rows, cur_rows, accuracy_tolerance) + _speed(baseline, current, speed_tolerance)
    return Comparison(tuple(diffs), accuracy_tolerance, speed_tolerance)
