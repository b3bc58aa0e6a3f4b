"""Extract -> cache -> evaluate -> record: the job behind ``desc-bench run``.

Patch datasets (HPatches layout): every sequence of the split is described once per descriptor
(cached per sequence, resumable), then the HPatches tasks are evaluated (scores cached too, so
``--re-eval`` recomputes only the metrics and ``--overwrite`` recomputes the descriptors).
Image-pair datasets: each descriptor is evaluated with the named pair protocol.

A descriptor that cannot run (missing weights or library) or fails becomes rows with an error
string, and the run goes on with the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..adapters.base import Descriptor, Distance
from ..adapters.prepare import patch_mode
from ..adapters.registry import descriptor as build_descriptor
from ..adapters.registry import descriptor_class, parse_spec
from ..datasets.base import PATCH_TYPES, PatchSet
from ..errors import DescBenchError, InputError, UnknownNameError
from ..records.schema import Record, ResultRow, TimingRow, config_json, machine_metadata
from ..records.store import write_run
from .cache import DescriptorCache, stable_hash

PATCH_TASKS = ("verification", "matching", "retrieval")
EXTRACTION_VERSION = "1"  # bump when extraction changes in a way that changes descriptors
# Failures of one descriptor that become error rows while the run goes on with the others: user
# errors, and the errors torch and numpy raise at run time (out of memory, unsupported operation).
DESCRIPTOR_FAILURES = (DescBenchError, RuntimeError, ValueError, MemoryError)


@dataclass(frozen=True)
class RunConfig:
    """Everything ``desc-bench run`` was asked to do; its hash is part of the cache keys."""

    descriptors: tuple[str, ...]
    dataset: str = "hpatches-synth"
    data_dir: Path | None = None
    output: Path | None = Path("runs")
    split: str = "full"
    tasks: tuple[str, ...] | None = None  # HPatches tasks; None: all three
    protocol: str | None = None  # None: "python" on HPatches, the dataset's default on image pairs
    distance: str | None = None  # None: each descriptor's own distance
    device: str = "cpu"
    weights: str | None = None
    overwrite: bool = False
    re_eval: bool = False
    progress: bool = True
    time_batch: int = 256  # per-patch time recorded at this batch size; 0 disables
    detector: str | None = None  # pair protocols: keypoint detector name
    budget: int | None = None  # pair protocols: keypoint budget

    def extraction_key(self) -> str:
        """What changes extracted descriptors besides the descriptor itself: code and library versions."""
        import cv2

        from .._version import __version__

        return stable_hash(
            EXTRACTION_VERSION, __version__, torch.__version__, cv2.__version__, torch.device(self.device).type
        )


@dataclass
class RunOutput:
    record: Record
    markdown: str
    record_path: Path | None = None
    markdown_path: Path | None = None


def _cache_root() -> Path:
    from ..io.paths import cache_root

    return cache_root()


def _open_dataset(config: RunConfig):
    from ..datasets.registry import dataset

    return dataset(config.dataset, data_dir=config.data_dir)


def _weights_id(desc: Descriptor) -> str:
    """The weights checksum for cache keys (file hash when a file is used, else the variant name)."""
    checksum = getattr(desc, "weights_checksum", None)
    return checksum or desc.weights_label


def _error_rows(spec: str, config: RunConfig, message: str, weights: str = "none") -> list[ResultRow]:
    return [
        ResultRow(
            descriptor=spec,
            weights=weights,
            dataset=config.dataset,
            split=config.split,
            protocol=config.protocol,
            task=task,
            metric="skipped",
            value=None,
            error=message,
        )
        for task in config.tasks
    ]


def _distance(desc: Descriptor, config: RunConfig) -> Distance:
    if config.distance is None:
        return desc.distance
    wanted = Distance(config.distance)
    if (wanted is Distance.HAMMING) != (desc.distance is Distance.HAMMING):
        raise InputError(f"{desc.name} is compared with {desc.distance.value}; it cannot use {wanted.value}")
    return wanted


def describe_sequence(desc: Descriptor, patches: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Describe the 16 patch files of a sequence in one call: type -> ``(N, dim)`` numpy array."""
    count = len(patches["ref"])
    stacked = np.concatenate([patches[t] for t in PATCH_TYPES])[:, None]
    described = desc.compute_patches(torch.from_numpy(stacked)).cpu().numpy()
    return {t: described[i * count : (i + 1) * count] for i, t in enumerate(PATCH_TYPES)}


