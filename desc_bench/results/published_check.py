"""A run's rows next to the published figures (:mod:`desc_bench.results.published`): ``desc-bench
published`` and the report's section.

A row is compared with a figure only when both are the same thing: the same descriptor (and
weights when the figure names them), benchmark (so python and MATLAB HPatches numbers never
meet), dataset (so 108 and 116 HPatches sequences never meet), split, task, metric, noise, subset
and variant. Even then it is *not compared* when its data is not the figure's: an embedded
(generated) dataset, an incomplete pair set (variant ``incomplete=``), an HPatches copy with
another number of sequences than the figure (counted from the record's per-sequence units; a
record without them cannot say, so it is not compared either), a Brown subset without its 100k
test pairs. A headline row that only *nearly* matches a figure (same descriptor and number, other
benchmark, dataset or split) is listed as not compared, naming the difference.

Status ``matches`` when ``|measured - published| <= tolerance`` (the figure's own, default one
point), else ``DIFFERS``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from tabulate import tabulate

from ..datasets.registry import dataset_sources
from ..records.schema import Record, ResultRow, metric_range
from .published import FIGURES, Figure
from .tables import is_headline

DIFFERS = "DIFFERS"
MATCHES = "matches"
NOT_COMPARED = "not compared"


@dataclass(frozen=True)
class Check:
    figure: Figure
    row: ResultRow
    status: str
    reason: str = ""

    @property
    def difference(self) -> float | None:
        return None if self.status == NOT_COMPARED else self.row.value - self.figure.value


def _same_quantity(f: Figure, r: ResultRow) -> bool:
    return (
        f.descriptor == r.descriptor
        and f.weights in ("", r.weights)
        and (f.task, f.metric, f.noise, f.subset) == (r.task, r.metric, r.noise, r.subset)
    )


def _same_setting(f: Figure, r: ResultRow) -> bool:
    return (
        f.protocol == r.protocol
        and r.dataset in f.datasets
        and f.split == r.split
        and (r.variant == f.variant if f.variant is not None else ":pair=" not in r.variant)
    )


def _embedded(dataset: str) -> bool | None:
    """Whether the dataset is generated locally (None: a dataset this desc-bench does not know)."""
    source = dataset_sources().get(dataset)
    return None if source is None else bool(source.embedded)


def _sequences(record: Record, row: ResultRow) -> int | None:
    """How many sequences the row's run used, from any row of the same run with per-sequence units."""
    same = (row.descriptor, row.weights, row.dataset, row.split, row.protocol)
    counts = [
        len(r.units.names)
        for r in record.results
        if r.units is not None and r.units.kind == "sequence" and r.subset == "all"
        and (r.descriptor, r.weights, r.dataset, r.split, r.protocol) == same
    ]  # fmt: skip
    return max(counts) if counts else None


def _unfit(record: Record, row: ResultRow, figure: Figure) -> str:
    """Why the row's data is not the figure's ("" when it is)."""
    embedded = _embedded(row.dataset)
    if embedded:
        return f"{row.dataset} is generated (synthetic), the figure is on real data"
    if embedded is None:
        return f"dataset {row.dataset!r} is not one desc-bench knows"
    if "incomplete=" in row.variant:
        return f"incomplete pair set ({row.variant.split('incomplete=')[1].split(':')[0].replace('of', ' of ')})"
    if "test pairs (" in row.notes:
        return "the Brown subset lacks its 100k test pairs"
    if figure.sequences is not None and figure.protocol in ("python", "matlab"):
        found = _sequences(record, row)
        if found is None:
            return "the record does not say how many sequences were used (no per-sequence units: an older record?)"
        if found != figure.sequences:
            return f"{found} sequences, the figure {figure.sequences}"
    return ""


def _near_miss(f: Figure, r: ResultRow) -> str:
    parts = []
    if f.protocol != r.protocol:
        parts.append(f"published with the {f.protocol} protocol, this row {r.protocol}")
    if r.dataset not in f.datasets:
        kind = " (generated, synthetic)" if _embedded(r.dataset) else ""
        parts.append(f"published on {'/'.join(f.datasets)}, this row on {r.dataset}{kind}")
    if f.split != r.split:
        parts.append(f"published on split {f.split}, this row {r.split}")
    if f.variant is not None and f.variant != r.variant:
        parts.append(f"published variant {f.variant or '-'}, this row {r.variant or '-'}")
    return "; ".join(parts)


