"""`desc-bench compare` (paired differences of two descriptors) and `desc-bench published`."""

from __future__ import annotations

from pathlib import Path

import click

from . import _friendly, _split_list, main

_records_argument = click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))


def _read(runs):
    from ..records.store import find_records, read_record

    return [read_record(p) for p in find_records(list(runs))]


@main.command("compare")
@_records_argument
@click.option("--descriptors", "-d", required=True, help="Two descriptors as the records name them: A,B.")
@click.option(
    "--ci-resamples",
    type=int,
    default=1000,
    show_default=True,
    help="Bootstrap resamples of the paired differences (at least 100).",
)
@click.option("--ci-seed", type=int, default=0, show_default=True, help="Seed of the bootstrap.")
@click.option("--level", type=float, default=0.95, show_default=True, help="Confidence level of the intervals.")
@_friendly
def compare_command(runs, descriptors, ci_resamples, ci_seed, level):
    """Per benchmark headline: A - B with its paired bootstrap interval, and whether it excludes zero.

    RUNS are JSON records or folders of them; both descriptors' rows must come from the same
    dataset and split. The same units (sequences) are resampled for both descriptors.
    """
    from ..errors import InputError
    from ..results.compare import compare, comparison_table
    from ..results.stats import check_settings

    names = _split_list(descriptors)
    if len(names) != 2:
        raise InputError(f"--descriptors takes two descriptors, A,B; got {len(names)}: {descriptors!r}")
    if ci_resamples == 0:
        raise InputError("--ci-resamples 0 gives no interval; compare needs at least 100")
    check_settings(ci_resamples, level)
    pairs = compare(_read(runs), names[0], names[1], ci_resamples, level, ci_seed)
    click.echo(comparison_table(pairs, names[0], names[1], level))


@main.command("published")
@_records_argument
@click.option("--all", "show_all", is_flag=True, help="Also list the rows that were not compared, with the reason.")
@_friendly
def published_command(runs, show_all):
    """Put a run's rows next to the published figures (paper or repository table, protocol variant).

    A row is compared only with a figure of the same descriptor, benchmark, dataset, split and
    variant, on complete real data (never an embedded or incomplete dataset). Exit status 1 when
    a compared row differs from its figure by more than the figure's tolerance.
    """
    import sys

    from ..results.published_check import DIFFERS, NOT_COMPARED, check_records, published_table

    checks = check_records(_read(runs))
    shown = checks if show_all else [c for c in checks if c.status != NOT_COMPARED]
    click.echo(published_table(shown))
    skipped = len(checks) - len(shown)
    if skipped:
        click.echo(f"\n{skipped} row(s) not compared (other data, split or protocol; incomplete data): see --all")
    sys.exit(1 if any(c.status == DIFFERS for c in checks) else 0)