def extract_sequences(
    desc: Descriptor,
    patchset: PatchSet,
    sequences: tuple[str, ...],
    cache: DescriptorCache,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, dict[str, np.ndarray]]:
    """Describe every patch type of the sequences, resuming from the per-sequence cache."""
    out: dict[str, dict[str, np.ndarray]] = {}
    bar = tqdm(sequences, desc=f"extract {desc.describe()}", unit="seq", disable=not progress, leave=False)
    for seq in bar:
        if not overwrite and cache.has(seq):
            out[seq] = cache.load(seq)
            continue
        out[seq] = describe_sequence(desc, patchset.load(seq))
        cache.save(seq, out[seq])
    return out


def _tasks_fingerprint(tasks_dir: Path, split: str) -> list[tuple[str, int, int]]:
    """Names, sizes and modification times of the task files a split uses (part of the score key)."""
    files = sorted(Path(tasks_dir).glob(f"*_split-{split}.csv")) + [Path(tasks_dir) / "splits" / "splits.json"]
    return [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]


def _descriptor_cache(desc: Descriptor, spec: str, data, config: RunConfig) -> DescriptorCache:
    root = getattr(data, "root", None)  # patch sets: two copies of a dataset never share a cache
    return DescriptorCache(
        _cache_root(),
        data.name,
        data.version,
        spec,
        stable_hash(_weights_id(desc), config.extraction_key(), root.resolve() if root else ""),
    )


def _patch_rows(desc: Descriptor, spec: str, patchset: PatchSet, config: RunConfig) -> list[ResultRow]:
    from ..datasets.tasks import TaskFiles
    from .hpatches_tasks import evaluate_all, row_fields

    split = patchset.split(config.split)
    distance = _distance(desc, config)
    cache = _descriptor_cache(desc, spec, patchset, config)
    eval_key = stable_hash(
        config.split,
        sorted(config.tasks),
        config.protocol,
        distance.value,
        patchset.version,
        _tasks_fingerprint(patchset.tasks_dir, config.split),
    )
    cached = None if (config.re_eval or config.overwrite) else cache.load_scores(eval_key)
    if cached is None:
        descs = extract_sequences(desc, patchset, split.test, cache, config.overwrite, config.progress)
        tasks = TaskFiles(patchset.tasks_dir)
        scores = evaluate_all(
            descs, tasks, split, distance, which=tuple(config.tasks), protocol=config.protocol, progress=config.progress
        )
        cached = [dataclasses.asdict(s) for s in scores]
        cache.save_scores(eval_key, cached)
    notes = _weight_notes(desc)
    return [
        ResultRow(
            descriptor=spec,
            weights=desc.weights_label,
            dataset=patchset.name,
            split=config.split,
            protocol=config.protocol,
            distance=distance.value,
            mode=patch_mode(desc),
            **row_fields(score, notes),  # a "degenerate: ..." note of the score joins the weight notes
        )
        for score in cached
    ]


def _weight_notes(desc: Descriptor) -> str:
    """Flags that travel with every row: weights that saw HPatches, random weights."""
    return getattr(desc, "notes", "") or ""


def _pair_rows(desc: Descriptor, spec: str, pairset, config: RunConfig) -> list[ResultRow]:
    """Image-pair protocol rows, cached per descriptor (an interrupted run resumes at the next one)."""
    from .pairs import evaluate_pairs

    options = {k: v for k, v in (("detector", config.detector), ("budget", config.budget)) if v is not None}
    cache = _descriptor_cache(desc, spec, pairset, config)
    key = stable_hash(config.protocol, sorted(options.items()))
    cached = None if (config.re_eval or config.overwrite) else cache.load_scores(key)
    if cached is None:
        rows = evaluate_pairs(desc, pairset, config.protocol, progress=config.progress, **options)
        notes = _weight_notes(desc)
        rows = [
            dataclasses.replace(
                r,
                descriptor=spec,
                weights=desc.weights_label,
                distance=desc.distance.value,
                notes="; ".join(n for n in (r.notes, notes) if n),
            )
            for r in rows
        ]
        cached = [dataclasses.asdict(r) for r in rows]
        if all(r.error is None for r in rows):  # failures are retried next time
            cache.save_scores(key, cached)
    return [ResultRow(**r) for r in cached]


def _timing_row(desc: Descriptor, spec: str, config: RunConfig) -> TimingRow | None:
    if config.time_batch <= 0:
        return None
    from .timing import time_patches

    try:
        row = time_patches(desc, config.time_batch)
        return dataclasses.replace(row, descriptor=spec)
    except DESCRIPTOR_FAILURES as exc:
        return TimingRow(
            descriptor=spec,
            weights=desc.weights_label,
            device=config.device,
            batch=config.time_batch,
            input_size="65",
            unit="patch",
            median_ms=None,
            iqr_ms=None,
            per_second=None,
            peak_memory_mb=None,
            error=str(exc),
        )


