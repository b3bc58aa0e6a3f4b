"""Markdown tables made from records only (so ``desc-bench report`` can rebuild them from past runs).

HPatches values are printed as percentages (mAP x 100), the way the field reports them.
- ``task_tables``: per descriptor and task, rows = metric/variant/subset, columns Easy, Hard, Tough, mean.
- ``summary_table``: one row per descriptor: the headline of each task (noise "mean", subset "all",
  headline variant), plus the per-patch time at the run's own batch size (stated in the header).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from tabulate import tabulate

from ..records.schema import Record, ResultRow

NOISE_COLUMNS = ("easy", "hard", "tough", "mean")
HPATCHES_TASKS = ("verification", "matching", "retrieval")


def _fmt(value: float | None, percent: bool = True) -> str:
    if value is None:
        return "-"
    return f"{value * 100:.2f}" if percent else f"{value:.4g}"


def is_headline(row: ResultRow) -> bool:
    """The single number quoted for a task (see METRICS.md): mean over noise levels, all sequences."""
    from ..bench.hpatches_tasks import is_headline as headline

    return row.error is None and headline(row.task, row.metric, row.noise, row.subset, row.variant)


def _descriptor_label(row: ResultRow) -> str:
    label = row.descriptor if row.weights in ("none", "", None) else f"{row.descriptor} [{row.weights}]"
    return label + (" *" if row.notes else "")


def task_tables(rows: Iterable[ResultRow]) -> str:
    """Easy/Hard/Tough/mean tables, one per descriptor and HPatches task."""
    groups: dict[tuple, dict[tuple, dict[str, float | None]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r.error is None and r.noise in NOISE_COLUMNS and r.task in HPATCHES_TASKS:
            group = (_descriptor_label(r), r.dataset, r.split, r.protocol, r.distance, r.task)
            groups[group][(r.metric, r.variant, r.subset)][r.noise] = r.value
    parts = []
    for (label, dataset, split, protocol, distance, task), table in groups.items():
        body = [
            [metric, variant or "-", subset] + [_fmt(cols.get(n)) for n in NOISE_COLUMNS]
            for (metric, variant, subset), cols in sorted(table.items(), key=_row_order)
        ]
        where = ", ".join(p for p in (dataset, f"split {split}", f"{protocol} protocol", distance) if p)
        parts.append(
            f"#### {label}: {task} ({where}, %)\n\n"
            + tabulate(
                body,
                headers=["metric", "variant", "subset", "Easy", "Hard", "Tough", "mean"],
                tablefmt="github",
                disable_numparse=True,
            )
        )
    return "\n\n".join(parts)


def _row_order(item: tuple) -> tuple:
    (metric, variant, subset), _ = item
    pool = int(variant.split("=")[1]) if variant.startswith("pool=") and variant[5:].isdigit() else -1
    return (metric, variant != "", pool, variant, {"all": 0, "i": 1, "v": 2}.get(subset, 3), subset)


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


def summary_table(records: Iterable[Record]) -> str:
    """One row per descriptor (and dataset): headline verification, matching, retrieval, time.

    The time is the run's own: ms/patch at the batch size its record was timed at (``time_batch``
    in the run's config, default 256) on its device, also when ``desc-bench time`` records with
    other batch sizes are merged in. The header states the batch (each cell does when runs differ).
    """
    records = list(records)
    headline: dict[tuple, dict[str, float]] = defaultdict(dict)
    notes: dict[tuple, str] = {}
    source: dict[tuple, Record] = {}
    for record in records:
        for r in record.results:
            if is_headline(r) and r.task in HPATCHES_TASKS:
                key = (r.descriptor, r.weights, r.dataset, r.split, r.protocol, r.distance)
                headline[key][r.task] = r.value
                notes[key] = r.notes
                source.setdefault(key, record)
    if not headline:
        return ""
    batches = {key: run_time_batch(record) for key, record in source.items()}
    one_batch = len(set(batches.values())) == 1
    body = []
    for key, values in sorted(headline.items(), key=lambda kv: -kv[1].get("matching", 0.0)):
        descriptor, weights, dataset, split, protocol, distance = key
        device = source[key].metadata.get("device")
        ms = _patch_time(descriptor, batches[key], device if isinstance(device, str) else None, records, source[key])
        label = descriptor if weights in ("none", "") else f"{descriptor} [{weights}]"
        # say how the number was made when it is not the default (python protocol, the descriptor's distance)
        how = [
            p for p in (protocol if protocol != "python" else "", distance if distance not in ("", "l2") else "") if p
        ]
        label += f" ({', '.join(how)})" if how else ""
        time = "-" if ms is None else f"{ms:.3f}" + ("" if one_batch else f" (batch {batches[key]})")
        body.append(
            [label + (" *" if notes.get(key) else ""), dataset, split]
            + [_fmt(values.get(task)) for task in HPATCHES_TASKS]
            + [time]
        )
    time_header = f"ms/patch (batch {next(iter(batches.values()))})" if one_batch else "ms/patch"
    table = tabulate(
        body,
        headers=["descriptor", "dataset", "split", "verification mAP", "matching mAP", "retrieval mAP", time_header],
        tablefmt="github",
        disable_numparse=True,
    )
    if any(notes.values()):
        table += "\n\n\\* " + "; ".join(sorted({n for n in notes.values() if n}))
    return table


def error_table(records: Iterable[Record]) -> str:
    seen, body = set(), []
    for record in records:
        for r in record.results:
            if r.error is not None and (r.descriptor, r.error) not in seen:
                seen.add((r.descriptor, r.error))
                body.append([r.descriptor, r.dataset, r.error])
    if not body:
        return ""
    return tabulate(
        body, headers=["descriptor", "dataset", "skipped or failed"], tablefmt="github", disable_numparse=True
    )


def timing_section(records: Iterable[Record]) -> str:
    rows = [t for record in records for t in record.timings]
    if not rows:
        return ""
    from ..bench.timing import timing_table

    return timing_table(rows)


def pair_section(records: Iterable[Record]) -> str:
    """Image-pair tables: MMA at 3 px, PCK (GIFT layout), Oxford matching score per sequence."""
    from ..bench.pairs import mma_table, oxford_table, pck_table

    rows = [r for record in records for r in record.results if r.error is None and r.task not in HPATCHES_TASKS]
    protocols = {r.protocol for r in rows}
    parts = []
    if "mma" in protocols:
        parts.append("### MMA (D2-Net protocol, mutual nearest neighbours)\n\n" + mma_table(rows))
    if protocols & {"pck-gift", "pck-msnet"}:
        parts.append("### PCK\n\n" + pck_table(rows))
    if "oxford-ms" in protocols:
        parts.append("### Oxford matching score\n\n" + oxford_table(rows))
    return "\n\n".join(parts)


def run_report(record: Record) -> str:
    """The markdown printed after ``desc-bench run`` and written next to its record."""
    return records_report([record], title=f"desc-bench run ({record.metadata.get('time', '')})")


def records_report(records: list[Record], title: str = "desc-bench report") -> str:
    sections = [f"# {title}"]
    summary = summary_table(records)
    if summary:
        sections.append("## Summary\n\n" + summary)
    pairs = pair_section(records)
    if pairs:
        sections.append("## Image pairs\n\n" + pairs)
    errors = error_table(records)
    if errors:
        sections.append("## Skipped or failed\n\n" + errors)
    details = task_tables(r for record in records for r in record.results)
    if details:
        sections.append("## Per task (Easy / Hard / Tough)\n\n" + details)
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
