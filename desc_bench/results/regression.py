"""Compare a run with a baseline: accuracy drops and normalised slow-downs, as a markdown diff.

Accuracy rows are matched on everything but the value (:meth:`ResultRow.key`); a drop larger than
the tolerance (absolute, values are fractions: 0.005 = half a point) fails. Speed rows are matched
on descriptor, device, batch and input size, and compared after dividing each median by the
calibration workload timed in the same process (so a slower machine does not read as a
regression); a ratio above ``1 + tolerance`` fails. Rows present on one side only are reported:
missing rows fail (a metric that vanished is a regression) unless ``common_only`` skips them (then
counted in one line); new rows do not fail and are summarised in one line. Comparing no row at all
fails. Broken rows (a value outside its metric's range, a NaN or negative timing) are ERRORs, and
tolerances that would let anything through (NaN, negative) are refused. Signs of a loaded machine
in the run's records (:func:`~desc_bench.records.machine_load.loaded_machine_warnings`) are warnings,
and so are library versions that differ from the baseline's (:mod:`desc_bench.results.drift`).
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from tabulate import tabulate

from ..errors import DescBenchError
from ..records.machine_load import loaded_machine_warnings
from ..records.schema import Record, ResultRow, TimingRow, result_problem, timing_problem
from .drift import drift_warnings


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
    descriptor: str = ""

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return self.current - self.baseline


@dataclass(frozen=True)
class Comparison:
    """The differences, and what was not compared.

    ``skipped``: baseline rows the run does not hold, left out by ``common_only`` (otherwise they
    are MISSING differences). ``warnings``: signs of a loaded machine in the run's records.
    Comparing nothing at all fails: a gate that compared no row has checked nothing.
    """

    differences: tuple[Difference, ...]
    accuracy_tolerance: float
    speed_tolerance: float
    common_only: bool = False
    skipped: tuple[Difference, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def compared(self) -> int:
        """How many rows were compared (both sides hold them)."""
        return sum(d.status is not Status.NEW for d in self.differences)

    @property
    def failed(self) -> bool:
        return self.compared == 0 or any(d.status.fails for d in self.differences)

    def markdown(self, show_ok: bool = False) -> str:
        failing = [d for d in self.differences if d.status.fails]
        hidden = (Status.OK, Status.NEW)  # new rows are summarised in one line instead
        shown = [d for d in self.differences if show_ok or d.status not in hidden]
        counts = {s: sum(d.status is s for d in self.differences) for s in Status}
        head = (
            "### desc-bench check: "
            + ("FAILED" if self.failed else "passed")
            + "\n\n"
            + ", ".join(f"{n} {s.value}" for s, n in counts.items() if n)
            + f" (accuracy tolerance {self.accuracy_tolerance:g}, speed tolerance {self.speed_tolerance:.0%};"
            " speed = median / calibration workload)"
        )
        notes = []
        if self.compared == 0:
            notes.append("no row in common with the baseline: nothing was compared")
        new = [d for d in self.differences if d.status is Status.NEW]
        if new:
            notes.append(f"{len(new)} new row(s) only in the run, not compared: {_by_descriptor(new)}")
        if self.skipped:
            notes.append(
                f"--common-only: {len(self.skipped)} baseline row(s) that the run does not hold were skipped: "
                + _by_descriptor(self.skipped)
            )
        notes += [f"warning: {w}" for w in self.warnings]
        if notes:
            head += "\n\n" + "\n".join(f"- {n}" for n in notes)
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


def _by_descriptor(differences: Iterable[Difference], most: int = 6) -> str:
    """'sift-flow (68 accuracy, 1 speed), hardnet (68 accuracy)': rows per descriptor and kind, in one line."""
    counts: dict[str, Counter] = {}
    for d in differences:
        counts.setdefault(d.descriptor, Counter())[d.kind] += 1
    parts = [f"{name} ({', '.join(f'{n} {kind}' for kind, n in sorted(c.items()))})" for name, c in counts.items()]
    return ", ".join(parts[:most]) + (f" and {len(parts) - most} more descriptor(s)" if len(parts) > most else "")


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
        what, name = _describe(b or c), (b or c).descriptor
        problem = next(
            (f"{side}: {p}" for side, r in (("baseline", b), ("run", c)) if r and (p := result_problem(r))), ""
        )
        if c is None:
            out.append(Difference("accuracy", what, b.value, None, Status.MISSING, name))
        elif problem:  # a value outside its range is not "better": it is a broken row
            out.append(Difference("accuracy", f"{what} ({problem})", b and b.value, c.value, Status.ERROR, name))
        elif b is None:
            out.append(Difference("accuracy", what, None, c.value, Status.NEW, name))
        elif c.error is not None and b.error is None:
            out.append(Difference("accuracy", f"{what} ({c.error})", b.value, None, Status.ERROR, name))
        elif b.value is None or c.value is None:
            out.append(Difference("accuracy", what, b.value, c.value, Status.OK, name))
        else:
            drop = b.value - c.value
            status = Status.WORSE if drop > tolerance else Status.BETTER if -drop > tolerance else Status.OK
            out.append(Difference("accuracy", what, b.value, c.value, status, name))
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
        numbers = [v if isinstance(v, float) else None for v in (b, c)]
        if c is None:
            out.append(Difference("speed", what, numbers[0], None, Status.MISSING, key[0]))
        elif problem:  # NaN, negative or zero timings never pass
            out.append(Difference("speed", f"{what} ({problem})", *numbers, Status.ERROR, key[0]))
        elif b is None:
            out.append(Difference("speed", what, None, c, Status.NEW, key[0]))
        else:
            ratio = c / b
            status = (
                Status.SLOWER if ratio > 1 + tolerance else Status.FASTER if ratio < 1 / (1 + tolerance) else Status.OK
            )
            out.append(Difference("speed", what, b, c, status, key[0]))
    return out


def compare(
    baseline: list[Record],
    current: list[Record],
    accuracy_tolerance: float = 0.005,
    speed_tolerance: float = 0.25,
    *,
    common_only: bool = False,
) -> Comparison:
    """Compare the rows of the current records with the baseline records.

    Tolerances must be finite and >= 0 (accuracy at most 1): see :func:`check_tolerance`.
    ``common_only``: compare only the rows both sides hold (a run of fewer descriptors than the
    baseline passes when those it has did not regress); the baseline rows left out are counted in
    ``Comparison.skipped``. The run's records are checked for signs of a loaded machine.
    """
    accuracy_tolerance = check_tolerance("accuracy tolerance", accuracy_tolerance, upper=1.0)
    speed_tolerance = check_tolerance("speed tolerance", speed_tolerance)
    base_rows = [r for rec in baseline for r in rec.results]
    cur_rows = [r for rec in current for r in rec.results]
    diffs = _accuracy(base_rows, cur_rows, accuracy_tolerance) + _speed(baseline, current, speed_tolerance)
    skipped = [d for d in diffs if common_only and d.status is Status.MISSING]
    kept = [d for d in diffs if not (common_only and d.status is Status.MISSING)]
    warnings = dict.fromkeys(w for rec in current for w in loaded_machine_warnings(rec, baseline))
    warnings.update(dict.fromkeys(drift_warnings(baseline, current)))
    return Comparison(tuple(kept), accuracy_tolerance, speed_tolerance, common_only, tuple(skipped), tuple(warnings))
