"""`desc-bench time`."""

from __future__ import annotations

from pathlib import Path

import click

from . import (
    _friendly,
    device_option,
    main,
    plugin_option,
    quiet_option,
)


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
@plugin_option
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
    from ..api import save_timing
    from ..bench.timing import TimingConfig, dense_table, time_descriptors, timing_table

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
    from ..records.machine_load import loaded_machine_warnings

    for warning in loaded_machine_warnings(record):
        click.echo(f"warning: {warning}", err=True)
    out = save_timing(record, output)
    click.echo(f"record: {out.record}\ntable: {out.table}" + (f"\nplot: {out.plot}" if out.plot else ""), err=True)
