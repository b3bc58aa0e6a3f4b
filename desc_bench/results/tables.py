"""Markdown tables made from records only (so ``desc-bench report`` can rebuild them from past runs),
rendered from the specs each benchmark declares (:class:`~desc_bench.bench.benchmarks.base.TableSpec`
and its ``headlines``); nothing here knows a benchmark by name.

- ``summary_table``: one row per descriptor (and dataset, split, distance) and benchmark family:
  the benchmark's headline numbers, plus the per-patch time at the run's own batch size (stated
  in the header; never another record's batch size or device).
- ``benchmark_tables``: every declared table of every benchmark present in the records.
HPatches-style percentages are printed as mAP x 100, the way the field reports them.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Iterable

from tabulate import tabulate

from ..bench.benchmarks.base import Benchmark, TableSpec, registered
from ..records.schema import Record, ResultRow

HPATCHES_TASKS = ("verification", "matching", "retrieval")


def _fmt(value: float | None, percent: bool = True, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value * 100:.2f}" if percent else f"{value:.{digits}f}"


def _cell(row: ResultRow | None, percent: bool = True, digits: int = 3) -> str:
    """A row's value, with ``± half-width`` of its confidence interval when it has one."""
    if row is None:
        return "-"
    text = _fmt(row.value, percent, digits)
    if row.interval is not None:
        text += " ± " + _fmt((row.interval[1] - row.interval[0]) / 2, percent, digits)
    return text


def _benchmarks(rows: Iterable[ResultRow]) -> list[type[Benchmark]]:
    protocols = dict.fromkeys(r.protocol for r in rows)
    classes = registered()
    return [classes[p] for p in protocols if p in classes]


def is_headline(row: ResultRow) -> bool:
    """Whether a row is one of the numbers its benchmark's summary quotes."""
    cls = registered().get(row.protocol)
    return cls is not None and any(h.matches(row) for h in cls.headlines)


def _descriptor_label(row: ResultRow) -> str:
    label = row.descriptor if row.weights in ("none", "", None) else f"{row.descriptor} [{row.weights}]"
    return label + (" *" if row.notes else "")


def _field(row: ResultRow, name: str) -> str:
    return _descriptor_label(row) if name == "descriptor" else str(getattr(row, name))


def _is_detail(row: ResultRow) -> bool:
    return ":pair=" in row.variant


def render_table(spec: TableSpec, rows: Iterable[ResultRow]) -> list[str]:
    """The markdown tables (one per group) of ``spec`` over ``rows`` of its benchmark."""
    where = dict(spec.where)
    chosen = [
        r
        for r in rows
        if r.error is None
        and r.metric in spec.metrics
        and (spec.details or not _is_detail(r))
        and all(str(getattr(r, k)) == v for k, v in where.items())
    ]
    groups: dict[tuple, list[ResultRow]] = defaultdict(list)
    for r in chosen:
        groups[tuple(_field(r, g) for g in spec.groups)].append(r)
    labels = dict(spec.labels)
    out = []
    for group, members in groups.items():
        found = list(dict.fromkeys(_field(r, spec.columns) for r in members))
        columns = [c for c in spec.order if c in found] + [c for c in found if c not in spec.order]
        cells: dict[tuple, dict[str, ResultRow]] = defaultdict(dict)
        for r in members:
            cells[tuple(_field(r, f) for f in spec.rows)][_field(r, spec.columns)] = r
        body = [
            [*key, *(_cell(values.get(c), spec.percent, spec.digits) for c in columns)] for key, values in cells.items()
        ]
        header = [*spec.rows, *(labels.get(c, c) for c in columns)]
        fields = {f.name: getattr(members[0], f.name) for f in dataclasses.fields(ResultRow)}
        title = spec.title.format(**{**fields, **dict(zip(spec.groups, group))})
        title = re.sub(r", (?=[,)])", "", title.replace("(, ", "("))
        out.append(f"#### {title}\n\n" + tabulate(body, headers=header, tablefmt="github", disable_numparse=True))
    return out


