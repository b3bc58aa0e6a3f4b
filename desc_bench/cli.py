"""``desc-bench``: the command-line entry point (click).

Descriptors are named as in ``desc-bench list``; options follow the name, separated by colons:
``sift-torch-mp:patch_size=32:rootsift=true``. Several descriptors are comma-separated.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from .errors import DescBenchError


def _friendly(func):
    """Print user errors as one clear line (exit status 2) instead of a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except DescBenchError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo(
                "interrupted: finished sequences (HPatches) and descriptors (image pairs) are cached; "
                "rerun the same command to resume",
                err=True,
            )
            sys.exit(130)

    return wrapper


def _split_list(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _ints(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in _split_list(value))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    envvar="DESC_BENCH_DATA",
    help="Dataset folder (env DESC_BENCH_DATA; default: the user cache dir).",
)
device_option = click.option("--device", default="cpu", show_default=True, help="torch device: cpu, cuda, cuda:1 ...")
weights_option = click.option(
    "--weights", default=None, help="Weight variant name or path to a weight file (learned descriptors)."
)
quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress bars.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="desc-bench")
def main():
    """Benchmark local image descriptors: accuracy (HPatches, image pairs) and speed."""


@main.command("list")
@data_dir_option
@_friendly
def list_command(data_dir):
    """List descriptors and datasets with their availability."""
    from tabulate import tabulate

    from .adapters.registry import descriptors
    from .datasets.registry import datasets

    rows = [[d.name, d.dim, d.distance, d.kind, d.status, d.summary] for d in descriptors()]
    click.echo("Descriptors (options: NAME:key=value:key=value)\n")
    click.echo(tabulate(rows, headers=["name", "dim", "distance", "hooks", "status", "about"], tablefmt="github"))
    rows = [
        [d.name, d.kind, "ok" if d.available else f"missing: `desc-bench data download {d.name}`", d.summary]
        for d in datasets(data_dir)
    ]
    click.echo("\nDatasets\n")
    click.echo(tabulate(rows, headers=["name", "kind", "status", "about"], tablefmt="github"))
    from .io.paths import data_root

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
    help="Record per-patch time at this batch size (0: do not time).",
)
@click.option("--overwrite", is_flag=True, help="Recompute descriptors (and metrics) even if cached.")
@click.option("--re-eval", is_flag=True, help="Recompute only the metrics from cached descriptors.")
@quiet_option
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
    overwrite,
    re_eval,
    quiet,
):
    """Describe a dataset with each descriptor, evaluate, print tables and write a JSON record.

    Exit status: 0 when everything asked for was measured; 2 for a bad request (nothing was run);
    3 when some descriptor or benchmark produced no result (their rows say why; the others are
    printed and recorded); 4 when the record could not be written (the tables are still printed).
    """
    from .api import run as run_job
    from .bench.runner import RunConfig

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
    )
    result = run_job(config, log=lambda msg: click.echo(msg, err=True))
    click.echo(result.markdown)
    if result.record_path:
        click.echo(f"record: {result.record_path}\ntables: {result.markdown_path}", err=True)
    if result.write_error:
        click.echo(f"error: {result.write_error}", err=True)
        sys.exit(4)
    if result.unmeasured:
        click.echo(f"error: not measured: {', '.join(result.unmeasured)} (see the rows above)", err=True)
        sys.exit(3)


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
@click.option("--dataset", default="hpatches", show_default=True, help="Dataset whose task files are used.")
@data_dir_option
@click.option("--split", default="full", show_default=True)
@click.option("--tasks", default="verification,matching,retrieval", show_default=True)
@click.option("--protocol", default="python", show_default=True)
@click.option("--distance", type=click.Choice(["l2", "l1", "hamming"]), default="l2", show_default=True)
@click.option(
    "--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True
)
@quiet_option
@_friendly
def evaluate(descriptor_dir, name, tasks_dir, dataset, data_dir, split, tasks, protocol, distance, output, quiet):
    """Score precomputed descriptors (bring your own) on the HPatches tasks."""
    from .api import evaluate_folder
    from .bench.evaluate import EvaluateConfig

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
@quiet_option
@_friendly
def export(name, dataset, data_dir, output, device, weights, overwrite, quiet):
    """Write descriptors in the official hpatches-benchmark layout (DIR/<seq>/<type>.csv)."""
    from .adapters.registry import descriptor
    from .bench.export import export_descriptors
    from .datasets.base import PatchSet
    from .datasets.registry import dataset as open_dataset
    from .errors import DatasetError

    data = open_dataset(dataset, data_dir=data_dir)
    if not isinstance(data, PatchSet):
        raise DatasetError(f"export needs a patch dataset; {dataset!r} is an image-pair dataset")
    desc = descriptor(name, device=device, weights=weights)
    out = export_descriptors(desc, data, output, overwrite=overwrite, progress=not quiet)
    click.echo(f"wrote {out}")


@main.group()
def data():
    """Dataset downloads."""


