"""The package API behind the commands (top layer, beside cli.py): run a job, render its tables
from the record, write the record and its markdown. ``desc-bench run`` and ``desc_bench.run()``
are this module."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .bench.evaluate import EvaluateConfig, evaluate_dir
from .bench.runner import RunConfig
from .bench.runner import run as run_job
from .bench.timing import dense_table, timing_table
from .records.schema import Record
from .records.store import write_run
from .results.plots import plot_throughput
from .results.stats import add_intervals, check_settings
from .results.tables import run_report


@dataclass
class RunOutput:
    """What a run produced: the record, its markdown, where they were written, and what was not measured."""

    record: Record
    markdown: str
    record_path: Path | None = None
    markdown_path: Path | None = None
    unmeasured: tuple[str, ...] = ()
    write_error: str | None = None  # why the record could not be written (the tables were still made)


def run(config: RunConfig, log: Callable[[str], None] = lambda _: None) -> RunOutput:
    """Run the job, render its tables and write ``<output>/<dataset>-<time>.{json,md}``.

    The markdown is rendered before anything is written, so a failing write never hides the results.
    """
    check_settings(config.ci_resamples)
    result = run_job(config, log)
    add_intervals(result.record, config.ci_resamples, seed=config.ci_seed)
    output = RunOutput(result.record, run_report(result.record), unmeasured=tuple(result.unmeasured))
    if config.output is not None:
        try:
            output.record_path, output.markdown_path = write_run(
                config.output, config.dataset, result.record, output.markdown
            )
        except OSError as exc:
            output.write_error = f"cannot write the record into {config.output}: {exc.strerror or exc}"
    return output


def evaluate_folder(config: EvaluateConfig) -> RunOutput:
    """``desc-bench evaluate``: score a folder of precomputed descriptors, render and write the record."""
    record = add_intervals(evaluate_dir(config))
    output = RunOutput(record, run_report(record))
    if config.output is not None:
        output.record_path, output.markdown_path = write_run(
            config.output, f"evaluate-{config.name}", record, output.markdown
        )
    return output


@dataclass(frozen=True)
class TimingOutputs:
    """Files written by :func:`save_timing`."""

    record: Path
    table: Path
    plot: Path | None = None


def save_timing(record: Record, output: Path | str, stem: str = "timing") -> TimingOutputs:
    """Write ``<stem>-<time>.json`` (the record), ``.md`` (the tables) and ``.png`` (throughput).

    Names are new for each run, so earlier records in the same folder are never overwritten.
    """
    text = timing_table(record.timings) + "\n"
    if any(r.unit == "image" for r in record.timings):
        text += "\n" + dense_table(record.timings) + "\n"
    if record.calibration:
        text += f"\nCalibration: {record.calibration.name}: {record.calibration.median_ms:.2f} ms\n"
    record_path, table_path = write_run(output, stem, record, text)
    plot_path = None
    if any(r.error is None for r in record.timings):
        plot_path = plot_throughput(list(record.timings), record_path.with_suffix(".png"))
    return TimingOutputs(record_path, table_path, plot_path)