def benchmark_tables(rows: Iterable[ResultRow]) -> list[tuple[type[Benchmark], list[str]]]:
    """Per benchmark present in ``rows``: its declared tables, rendered."""
    rows = list(rows)
    out = []
    for cls in _benchmarks(rows):
        own = [r for r in rows if r.protocol == cls.name]
        rendered = [t for spec in cls.tables for t in render_table(spec, own)]
        if rendered:
            out.append((cls, rendered))
    return out


DEFAULT_TIME_BATCH = 256  # `desc-bench run --time-batch` default: records without a run config are read at it


def run_time_batch(record: Record) -> int:
    """The batch size a run timed its descriptors at (its config's ``time_batch``), else the default."""
    config = record.metadata.get("config")
    batch = config.get("time_batch") if isinstance(config, dict) else None
    return batch if type(batch) is int and batch > 0 else DEFAULT_TIME_BATCH


def _patch_time(descriptor: str, batch: int, device: str | None, records: list[Record], own: Record) -> float | None:
    """ms/patch of ``descriptor`` at exactly ``batch`` on ``device``: the run's own row first, then the
    other records' (a ``desc-bench time`` record merged into the report); never another batch size."""
    for record in [own] + [r for r in records if r is not own]:
        for t in record.timings:
            if (
                t.error is None
                and t.unit == "patch"
                and t.descriptor == descriptor
                and t.batch == batch
                and t.median_ms is not None
                and (device is None or t.device == device)
            ):
                return t.median_ms
    return None


def _best_first(headline, value: float | None) -> float:
    """Sort key: the best value of ``headline`` first (ascending when lower is better), missing last."""
    if value is None:
        return float("inf")
    return -value if headline.higher_is_better else value


def summary_table(records: Iterable[Record]) -> str:
    """Per benchmark family, one row per descriptor (and dataset): its headline numbers and time.

    The time is the run's own: ms/patch at the batch size its record was timed at (``time_batch``
    in the run's config, default 256) on its device, also when ``desc-bench time`` records with
    other batch sizes are merged in. The header states the batch (each cell does when runs differ).
    """
    records = list(records)
    rows = [r for record in records for r in record.results]
    parts = []
    for cls in _benchmarks(rows):
        if not cls.headlines:
            continue
        values: dict[tuple, dict[str, ResultRow]] = defaultdict(dict)
        notes: dict[tuple, str] = {}
        source: dict[tuple, Record] = {}  # the record a row of the table comes from: its batch and device
        for record in records:
            for r in record.results:
                for h in cls.headlines:
                    if r.protocol == cls.name and h.matches(r):
                        key = (r.descriptor, r.weights, r.dataset, r.split, r.distance, h.setting(r))
                        values[key][h.label] = r
                        notes[key] = r.notes
                        source.setdefault(key, record)
        if not values:
            continue
        ranked = cls.headlines[min(1, len(cls.headlines) - 1)]
        with_variant = any(key[-1] for key in values)
        timed = cls.time_unit == "patch"
        batches = {key: run_time_batch(record) for key, record in source.items()}
        one_batch = len(set(batches.values())) == 1
        shared = set.intersection(*(set(n.split("; ")) for n in notes.values())) - {""}
        body = []
        ranking = {
            key: _best_first(ranked, cells[ranked.label].value if ranked.label in cells else None)
            for key, cells in values.items()
        }
        for key, cells in sorted(values.items(), key=lambda item: ranking[item[0]]):
            descriptor, weights, dataset, split, distance, variant = key
            label = descriptor if weights in ("none", "") else f"{descriptor} [{weights}]"
            label += f" ({distance})" if distance not in ("", "l2") else ""
            own = [n for n in notes[key].split("; ") if n and n not in shared]
            line = [label + (" *" if own else ""), dataset, split] + ([variant or "-"] if with_variant else [])
            line += [_cell(cells.get(h.label), h.percent) for h in cls.headlines]
            if timed:
                device = source[key].metadata.get("device")
                device = device if isinstance(device, str) else None
                ms = _patch_time(descriptor, batches[key], device, records, source[key])
                line.append("-" if ms is None else f"{ms:.3f}" + ("" if one_batch else f" (batch {batches[key]})"))
            body.append(line)
        header = [
            "descriptor",
            "dataset",
            "split",
            *(["variant"] if with_variant else []),
            *(h.label for h in cls.headlines),
        ]
        if timed:
            header.append(f"ms/patch (batch {next(iter(batches.values()))})" if one_batch else "ms/patch")
        table = f"**{cls.name}**: {cls.summary}\n\n" + tabulate(
            body, headers=header, tablefmt="github", disable_numparse=True
        )
        if shared:
            table += "\n\nSettings: " + "; ".join(sorted(shared))
        starred = sorted({n for v in notes.values() for n in v.split("; ") if n and n not in shared})
        if starred:
            table += "\n\n\\* " + "; ".join(starred)
        parts.append(table)
    return "\n\n".join(parts)


