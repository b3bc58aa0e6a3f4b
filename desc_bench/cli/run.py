"""`desc-bench list` and `desc-bench run`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ..records.machine_load import loaded_machine_warnings
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


@main.command("list")
@data_dir_option
@plugin_option
@_friendly
def list_command(data_dir):
    """List descriptors and datasets with their availability."""
    from tabulate import tabulate

    from ..adapters.registry import descriptors
    from ..datasets.registry import datasets

    rows = [[d.name, d.dim, d.distance, d.kind, d.status, d.summary] for d in descriptors()]
    click.echo("Descriptors (options: NAME:key=value:key=value)\n")
    click.echo(tabulate(rows, headers=["name", "dim", "distance", "hooks", "status", "about"], tablefmt="github"))
    rows = [
        [d.name, d.kind, "ok" if d.available else f"missing: `desc-bench data download {d.name}`", d.summary]
        for d in datasets(data_dir)
    ]
    click.echo("\nDatasets\n")
    click.echo(tabulate(rows, headers=["name", "kind", "status", "about"], tablefmt="github"))
    from ..bench.benchmarks.base import registered as benchmarks

    rows = [
        [name, ", ".join(cls.accepts), ", ".join(cls.option_names()) or "-", cls.summary]
        for name, cls in benchmarks().items()
    ]
    click.echo("\nBenchmarks (--protocol NAME:key=value, several comma-separated)\n")
    click.echo(tabulate(rows, headers=["name", "datasets", "options", "about"], tablefmt="github"))
    from ..io.paths import data_root

    click.echo(f"\nData folder: {data_root(data_dir)} (--data-dir or DESC_BENCH_DATA to change)")


@main.command()
@click.option(
    "--descriptors", "-d", required=True, help="Comma-separated descriptors, e.g. sift-opencv,rootsift-opencv."
)
@click.option("--dataset", default="hpatches-synth", show_default=True, help="Dataset name (see `desc-bench list`).")
@data_dir_option
@click.option("--split", default="full", show_default=True, help="HPatches split: a, b, c, illum, view, full.")
@click.option("--tasks", default=None, help="HPatches tasks (default: verification,matching,retrieval).")
@click.option(
    "--protocol",
    default=None,
    help="Benchmarks, comma-separated, with options as name:key=value (`desc-bench list` shows them): "
    "HPatches python (default) or matlab; image pairs mma (default), pck-gift, pck-msnet, oxford-ms "
    "(default on oxford-affine). Several share the descriptors' features.",
)
@click.option(
    "--distance",
    type=click.Choice(["l2", "l1", "hamming"]),
    default=None,
    help="Override the descriptor's distance (float descriptors: l2 or l1).",
)
@click.option("--detector", default=None, help="Image pairs: keypoint detector (dog, harris, superpoint).")
@click.option("--budget", type=int, default=None, help="Image pairs: keypoint budget per image.")
@device_option
@weights_option
@click.option(
    "--output",
    "-o",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("runs"),
    show_default=True,
    help="Folder for the JSON record and the markdown tables.",
)
@click.option(
    "--time-batch",
    type=int,
    default=256,
    show_default=True,
    help="Record per-patch time at this batch size (image benchmarks: per image, one a call; 0: do not time).",
)
@click.option(
    "--ci-resamples",
    type=int,
    default=1000,
    show_default=True,
    help="Bootstrap resamples of the 95% confidence intervals over each benchmark's units (0: no intervals).",
)
@click.option("--ci-seed", type=int, default=0, show_default=True, help="Seed of the interval bootstrap.")
@click.option("--overwrite", is_flag=True, help="Recompute descriptors (and metrics) even if cached.")
@click.option("--re-eval", is_flag=True, help="Recompute only the metrics from cached descriptors.")
@executor_options
@quiet_option
@plugin_option
@_friendly
def run(
    descriptors,
    dataset,
    data_dir,
    split,
    tasks,
    protocol,
    distance,
    detector,
    budget,
    device,
    weights,
    output,
    time_batch,
    ci_resamples,
    ci_seed,
    overwrite,
    re_eval,
    executor,
    address,
    workers,
    quiet,
):
    """Describe a dataset with each descriptor, evaluate, print tables and write a JSON record.

    Exit status: 0 when everything asked for was measured; 2 for a bad request (nothing was run);
    3 when some descriptor or benchmark produced no result (their rows say why; the others are
    printed and recorded); 4 when the record could not be written (the tables are still printed).
    """
    from ..api import run as run_job
    from ..bench.runner import RunConfig

    config = RunConfig(
        descriptors=_split_list(descriptors),
        dataset=dataset,
        data_dir=data_dir,
        split=split,
        tasks=_split_list(tasks) if tasks is not None else None,
        protocol=protocol,
        distance=distance,
        device=device,
        weights=weights,
        output=output,
        overwrite=overwrite,
        re_eval=re_eval,
        progress=not quiet,
        time_batch=time_batch,
        detector=detector,
        budget=budget,
        ci_resamples=ci_resamples,
        ci_seed=ci_seed,
        executor=executor,
        address=address,
        workers=workers,
    )
    result = run_job(config, log=lambda msg: click.echo(msg, err=True))
    click.echo(result.markdown)
    for warning in loaded_machine_warnings(result.record):
        click.echo(f"warning: {warning}", err=True)
    if result.record_path:
        click.echo(f"record: {result.record_path}\ntables: {result.markdown_path}", err=True)
    if result.write_error:
        click.echo(f"error: {result.write_error}", err=True)
        sys.exit(4)
    if result.unmeasured:
        click.echo(f"error: not measured: {', '.join(result.unmeasured)} (see the rows above)", err=True)
        sys.exit(3)