def check_records(records: Iterable[Record], figures: Iterable[Figure] = FIGURES) -> list[Check]:
    """Every (row, figure) of the same quantity: compared, or not compared with the reason."""
    figures = [f for f in figures if f.descriptor]
    out: list[Check] = []
    for record in records:
        for row in record.results:
            if row.error is not None or ":pair=" in row.variant:
                continue
            same = [f for f in figures if _same_quantity(f, row)]
            exact = [f for f in same if _same_setting(f, row)]
            for f in exact:
                reason = _unfit(record, row, f)
                if reason:
                    out.append(Check(f, row, NOT_COMPARED, reason))
                else:
                    ok = abs(row.value - f.value) <= f.tolerance + 1e-12
                    out.append(Check(f, row, MATCHES if ok else DIFFERS))
            if not exact and same and is_headline(row):
                closest = min(same, key=lambda f: _near_miss(f, row).count(";"))  # fewest differences
                out.append(Check(closest, row, NOT_COMPARED, _near_miss(closest, row)))
    return out


def _fmt(value: float, metric: str, sign: bool = False) -> str:
    fraction = metric_range(metric) == (0.0, 1.0)
    shown = value * 100 if fraction else value
    return f"{shown:+.2f}" if sign else f"{shown:.2f}"


def published_table(checks: list[Check]) -> str:
    """Markdown: measured against published, the difference, the tolerance and the status, with
    numbered sources (paper or repository and table) and protocol settings under the table."""
    if not checks:
        return "No row of these records was compared with a published figure (desc_bench/results/published.py)."
    notes: dict[tuple[str, str], int] = {}
    body = []
    for c in checks:
        f, r = c.figure, c.row
        ref = notes.setdefault((f.source, f.setting), len(notes) + 1)
        measured = _fmt(r.value, r.metric)
        if r.interval is not None:
            measured += f" [{_fmt(r.interval[0], r.metric)}, {_fmt(r.interval[1], r.metric)}]"
        diff = "-" if c.difference is None else _fmt(c.difference, r.metric, sign=True)
        status = c.status + (f": {c.reason}" if c.reason else "")
        if c.status != NOT_COMPARED and r.interval is not None:
            inside = r.interval[0] <= f.value <= r.interval[1]
            status += " (published value inside the interval)" if inside else " (outside the interval)"
        label = r.descriptor + (f" [{r.weights}]" if r.weights not in ("", "none") else "")
        what = " ".join(p for p in (r.task, r.metric, r.noise, r.subset if r.subset != "all" else "") if p)
        body.append(
            [label, f"{r.protocol} / {r.dataset} / {r.split}", what, measured, _fmt(f.value, f.metric)]
            + [diff, _fmt(f.tolerance, f.metric), status, f"{f.published_as} [{ref}]"]
        )
    header = ["descriptor", "benchmark / dataset / split", "row", "measured", "published", "diff", "tolerance"]
    table = tabulate(body, headers=[*header, "status", "published as"], tablefmt="github", disable_numparse=True)
    sources = "\n".join(f"[{n}] {source}. {setting}." for (source, setting), n in notes.items())
    return table + "\n\nFractions are shown in %. Sources and protocol settings:\n\n" + sources


def published_section(records: list[Record]) -> str:
    """The report's section: the compared rows, and a line on those not compared and why
    (empty when no row has a figure of the same quantity)."""
    checks = check_records(records)
    compared = [c for c in checks if c.status != NOT_COMPARED]
    skipped = [c for c in checks if c.status == NOT_COMPARED]
    text = published_table(compared) if compared else ""
    if skipped:
        reasons = list(dict.fromkeys(part for c in skipped for part in c.reason.split("; ")))
        more = f" and {len(reasons) - 3} other reason(s)" if len(reasons) > 3 else ""
        text += (
            ("\n\n" if text else "")
            + f"{len(skipped)} row(s) with a published figure were not compared: {'; '.join(reasons[:3])}{more} "
            "(`desc-bench published --all RECORD` lists them)"
        )
    return text
