"""``desc-bench``: the command-line entry point (click).

Descriptors are named as in ``desc-bench list``; options follow the name, separated by colons:
``sift-torch-mp:patch_size=32:rootsift=true``. Several descriptors are comma-separated.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from ..errors import DescBenchError


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


def executor_options(func):
    """``--executor``, ``--address`` and ``--workers``: where the descriptors run (docs/distributed.md)."""
    func = click.option(
        "--workers",
        type=click.IntRange(min=1),
        default=None,
        help="Ray: workers (actors), each built once per descriptor (default: one per CPU, one per GPU for cuda).",
    )(func)
    func = click.option(
        "--address",
        default=None,
        metavar="auto|HOST:PORT",
        help="Ray: join this cluster (auto: the one `ray start` made here); default: start a local one.",
    )(func)
    return click.option(
        "--executor",
        type=click.Choice(["serial", "ray"]),
        default="serial",
        show_default=True,
        envvar="DESC_BENCH_EXECUTOR",
        help="Where descriptors run: this process, or a Ray cluster (same record; env DESC_BENCH_EXECUTOR).",
    )(func)


def _load_plugins(ctx, param, values):
    """Import --plugin files/modules while the options are parsed, before the command body runs."""
    from ..adapters.registry import load_plugins

    try:
        load_plugins(values)
    except DescBenchError as exc:
        raise click.BadParameter(str(exc), ctx=ctx, param=param) from None


plugin_option = click.option(
    "--plugin",
    multiple=True,
    expose_value=False,
    callback=_load_plugins,
    metavar="FILE.py|MODULE",
    help="Import your own descriptors from a file or module (repeatable; env DESC_BENCH_PLUGINS too).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="desc-bench")
def main():
    """Benchmark local image descriptors: accuracy (HPatches, image pairs, Brown) and speed."""
    from ..io.interrupt import terminate_as_interrupt

    terminate_as_interrupt()  # SIGTERM cleans up like Ctrl-C (staging folders, partial files)


from . import manage, run, scores, stats, timing  # noqa: E402, F401  (register the commands)
