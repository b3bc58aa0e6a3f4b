"""`desc-bench data`, `weights` and `cache`: datasets, weight files and caches."""

from __future__ import annotations

from pathlib import Path

import click

from ..datasets.made_patches import MakeParams
from . import (
    _friendly,
    data_dir_option,
    main,
    quiet_option,
)


@main.group()
def data():
    """Dataset downloads, and patch datasets made from your own image sequences."""


@data.command("download")
@click.argument("name")
@data_dir_option
@quiet_option
@_friendly
def data_download(name, data_dir, quiet):
    """Download (and verify, and safely extract) a dataset, e.g. `hpatches`."""
    from ..datasets.registry import download

    path = download(name, data_dir=data_dir, progress=not quiet)
    click.echo(f"{name}: ready at {path}")


@data.command("make-patches")
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of sequences: <seq>/1.ppm..6.ppm + H_1_2..H_1_6 (HPatches) or <seq>/img1..6 + H1to2p..6p (Oxford).",
)
@click.option("--name", required=True, help="Name of the new dataset (its folder under the data root).")
@click.option("--patches", default=1000, show_default=True, help="At most this many patches per sequence.")
@click.option("--seed", default=0, show_default=True, help="Seed of the frame choice and the jitters.")
@click.option(
    "--pairs", default=MakeParams.n_pairs, show_default=True, help="Verification pairs of each kind per split."
)
@click.option("--queries", default=MakeParams.n_queries, show_default=True, help="Retrieval queries per split.")
@click.option(
    "--distractors", default=MakeParams.n_distractors, show_default=True, help="Retrieval distractors per split."
)
@click.option("--overwrite", is_flag=True, help="Replace a dataset made earlier under this name.")
@data_dir_option
@quiet_option
@_friendly
def data_make_patches(source, name, patches, seed, pairs, queries, distractors, overwrite, data_dir, quiet):
    """Turn image sequences with homographies into an HPatches-style patch dataset (the HPatches
    extraction: DoG frames, Easy/Hard/Tough jitter, 65x65 patches; official task files), usable as
    `desc-bench run --dataset NAME`."""
    from ..datasets.made_patches import make_patches
    from ..io.paths import data_root

    params = MakeParams(patches, seed, n_pairs=pairs, n_queries=queries, n_distractors=distractors)
    path = make_patches(source, name, data_root(data_dir), params, overwrite=overwrite, progress=not quiet)
    click.echo(f"{name}: made at {path}; run it with `desc-bench run -d sift-opencv --dataset {name}`")


@main.group()
def weights():
    """Pretrained weights: list, fetch (verified download) and add (import a file you have)."""


@weights.command("list")
@_friendly
def weights_list():
    """Every known weight file: descriptor, variant, licence, training data, and whether it is cached."""
    from tabulate import tabulate

    from ..adapters.weights import weights_table

    rows = [
        [
            w.descriptor,
            w.variant + (" (default)" if w.default else ""),
            w.trained_on + (" [saw HPatches]" if w.saw_hpatches else ""),
            w.licence,
            "cached" if w.cached else ("cached copy does not verify: " if w.damaged else "") + w.command,
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
    from ..adapters.weights import fetch_weights

    click.echo(f"{name}: verified weights at {fetch_weights(name, variant, progress=not quiet)}")


@weights.command("add")
@click.argument("name")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--variant", default=None, help="Weight variant (default: the descriptor's default weights).")
@_friendly
def weights_add(name, path, variant):
    """Import a weight file you already have, after verifying it (checksum, keys and shapes)."""
    from ..adapters.weights import add_weights

    click.echo(f"{name}: verified and stored at {add_weights(name, path, variant)}")


@main.group()
def cache():
    """What is cached (features and scores per descriptor and dataset), and clearing it."""


@cache.command("list")
@_friendly
def cache_list():
    """Cached features and scores with their sizes (under DESC_BENCH_CACHE)."""
    from tabulate import tabulate

    from ..bench.features import cache_entries
    from ..io.paths import cache_root

    root = cache_root()
    entries = cache_entries(root)
    rows = [[e.kind, e.dataset, e.descriptor, e.files, f"{e.bytes / 2**20:.1f}"] for e in entries]
    click.echo(tabulate(rows, headers=["kind", "dataset", "descriptor", "files", "MiB"], tablefmt="github"))
    click.echo(f"\nCache folder: {root} ({sum(e.bytes for e in entries) / 2**20:.1f} MiB)")


@cache.command("clear")
@click.option("--descriptor", default=None, help="Only this descriptor (its name, or name:options).")
@click.option("--dataset", default=None, help="Only this dataset.")
@_friendly
def cache_clear(descriptor, dataset):
    """Delete cached features and scores (all, or those of a descriptor and/or a dataset)."""
    from ..bench.features import clear_cache
    from ..io.paths import cache_root

    removed = clear_cache(cache_root(), descriptor, dataset)
    click.echo(f"removed {len(removed)} cache folder(s), {sum(e.bytes for e in removed) / 2**20:.1f} MiB")