def _calibration(timings: list[TimingRow], config: RunConfig):
    """The reference workload, timed in the same process, so speeds can be compared across runs."""
    if not timings:
        return None
    from .timing import calibrate

    return calibrate(config.device)


def _check_config(config: RunConfig) -> RunConfig:
    """Validate the whole request before any data is made or read; fill the dataset's defaults."""
    from ..datasets.registry import dataset_source

    for spec in config.descriptors:
        descriptor_class(parse_spec(spec)[0])
    if not config.descriptors:
        raise InputError("no descriptors given; name at least one, e.g. --descriptors sift-opencv")
    kind = dataset_source(config.dataset).kind
    if kind == "patches":
        from .hpatches_tasks import PROTOCOLS

        protocol = config.protocol or "python"
        if protocol not in PROTOCOLS:
            raise InputError(
                f"unknown protocol {protocol!r} for the HPatches patch tasks; valid: {', '.join(PROTOCOLS)}"
            )
        tasks = PATCH_TASKS if config.tasks is None else tuple(config.tasks)
        unknown = set(tasks) - set(PATCH_TASKS)
        if unknown or not tasks:
            raise InputError(f"unknown or no task(s) {sorted(unknown)}; valid tasks: {', '.join(PATCH_TASKS)}")
        if config.detector is not None or config.budget is not None:
            raise InputError("--detector and --budget apply to image-pair datasets, not to patch datasets")
        return dataclasses.replace(config, protocol=protocol, tasks=tasks)
    from . import detectors
    from .pairs import protocol as pair_protocol

    if config.split != "full" or config.tasks is not None or config.distance is not None:
        raise InputError(
            f"--split, --tasks and --distance apply to HPatches patch datasets; {config.dataset!r} is an "
            "image-pair dataset (choose --protocol, --detector, --budget)"
        )
    if config.protocol is not None:
        pair_protocol(config.protocol)  # UnknownNameError lists the pair protocols
    if config.detector is not None and config.detector not in detectors.DETECTORS:
        raise UnknownNameError("detector", config.detector, list(detectors.DETECTORS))
    if config.budget is not None and config.budget < 1:
        raise InputError(f"--budget must be at least 1, got {config.budget}")
    return config


def run(config: RunConfig, log: Callable[[str], None] = lambda _: None) -> RunOutput:
    """Run every descriptor of the config on its dataset; write and return the record."""
    config = _check_config(config)
    data = _open_dataset(config)
    is_patches = isinstance(data, PatchSet)
    if is_patches:
        data.split(config.split)  # fail early on an unknown split
    else:
        protocol = config.protocol or data.default_protocol
        config = dataclasses.replace(config, split="all", tasks=(protocol,), protocol=protocol)

    results: list[ResultRow] = []
    timings: list[TimingRow] = []
    for spec in config.descriptors:
        try:
            learned = bool(descriptor_class(parse_spec(spec)[0]).weights)
            desc = build_descriptor(spec, device=config.device, weights=config.weights if learned else None)
        except DESCRIPTOR_FAILURES as exc:
            log(f"skipping {spec}: {exc}")
            results.extend(_error_rows(spec, config, f"skipped: {exc}"))
            continue
        notice = getattr(desc, "notice", None)
        if notice:
            log(notice)
        label = desc.describe()
        try:
            rows = _patch_rows(desc, label, data, config) if is_patches else _pair_rows(desc, label, data, config)
            results.extend(rows)
        except DESCRIPTOR_FAILURES as exc:
            message = str(exc) if isinstance(exc, DescBenchError) else f"{label} failed: {type(exc).__name__}: {exc}"
            log(message)
            results.extend(_error_rows(label, config, message, desc.weights_label))
            continue
        if is_patches:
            timing = _timing_row(desc, label, config)
            if timing is not None:
                timings.append(timing)

    meta = machine_metadata(
        config.device, command="run", config=config_json(config), dataset_version=getattr(data, "version", "")
    )
    record = Record(metadata=meta, results=results, timings=timings, calibration=_calibration(timings, config))
    from ..results.tables import run_report

    markdown = run_report(record)
    output = RunOutput(record, markdown)
    if config.output is not None:
        output.record_path, output.markdown_path = write_run(config.output, config.dataset, record, markdown)
    return output
