"""Paired comparisons of two descriptors on every headline of the records (``desc-bench compare``).

For each headline row both descriptors have (same dataset, split, benchmark, task, metric, noise,
subset, variant), the difference A - B with its paired bootstrap interval over the units both rows
hold (:func:`desc_bench.results.stats.paired_difference`) and whether the interval excludes zero.
Rows without per-unit values are listed with the difference alone and the reason, "not paired":
pooled statistics (HPatches verification AP and AUC, Brown FPR95: one number over the pairs of all
sequences, whose interval the benchmark recomputed at evaluation time from per-pair distances the
record does not keep) and rows of records made before units existed. When a descriptor has the
same row in several records, the newest record's row is used (records in order of their ``time``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tabulate import tabulate

from ..bench.benchmarks.base import Headline, registered
from ..errors import InputError
from ..records.schema import Record, ResultRow
from .stats import DEFAULT_LEVEL, DEFAULT_RESAMPLES, DEFAULT_SEED, Difference, paired_difference
from .tables import plural


@dataclass(frozen=True)
class Paired:
    """One headline of one benchmark for descriptors A and B."""

    label: str  # the headline's label, e.g. "matching mAP"
    percent: bool
    a: ResultRow
    b: ResultRow
    difference: Difference
    higher_is_better: bool = True

    @property
    def verdict(self) -> str:
        d = self.difference
        if d.units == 0:
            return "not paired"
        if not d.excludes_zero:
            return d.verdict
        return "A better" if (d.value > 0) == self.higher_is_better else "B better"


POOLED = "not paired: pooled statistic ({what}), no per-unit values in the record (interval made at evaluation)"


def unpaired_reason(a: ResultRow, b: ResultRow) -> str:
    """Why two rows get no paired difference from the records (one line, for the table)."""
    pooled = [r for r in (a, b) if r.units is None and "interval: bootstrap over" in r.notes]
    if pooled:
        metric = pooled[0].metric
        what = "FPR95 over pairs" if metric.startswith("fpr") else f"{metric.upper()} over pooled pairs"
        return POOLED.format(what=what)
    missing = [r.descriptor for r in (a, b) if r.units is None]
    return f"not paired: no per-unit values in the row of {' and '.join(missing)} (a record made before units?)"


def _pair_key(row: ResultRow) -> tuple:
    """A row's identity without the descriptor (the distance may differ: SIFT l2 against ORB hamming)."""
    return (row.dataset, row.split, row.protocol, row.task, row.metric, row.noise, row.subset, row.variant)


def headline_rows(records: Iterable[Record], descriptor: str) -> dict[tuple, tuple[Headline, ResultRow]]:
    """The descriptor's headline rows by pairing key (newest record wins): (headline, row)."""
    classes = registered()
    out: dict[tuple, tuple[Headline, ResultRow]] = {}
    for record in sorted(records, key=lambda r: str(r.metadata.get("time", ""))):
        for row in record.results:
            cls = classes.get(row.protocol)
            if row.descriptor != descriptor or cls is None:
                continue
            for h in cls.headlines:
                if h.matches(row):
                    out[_pair_key(row)] = (h, row)
    return out


def descriptors_in(records: Iterable[Record]) -> list[str]:
    return list(dict.fromkeys(r.descriptor for rec in records for r in rec.results if r.error is None))


def compare(
    records: list[Record],
    a: str,
    b: str,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
) -> list[Paired]:
    """Every headline both ``a`` and ``b`` have in ``records``, with the paired difference a - b."""
    if a == b:
        raise InputError(f"--descriptors names {a!r} twice; name two different descriptors")
    known = descriptors_in(records)
    rows_a, rows_b = headline_rows(records, a), headline_rows(records, b)
    for name, rows in ((a, rows_a), (b, rows_b)):
        if not rows:
            raise InputError(
                f"no headline rows of descriptor {name!r} in the records; descriptors there: {', '.join(known) or '-'}"
            )
    shared = [k for k in rows_a if k in rows_b]
    if not shared:
        raise InputError(f"{a} and {b} share no benchmark, dataset and split in the records: nothing to compare")
    out = []
    for key in shared:
        h, ra = rows_a[key]
        rb = rows_b[key][1]
        if ra.units is not None and rb.units is not None:
            diff = paired_difference(ra.units, rb.units, resamples, level, seed, key)
        else:
            diff = Difference(ra.value - rb.value, None, None, 0, "")
        out.append(Paired(h.label, h.percent, ra, rb, diff, h.higher_is_better))
    return out


def _num(value: float | None, percent: bool) -> str:
    if value is None:
        return "-"
    return f"{value * 100:+.2f}" if percent else f"{value:+.4f}"


def _plain(value: float, percent: bool) -> str:
    return f"{value * 100:.2f}" if percent else f"{value:.4f}"


def comparison_table(pairs: list[Paired], a: str, b: str, level: float = DEFAULT_LEVEL) -> str:
    """Markdown: one line per headline, A, B, A - B, its interval, the verdict and the units."""
    body = []
    named = len({p.b.descriptor for p in pairs}) > 1  # the report: one leader against several others
    for p in pairs:
        d = p.difference
        where = f"{p.a.protocol} / {p.a.dataset}" + (f" / {p.a.split}" if p.a.split not in ("all", "full") else "")
        interval = "-" if d.low is None else f"[{_num(d.low, p.percent)}, {_num(d.high, p.percent)}]"
        units = f"{d.units} {plural(d.kind)}" if d.units else unpaired_reason(p.a, p.b)
        body.append(
            [where, p.label, _plain(p.a.value, p.percent)]
            + [(f"{p.b.descriptor}: " if named else "") + _plain(p.b.value, p.percent), _num(d.value, p.percent)]
            + [interval, p.verdict, units]
        )
    header = ["benchmark / dataset", "headline", "A", "B", "A - B", f"{level * 100:g}% interval", "verdict", "paired"]
    return (
        f"A = `{a}`, B = `{b}`; paired bootstrap over the units both rows hold (the same units resampled for "
        "both); 'A better' / 'B better' when the interval excludes zero\n\n"
        + tabulate(body, headers=header, tablefmt="github", disable_numparse=True)
    )


def comparison_section(records: list[Record], resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED) -> str:
    """For the report: per benchmark and headline, each descriptor against the best one there."""
    names = descriptors_in(records)
    if len(names) < 2:
        return ""
    best: dict[tuple, tuple[float, str]] = {}  # headline key -> (signed value, descriptor)
    for name in names:
        for key, (h, row) in headline_rows(records, name).items():
            signed = row.value if h.higher_is_better else -row.value
            if row.units is not None and (key not in best or signed > best[key][0]):
                best[key] = (signed, name)
    parts = []
    for leader in dict.fromkeys(name for _, name in best.values()):
        keys = {k for k, (_, name) in best.items() if name == leader}
        pairs = []
        for other in names:
            if other != leader:
                try:
                    found = compare(records, leader, other, resamples, seed=seed)
                except InputError:
                    continue
                pairs += [p for p in found if _pair_key(p.a) in keys and p.difference.low is not None]
        if pairs:
            others = {p.b.descriptor for p in pairs}
            parts.append(comparison_table(pairs, leader, others.pop() if len(others) == 1 else "column B's descriptor"))
    return "\n\n".join(parts)
