"""`desc-bench evaluate`, `export`, `report` and `check`: descriptors and records in and out."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import (
    _friendly,
    _split_list,
    data_dir_option,
    device_option,
    executor_options,
    main,
    plugin_option,
    quiet_option,
    weights_option,
)


@main.command()
@click.option(
    "--descriptor-dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Precomputed descriptors: DIR/<seq>/<type>.csv (official hpatches-benchmark layout).",
)
@click.option("--name", required=True, help="Name of the descriptor in the record and tables.")
@click.option(
    "--tasks-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Task files (official tasks/ layout); default: those of --dataset.",
)
@click.option("--dataset", default=None, help="Task files and patch counts (default: export's, else hpatches-synth).")
@data_dir_option
@click.option("--split", default="full", show_default=True)
@click.option("--tasks", default="verification,matching,retrieval", show_default=True)
@click.option("--protocol", default="python", show_default=True)
@click.option("--distance", type=click.Choice(["l2", "l1", "hamming"]), help="Default: export's, else l2.")
@click.option(
    "--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True
)
@quiet_option
@_friendly
def evaluate(descriptor_dir, name, tasks_dir, dataset, data_dir, split, tasks, protocol, distance, output, quiet):
    """Score precomputed descriptors (bring your own) on the HPatches tasks."""
    from ..api import evaluate_folder
    from ..bench.evaluate import EvaluateConfig

    config = EvaluateConfig(
        descriptor_dir=descriptor_dir,
        name=name,
        tasks_dir=tasks_dir,
        dataset=dataset,
        data_dir=data_dir,
        split=split,
        tasks=_split_list(tasks),
        protocol=protocol,
        distance=distance,
        output=output,
        progress=not quiet,
    )
    result = evaluate_folder(config)
    click.echo(result.markdown)
    if result.record_path:
        click.echo(f"record: {result.record_path}", err=True)


@main.command()
@click.option("--descriptor", "-d", "name", required=True, help="Descriptor (NAME:key=value ...).")
@click.option("--dataset", default="hpatches-synth", show_default=True)
@data_dir_option
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write <seq>/<type>.csv into.",
)
@device_option
@weights_option
@click.option("--overwrite", is_flag=True, help="Rewrite sequences that are already exported.")
@executor_options
@quiet_option
@plugin_option
@_friendly
def export(name, dataset, data_dir, output, device, weights, overwrite, executor, address, workers, quiet):
    """Write descriptors in the official layout (DIR/<seq>/<type>.csv) and DIR/desc-bench-export.json."""
    from ..adapters.registry import descriptor
    from ..bench.executors import ExecutorConfig, check_executor, open_executor
    from ..bench.export import export_descriptors
    from ..datasets.base import PatchSet
    from ..datasets.registry import open_dataset
    from ..errors import DatasetError

    data = open_dataset(dataset, data_dir=data_dir, progress=not quiet)
    if not isinstance(data, PatchSet):
        raise DatasetError(f"export needs a patch dataset; {dataset!r} is an image-pair dataset")
    check_executor(executor, address, workers)
    desc = descriptor(name, device=device, weights=weights)
    with open_executor(ExecutorConfig(executor, address, workers), data_dir, progress=False) as runner:
        out = export_descriptors(
            desc, data, output, overwrite=overwrite, progress=not quiet, executor=runner, spec=name, weights=weights
        )
    click.echo(f"wrote {out}")


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--output",
    "-o",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for report.md and the PNG figures.",
)
@_friendly
def report(runs, output):
    """Rebuild tables and figures from JSON records (files or folders of them)."""
    from ..results.report import build_report

    written = build_report(list(runs), output)
    for path in written:
        click.echo(f"wrote {path}")


@main.command()
@click.option(
    "--baseline",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="Baseline record (JSON) or folder of records.",
)
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--accuracy-tolerance",
    type=float,
    default=0.005,
    show_default=True,
    help="Largest allowed drop of any accuracy metric (fraction: 0.005 = 0.5 points).",
)
@click.option(
    "--speed-tolerance",
    type=float,
    default=0.25,
    show_default=True,
    help="Largest allowed slow-down of normalised speed (0.25 = 25 %).",
)
@click.option("--show-ok", is_flag=True, help="List unchanged and new rows too.")
@click.option("--common-only", is_flag=True, help="Compare only rows both hold (a run of fewer descriptors).")
@_friendly
def check(baseline, runs, accuracy_tolerance, speed_tolerance, show_ok, common_only):
    """Compare runs with a baseline; exit 1 with a markdown diff when accuracy or speed regressed."""
    from ..records.store import find_records, read_record
    from ..results.regression import check_tolerance, compare

    check_tolerance("--accuracy-tolerance", accuracy_tolerance, upper=1.0)  # NaN or < 0 would pass anything
    check_tolerance("--speed-tolerance", speed_tolerance)
    base = [read_record(p) for p in find_records([baseline])]
    current = [read_record(p) for p in find_records(list(runs))]
    comparison = compare(base, current, accuracy_tolerance, speed_tolerance, common_only=common_only)
    click.echo(comparison.markdown(show_ok=show_ok))
    sys.exit(1 if comparison.failed else 0)
