"""HPatches patch tasks (Balntas et al., CVPR 2017): verification, matching and retrieval.

Two protocols, registered as two benchmarks with one body: ``python`` (the official python code of
hpatches-benchmark, the default) and ``matlab`` (the MATLAB code of the paper's figures; squared L2
and VLFeat AP, not comparable with python numbers). The computation is
:mod:`desc_bench.bench.hpatches_tasks`; this file says what the benchmark needs (the 16 patch files
of every test sequence of the split, described once per sequence) and how its rows are quoted.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...adapters.base import Descriptor, Distance
from ...adapters.prepare import patch_mode
from ...datasets.base import PATCH_TYPES, PatchSet
from ...datasets.tasks import TaskFiles
from ...errors import InputError
from ...io.progress import bar
from ..bootstrap import with_pooled
from ..features import FeatureStore, files_fingerprint, stable_hash
from ..hpatches_tasks import TASKS, evaluate_all, row_fields
from .base import Benchmark, Context, Headline, Subject, TableSpec


@dataclass(frozen=True)
class HPatchesOptions:
    tasks: tuple[str, ...] = TASKS  # any of verification, matching, retrieval
    distance: str = ""  # "" = the descriptor's own; l2 or l1 for float descriptors

    def __post_init__(self):
        tasks = self.tasks if isinstance(self.tasks, tuple) else tuple(str(self.tasks).split(","))
        tasks = tuple(t.strip() for t in tasks if t.strip())
        unknown = sorted(set(tasks) - set(TASKS))
        if unknown or not tasks:
            raise InputError(f"unknown or no task(s) {unknown}; valid tasks: {', '.join(TASKS)}")
        object.__setattr__(self, "tasks", tuple(t for t in TASKS if t in tasks))
        if self.distance not in ("", "l2", "l1", "hamming"):
            raise InputError(f"unknown distance {self.distance!r}; valid: l2, l1, hamming")


def describe_sequence(desc: Descriptor, patches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Describe the 16 patch files of a sequence in one call: type -> ``(N, dim)`` numpy array."""
    count = len(patches["ref"])
    stacked = np.concatenate([patches[t] for t in PATCH_TYPES])[:, None]
    described = desc.compute_patches(torch.from_numpy(stacked)).cpu().numpy()
    return {t: described[i * count : (i + 1) * count] for i, t in enumerate(PATCH_TYPES)}


def sequence_files(patchset: PatchSet, sequence: str) -> list[Path]:
    return [patchset.root / sequence / f"{t}.png" for t in PATCH_TYPES]


def _tasks_files(tasks_dir: Path, split: str) -> list[Path]:
    return sorted(Path(tasks_dir).glob(f"*_split-{split}.csv")) + [Path(tasks_dir) / "splits" / "splits.json"]


_TABLE_NOISE = (("easy", "Easy"), ("hard", "Hard"), ("tough", "Tough"), ("mean", "mean"))


class HPatchesPython(Benchmark):
    name = "python"
    summary = "HPatches verification, matching, retrieval as the official python code computes them"
    accepts = ("patches",)
    Options = HPatchesOptions
    tasks = TASKS
    uses_splits = True
    time_unit = "patch"
    headlines = (
        Headline("verification mAP", "verification", "ap", (("noise", "mean"), ("subset", "all"), ("variant", "mean"))),
        Headline("matching mAP", "matching", "map", (("noise", "mean"), ("subset", "all"), ("variant", ""))),
        Headline("retrieval mAP", "retrieval", "map", (("noise", "mean"), ("subset", "all"), ("variant", "pool=mean"))),
    )
    tables = (
        TableSpec(
            "{descriptor}: {task} ({dataset}, split {split}, {protocol} protocol, {distance}, %)",
            metrics=("ap", "auc", "map"),
            rows=("metric", "variant", "subset"),
            columns="noise",
            order=("easy", "hard", "tough", "mean"),
            groups=("descriptor", "weights", "dataset", "split", "protocol", "distance", "task"),
            labels=_TABLE_NOISE,
            percent=True,
        ),
    )

    @property
    def protocol(self) -> str:
        return self.name

    def check_data(self, dataset: PatchSet, context: Context) -> None:
        dataset.split(context.split)  # UnknownNameError lists the splits

    def mode(self, descriptor: Descriptor) -> str:
        return patch_mode(descriptor)

    def distance(self, descriptor: Descriptor) -> Distance:
        if not self.options.distance:
            return descriptor.distance
        wanted = Distance(self.options.distance)
        if (wanted is Distance.HAMMING) != (descriptor.distance is Distance.HAMMING):
            raise InputError(
                f"{descriptor.name} is compared with {descriptor.distance.value}; it cannot use {wanted.value}"
            )
        return wanted

    def evaluation_key(self, dataset: PatchSet, context: Context) -> str:
        return stable_hash(context.split, files_fingerprint(_tasks_files(dataset.tasks_dir, context.split)))

    def data_files(self, dataset: PatchSet, context: Context) -> list[Path]:
        return [f for seq in dataset.split(context.split).test for f in sequence_files(dataset, seq)]

    def features(self, descriptor: Descriptor, dataset: PatchSet, store: FeatureStore, context: Context) -> Any:
        split = dataset.split(context.split)
        out = {}
        for seq in bar(split.test, desc=f"extract {descriptor.describe()}", unit="seq", enabled=context.progress):
            out[seq] = store.arrays(
                seq, sequence_files(dataset, seq), lambda seq=seq: describe_sequence(descriptor, dataset.load(seq))
            )
        return out

    def evaluate(self, features: Any, dataset: PatchSet, subject: Subject, context: Context):
        split = dataset.split(context.split)
        scores = evaluate_all(
            features,
            TaskFiles(dataset.tasks_dir),
            split,
            subject.distance,
            which=self.options.tasks,
            protocol=self.protocol,
            progress=context.progress,
            ci=context.ci,
        )
        rows = [self.row(subject, dataset.name, context.split, **row_fields(s)) for s in scores]
        return [with_pooled(r, s.pooled(r.key())) if s.pooled else r for r, s in zip(rows, scores)]

    def error_rows(self, descriptor, weights, dataset, split, message):
        rows = super().error_rows(descriptor, weights, dataset, split, message)
        return [r for r in rows if r.task in self.options.tasks]


class HPatchesMatlab(HPatchesPython):
    name = "matlab"
    summary = "HPatches tasks as the MATLAB code of the paper's figures computes them (squared L2, VLFeat AP)"
    headlines = tuple(
        dataclasses.replace(h, where=(*h.where[:2], ("variant", "pool=all"))) if h.task == "retrieval" else h
        for h in HPatchesPython.headlines
    )