def plural(kind: str) -> str:
    return kind[:-1] + "ies" if kind.endswith("y") else kind + "s"


def interval_note(records: Iterable[Record]) -> str:
    """What ``±`` means in the tables: the interval settings of the records (empty when none has intervals)."""
    rows = [r for rec in records for r in rec.results if r.interval is not None]
    kinds = sorted({r.units.kind for r in rows if r.units})
    pooled = any(r.units is None for r in rows)
    made = {
        f"{m['level'] * 100:g}% percentile bootstrap, {m['resamples']} resamples, seed {m['seed']}"
        for rec in records
        if isinstance(m := rec.metadata.get("intervals"), dict) and {"level", "resamples", "seed"} <= m.keys()
    }
    if not rows:
        return ""
    over = f" over {', '.join(plural(k) for k in kinds)}" if kinds else ""
    text = f"\n\n± is the half-width of the confidence interval{over} ({'; '.join(sorted(made)) or 'bootstrap'})"
    if pooled:
        text += (
            "; pooled statistics (verification AP and AUC over pooled pairs, FPR95) have the statistic recomputed "
            "on each resample of their units, which their notes name"
        )
    return text


def error_table(records: Iterable[Record]) -> str:
    seen, body = set(), []
    for record in records:
        for r in record.results:
            if r.error is not None and (r.descriptor, r.error) not in seen:
                seen.add((r.descriptor, r.error))
                body.append([r.descriptor, r.dataset, r.error])
    if not body:
        return ""
    headers = ["descriptor", "dataset", "skipped or failed"]
    return tabulate(body, headers=headers, tablefmt="github", disable_numparse=True)


def timing_section(records: Iterable[Record]) -> str:
    rows = [t for record in records for t in record.timings]
    if not rows:
        return ""
    from ..bench.timing import timing_table

    return timing_table(rows)


def run_report(record: Record) -> str:
    """The markdown printed after ``desc-bench run`` and written next to its record."""
    return records_report([record], title=f"desc-bench run ({record.metadata.get('time', '')})")


def records_report(records: list[Record], title: str = "desc-bench report") -> str:
    sections = [f"# {title}"]
    summary = summary_table(records)
    if summary:
        sections.append("## Summary\n\n" + summary + interval_note(records))
    errors = error_table(records)
    if errors:
        sections.append("## Skipped or failed\n\n" + errors)
    for cls, tables in benchmark_tables(r for record in records for r in record.results):
        heading = "Per task (Easy / Hard / Tough)" if "patches" in cls.accepts else cls.summary
        sections.append(f"## {heading}\n\n" + "\n\n".join(tables))
    timing = timing_section(records)
    if timing:
        sections.append("## Timing\n\n" + timing)
    machines = sorted(
        {
            f"{r.metadata.get('platform')}, torch {r.metadata.get('torch')}, "
            f"{r.metadata.get('threads')} threads, device {r.metadata.get('device')}"
            for r in records
        }
    )
    sections.append("Machine: " + "; ".join(machines))
    return "\n\n".join(sections) + "\n"
