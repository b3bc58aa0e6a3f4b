"""``desc-bench report``: rebuild the markdown report and PNG figures from JSON records alone."""

from __future__ import annotations

from pathlib import Path

from ..errors import RecordError
from ..io.atomic import write_text
from ..records.store import find_records, read_record
from .compare import comparison_section
from .drift import mixed_versions
from .published_check import published_section
from .tables import HPATCHES_TASKS, records_report


def build_report(paths: list[Path], output: Path) -> list[Path]:
    """Read every record under ``paths``; write ``report.md`` and the figures into ``output``."""
    from . import pareto, plots

    files = find_records(paths)
    if not files:
        raise RecordError(f"no JSON records found in {', '.join(map(str, paths))}")
    records = [read_record(p) for p in files]
    output = Path(output)
    written: list[Path] = []
    figures: list[str] = []
    rows = [r for rec in records for r in rec.results if r.error is None]
    if any(r.task in HPATCHES_TASKS for r in rows):
        written.append(plots.plot_hpatches(rows, output / "hpatches.png"))
        figures.append("![HPatches: verification, matching and retrieval](hpatches.png)")
    pair_rows = [r for r in rows if r.task not in HPATCHES_TASKS]
    if any(r.metric.startswith("mma@") for r in pair_rows):
        written.append(plots.plot_mma(pair_rows, output / "mma.png"))
        figures.append("![MMA over thresholds](mma.png)")
    names = [p.stem for p in files] if len({p.stem for p in files}) == len(files) else [str(p) for p in files]
    timed = [(name, t) for name, rec in zip(names, records) for t in rec.timings if t.error is None]
    if len({t.batch for _, t in timed}) > 1:  # one line per record: rows of two records are never joined
        timings, sources = [t for _, t in timed], [stem for stem, _ in timed]
        written.append(plots.plot_throughput(timings, output / "throughput.png", sources=sources))
        figures.append("![Throughput against batch size](throughput.png)")
    markdown = records_report(records)
    fronts = pareto.panels(records)
    if fronts:
        written.append(pareto.plot_pareto(fronts, output / "pareto.png"))
        markdown += "\n## Accuracy against speed (Pareto front)\n\n" + pareto.front_table(fronts) + "\n"
        markdown += "\n![Accuracy against speed](pareto.png)\n"
    drift = mixed_versions(records)
    if drift:
        markdown += "\n" + "\n".join(f"- warning: {w}" for w in drift) + "\n"
    published = published_section(records)
    if published:
        markdown += "\n## Published figures\n\n" + published + "\n"
    paired = comparison_section(records)
    if paired:
        markdown += "\n## Paired differences (against the best on each headline)\n\n" + paired + "\n"
    if figures:
        markdown += "\n" + "\n\n".join(figures) + "\n"
    markdown += "\nSources: " + ", ".join(f"`{p}`" for p in files) + "\n"
    written.insert(0, write_text(output / "report.md", markdown))
    return written
