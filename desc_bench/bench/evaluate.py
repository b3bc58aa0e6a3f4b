"""Bring your own descriptors: score precomputed descriptors in the official layout.

``DIR/<seq>/<type>.csv`` (one row per patch) with task files from ``--tasks-dir`` (the official
``tasks/`` layout: ``splits/splits.json``, ``verif_*`` and ``retr_*`` CSVs) or from a dataset.

Which dataset: ``--dataset`` when given, else the one named in the folder's export manifest
(``desc-bench export`` writes it), else ``hpatches-synth`` (the default of ``export`` and ``run``),
so ``desc-bench export -d X -o DIR`` followed by ``desc-bench evaluate --descriptor-dir DIR
--name X`` scores the files on the dataset they came from. The distance is likewise
``--distance``, else the manifest's (the descriptor's own), else L2.

Row counts: every file must have exactly one row per patch of its sequence. The patch counts come
from the dataset when its task files are used (no ``--tasks-dir``), else from the manifest; with
``--tasks-dir`` and no manifest only the lower bound is checked (no task file may name a patch
beyond the last row). A file with extra rows would change every nearest-neighbour search of the
matching task without any error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..adapters.base import Distance
from ..datasets.base import PatchSet, read_splits, split_named
from ..errors import DatasetError
from ..records.schema import Record, ResultRow, machine_metadata
from ..records.store import check_record_prefix
from .bootstrap import Bootstrap, with_pooled
from .export import MANIFEST_NAME, ExportManifest, read_descriptor_dir, read_manifest

DEFAULT_DATASET = "hpatches-synth"  # the default of `desc-bench export` and `desc-bench run`


@dataclass(frozen=True)
class EvaluateConfig:
    descriptor_dir: Path
    name: str
    tasks_dir: Path | None = None
    dataset: str | None = None  # None: the export manifest's dataset, else DEFAULT_DATASET
    data_dir: Path | None = None
    split: str = "full"
    tasks: tuple[str, ...] = ("verification", "matching", "retrieval")
    protocol: str = "python"
    distance: str | None = None  # None: the export manifest's distance, else "l2"
    output: Path | None = Path("runs")
    progress: bool = True


@dataclass(frozen=True)
class _Source:
    """Where the task files and the expected patch counts come from."""

    dataset: str  # the name written into the rows
    tasks_dir: Path
    patchset: PatchSet | None  # the opened dataset (None with --tasks-dir)


def _source(config: EvaluateConfig, manifest: ExportManifest | None) -> _Source:
    name = config.dataset or (manifest.dataset if manifest else DEFAULT_DATASET)
    if config.tasks_dir is not None:
        return _Source(name, Path(config.tasks_dir), None)
    from ..datasets.registry import dataset

    data = dataset(name, data_dir=config.data_dir)
    if not isinstance(data, PatchSet):
        raise DatasetError(f"evaluate scores HPatches patch tasks; {name!r} is an image-pair dataset")
    if manifest is not None and manifest.dataset == name and manifest.dataset_version != data.version:
        raise DatasetError(
            f"the descriptors in {config.descriptor_dir} were exported from {name} version "
            f"{manifest.dataset_version}, but the dataset is now version {data.version}: export them again"
        )
    return _Source(name, data.tasks_dir, data)


def _expected_counts(source: _Source, manifest: ExportManifest | None, test: tuple[str, ...], folder: Path):
    """(sequence -> patch count, where the counts come from), or (None, "") when unknown."""
    if source.patchset is not None:
        return {s: source.patchset.patch_count(s) for s in test}, f"dataset {source.dataset}"
    if manifest is not None:
        return dict(manifest.patch_counts), f"the export manifest {folder / MANIFEST_NAME}"
    return None, ""


def evaluate_dir(config: EvaluateConfig) -> Record:
    """Score the descriptor folder on the HPatches tasks; the record (rendered and written by the API)."""
    from ..datasets.tasks import TaskFiles
    from .hpatches_tasks import evaluate_all, row_fields

    if config.output is not None:
        check_record_prefix(f"evaluate-{config.name}")  # before any work: --name "a/b" is refused
    manifest = read_manifest(config.descriptor_dir)
    source = _source(config, manifest)
    split = split_named(read_splits(source.tasks_dir / "splits" / "splits.json"), config.split)
    distance = Distance(config.distance or (manifest.distance if manifest else Distance.L2.value))
    missing = [s for s in split.test if not (Path(config.descriptor_dir) / s).is_dir()]
    if missing:
        raise DatasetError(
            f"split {split.name} needs {len(missing)} sequence(s) missing from "
            f"{config.descriptor_dir}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    counts, counts_source = _expected_counts(source, manifest, split.test, Path(config.descriptor_dir))
    descs = read_descriptor_dir(
        config.descriptor_dir,
        binary=distance is Distance.HAMMING,
        progress=config.progress,
        sequences=split.test,
        expected_counts=counts,
        counts_source=counts_source,
    )
    scores = evaluate_all(
        descs,
        TaskFiles(source.tasks_dir),
        split,
        distance,
        which=tuple(config.tasks),
        protocol=config.protocol,
        progress=config.progress,
        ci=Bootstrap(),
    )
    rows = []
    for s in scores:
        row = ResultRow(
            descriptor=config.name,
            weights="precomputed",
            dataset=source.dataset,
            split=config.split,
            protocol=config.protocol,
            distance=distance.value,
            mode="precomputed",
            **row_fields(s),
        )
        rows.append(with_pooled(row, s.pooled(row.key())) if s.pooled else row)
    meta = machine_metadata(
        "cpu",
        command="evaluate",
        descriptor_dir=str(config.descriptor_dir),
        tasks_dir=str(source.tasks_dir),
        exported_by=manifest.descriptor if manifest else None,
        row_counts_checked_against=counts_source or "task files only (no manifest, --tasks-dir)",
    )
    return Record(metadata=meta, results=rows)