@data.command("download")
@click.argument("name")
@data_dir_option
@quiet_option
@_friendly
def data_download(name, data_dir, quiet):
    """Download (and verify, and safely extract) a dataset, e.g. `hpatches`."""
    from .datasets.registry import download

    path = download(name, data_dir=data_dir, progress=not quiet)
    click.echo(f"{name}: ready at {path}")


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
    from .results.report import build_report

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
@click.option("--show-ok", is_flag=True, help="List unchanged rows too.")
@_friendly
def check(baseline, runs, accuracy_tolerance, speed_tolerance, show_ok):
    """Compare runs with a baseline; exit 1 with a markdown diff when accuracy or speed regressed."""
    from .records.store import find_records, read_record
    from .results.regression import compare

    base = [read_record(p) for p in find_records([baseline])]
    current = [read_record(p) for p in find_records(list(runs))]
    comparison = compare(base, current, accuracy_tolerance, speed_tolerance)
    click.echo(comparison.markdown(show_ok=show_ok))
    sys.exit(1 if comparison.failed else 0)


@main.command("time")
@click.option("--descriptors", "-d", required=True, help="Comma-separated descriptors to time.")
@device_option
@click.option("--batch-sizes", default="1,16,256,1024", show_default=True, help="Comma-separated batch sizes.")
@click.option("--patch-size", type=int, default=65, show_default=True, help="Patch side in pixels.")
@click.option("--image-size", default=None, help="Time dense descriptors per image at WxH, e.g. 1024x436.")
@click.option("--threads", type=int, default=0, help="Pin torch/OpenCV threads (0: keep the current count).")
@click.option("--fp16", is_flag=True, help="Half precision (descriptors that support it).")
@click.option("--tf32", is_flag=True, help="Allow TF32 matmuls on GPU (off by default).")
@click.option("--repeats", type=int, default=10, show_default=True, help="Timed repeats per batch size.")
@click.option(
    "--warmup", type=int, default=2, show_default=True, help="Untimed calls before timing (first reported apart)."
)
@click.option(
    "--random-weights", is_flag=True, help="Learned descriptors without weights: random weights, timing only."
)
@click.option(
    "--no-calibration", is_flag=True, help="Skip the calibration workload (speeds then cannot be normalised)."
)
@click.option(
    "--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=Path("runs"), show_default=True
)
@quiet_option
@_friendly
def time_command(
    descriptors,
    device,
    batch_sizes,
    patch_size,
    image_size,
    threads,
    fp16,
    tf32,
    repeats,
    warmup,
    random_weights,
    no_calibration,
    output,
    quiet,
):
    """Time descriptors per patch (or per image) on CPU or GPU, with batching. See docs/timing.md."""
    from .api import save_timing
    from .bench.timing import TimingConfig, dense_table, time_descriptors, timing_table

    config = TimingConfig(
        descriptors=descriptors,
        device=device,
        batch_sizes=batch_sizes,
        patch_size=patch_size,
        image_size=image_size,
        threads=threads,
        fp16=fp16,
        tf32=tf32,
        repeats=repeats,
        warmup=warmup,
        random_weights=random_weights,
        calibrate=not no_calibration,
    )
    record = time_descriptors(config, progress=not quiet)
    click.echo(timing_table(record.timings))
    if any(r.unit == "image" for r in record.timings):
        click.echo("\n" + dense_table(record.timings))
    if record.calibration:
        click.echo(f"\ncalibration: {record.calibration.name}: {record.calibration.median_ms:.2f} ms")
    out = save_timing(record, output)
    click.echo(f"record: {out.record}\ntable: {out.table}" + (f"\nplot: {out.plot}" if out.plot else ""), err=True)


@main.group()
def weights():
    """Pretrained weights: list, fetch (verified download) and add (import a file you have)."""


@weights.command("list")
@_friendly
def weights_list():
    """Every known weight file: descriptor, variant, licence, training data, and whether it is cached."""
    from tabulate import tabulate

    from .adapters.weights import weights_table

    rows = [
        [
            w.descriptor,
            w.variant + (" (default)" if w.default else ""),
            w.trained_on + (" [saw HPatches]" if w.saw_hpatches else ""),
            w.licence,
            "cached" if w.cached else w.command,
        ]
        for w in weights_table()
    ]
    click.echo(tabulate(rows, headers=["descriptor", "variant", "trained on", "licence", "status"], tablefmt="github"))


@weights.command("fetch")
@click.argument("name")
@click.option("--variant", default=None, help="Weight variant (default: the descriptor's default weights).")
@quiet_option
@_friendly
def weights_fetch(name, variant, quiet):
    """Download weights from their upstream mirrors and verify them (git blob id)."""
    from .adapters.weights import fetch_weights

    click.echo(f"{name}: verified weights at {fetch_weights(name, variant, progress=not quiet)}")


@weights.command("add")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--variant", default=None, help="Weight variant (default: the descriptor's default weights).")
@_friendly
def weights_add(name, path, variant):
    """Import a weight file you already have, after verifying it (checksum, keys and shapes)."""
    from .adapters.weights import add_weights

    click.echo(f"{name}: verified and stored at {add_weights(name, path, variant)}")
