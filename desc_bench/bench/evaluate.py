"""Bring your own descriptors: score precomputed descriptors in the official layout.

``DIR/<seq>/<type>.csv`` (one row per patch) with task files from ``--tasks-dir`` (the official
``tasks/`` layout: ``splits/splits.json``, ``verif_*`` and ``retr_*`` CSVs) or from a dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..adapters.base import Distance
from ..datasets.base import read_splits, split_named
from ..errors import DatasetError
from ..records.schema import Record, ResultRow, machine_metadata
from ..records.store import write_run
from .export import read_descriptor_dir
from .runner import RunOutput


@dataclass(frozen=True)
class EvaluateConfig:
    descriptor_dir: Path
    name: str
    tasks_dir: Path | None = None
    dataset: str = "hpatches"
    data_dir: Path | None = None
    split: str = "full"
    tasks: tuple[str, ...] = ("verification", "matching", "retrieval")
    protocol: str = "python"
    distance: str = "l2"
    output: Path | None = Path("runs")
    progress: bool = True


def _tasks_dir(config: EvaluateConfig) -> Path:
    if config.tasks_dir is not None:
        return Path(config.tasks_dir)
    from ..datasets.base import PatchSet
    from ..datasets.registry import dataset

    data = dataset(config.dataset, data_dir=config.data_dir)
    if not isinstance(data, PatchSet):
        raise DatasetError(f"evaluate scores HPatches patch tasks; {config.dataset!r} is an image-pair dataset")
    return data.tasks_dir


def evaluate_dir(config: EvaluateConfig) -> RunOutput:
    from ..datasets.tasks import TaskFiles
    from ..results.tables import run_report
    from .hpatches_tasks import evaluate_all, row_fields

    tasks_dir = _tasks_dir(config)
    split = split_named(read_splits(tasks_dir / "splits" / "splits.json"), config.split)
    distance = Distance(config.distance)
    descs = read_descriptor_dir(config.descriptor_dir, binary=distance is Distance.HAMMING, progress=config.progress)
    missing = [s for s in split.test if s not in descs]
    if missing:
        raise DatasetError(
            f"split {split.name} needs {len(missing)} sequence(s) missing from "
            f"{config.descriptor_dir}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    scores = evaluate_all(
        descs,
        TaskFiles(tasks_dir),
        split,
        distance,
        which=tuple(config.tasks),
        protocol=config.protocol,
        progress=config.progress,
    )
    rows = [
        ResultRow(
            descriptor=config.name,
            weights="precomputed",
            dataset=config.dataset,
            split=config.split,
            protocol=config.protocol,
            distance=distance.value,
            mode="precomputed",
            **row_fields(s),
        )
        for s in scores
    ]
    meta = machine_metadata(
        "cpu", command="evaluate", descriptor_dir=str(config.descriptor_dir), tasks_dir=str(tasks_dir)
    )
    record = Record(metadata=meta, results=rows)
    output = RunOutput(record, run_report(record))
    if config.output is not None:
        output.record_path, output.markdown_path = write_run(
            config.output, f"evaluate-{config.name}", record, output.markdown
        )
    return output
