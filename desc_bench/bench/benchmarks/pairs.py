"""What the image-pair benchmarks share (HPatches sequences, Oxford affine, their synthetic and
ER/ES variants): pairs (1, k), k = 2..6, with ``x_k ~ H_1k @ x_1``; keypoints from a named detector
(:mod:`desc_bench.bench.detectors`) described through ``descriptor.compute_dense`` and kept per
image in the feature store; per-pair metric values aggregated over all pairs and the i / v
subsets (and per sequence where a benchmark asks), plus one detail row per pair.

Every row records how much data it averages (notes ``sequences=S pairs=P``). A dataset holding
fewer sequences than its full version (a partial copy, a subset) is never passed off as the full
set: the runner log warns, and every row carries ``incomplete=SofN`` in its ``variant`` (so tables
show it and ``check`` keys it apart from the full set's rows: the row key holds the variant, not
the notes) and ``incomplete: S of N sequences (P of M pairs)`` in its notes. The full size comes
from the pair set's ``expected_sequences`` where it has one, else from its name (HPatches 116, its
MMA subset 108, Oxford 8, the synthetic set 8; ER/ES variants as their source).

Each protocol is one file next to this one (mma, pck_gift, pck_msnet, oxford_ms).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ...adapters.base import Descriptor, Distance, Frames
from ...adapters.prepare import dense_mode
from ...errors import InputError, UnknownNameError
from ...io.progress import bar
from ...records.schema import ResultRow
from .. import detectors as det
from ..features import Extraction, FeatureStore, ImageFeatures, source_fingerprint
from ..matching import describe
from .base import Benchmark, Context, Subject, TimingSample, grouped_units

_DETECTOR_CODE = source_fingerprint([Path(det.__file__)])


DEFAULT_BUDGET = 1000  # keypoints per image unless a benchmark or --budget says otherwise


@dataclass(frozen=True)
class PairOptions:
    detector: str = ""  # "" = the benchmark's default detector
    budget: int | None = None  # keypoints per image; None = the benchmark's default (PairBenchmark.budget)
    seed: int = 0

    def __post_init__(self):
        if self.detector and self.detector not in det.DETECTORS:
            raise UnknownNameError("detector", self.detector, list(det.DETECTORS))
        if self.budget is not None and self.budget < 1:
            raise InputError(f"--budget must be at least 1, got {self.budget}")


@dataclass(frozen=True)
class PairResult:
    """Metric values of one pair (``values`` in the order of ``metrics``)."""

    sequence: str
    kind: str  # "i", "v" or ""
    target: int
    metrics: tuple[str, ...]
    values: tuple[float, ...]
    extra: tuple[tuple[str, float], ...] = ()  # e.g. (("matches", 312.0),)


@dataclass(frozen=True)
class PairScores:
    """What a protocol's ``score_pairs`` returns: per-pair results and notes for every row."""

    results: list[PairResult]
    notes: str = ""


# Full sizes of the pair datasets by name, for pair sets that do not say (``expected_sequences``).
EXPECTED_SEQUENCES = {"hpatches-seq": 108, "hpatches-seq-full": 116, "oxford-affine": 8, "hpatches-seq-synth": 8}
VARIANT_SUFFIXES = ("-er", "-es")


@dataclass(frozen=True)
class Coverage:
    """How much of its full dataset a pair set holds."""

    sequences: int
    pairs: int
    expected: int | None  # sequences of the full dataset; None: not known

    @property
    def complete(self) -> bool:
        return self.expected is None or self.sequences >= self.expected

    @property
    def marker(self) -> str:
        """The variant part of an incomplete set's rows (empty for a complete one)."""
        return "" if self.complete else f"incomplete={self.sequences}of{self.expected}"

    def describe(self) -> str:
        if self.complete:
            return f"{self.sequences} sequences ({self.pairs} pairs)"
        return f"{self.sequences} of {self.expected} sequences ({self.pairs} of {self.expected * 5} pairs)"


def coverage(dataset: Any) -> Coverage:
    """The sequence and pair counts of ``dataset`` and the size of its full version."""
    expected = getattr(dataset, "expected_sequences", None)
    if expected is None:
        name = dataset.name
        for suffix in VARIANT_SUFFIXES:
            if name.endswith(suffix) and name[: -len(suffix)] in EXPECTED_SEQUENCES:
                name = name[: -len(suffix)]
        expected = EXPECTED_SEQUENCES.get(name)
    pairs = sum(len(seq.images) - 1 for seq in dataset.sequences)
    return Coverage(len(dataset.sequences), pairs, expected)


def fmt(t: float) -> str:
    return f"{t:g}"


def is_detail(row: ResultRow) -> bool:
    """Per-pair rows (variant ``...:pair=1-k``), as opposed to aggregates."""
    return ":pair=" in row.variant


class PairBenchmark(Benchmark):
    """Base of the image-pair benchmarks; a subclass implements ``features`` and ``score_pairs``."""

    accepts = ("pairs",)
    Options = PairOptions
    time_unit = "image"
    default_detector: ClassVar[str] = "dog"
    thresholds: ClassVar[tuple[float, ...]] = ()
    metric_prefix: ClassVar[str] = ""
    per_sequence: ClassVar[bool] = False  # aggregate rows per sequence too (Oxford)

    @property
    def detector(self) -> str:
        return self.options.detector or self.default_detector

    @property
    def budget(self) -> int | None:
        """Keypoints per image: the ``budget`` option, else :data:`DEFAULT_BUDGET`; None keeps every
        detection (a subclass may default to that for an unbounded detector, as pck-gift does)."""
        return DEFAULT_BUDGET if self.options.budget is None else self.options.budget

    @property
    def budget_label(self) -> str:
        return "all" if self.budget is None else str(self.budget)

    def mode(self, descriptor: Descriptor) -> str:
        return dense_mode(descriptor)

    def metric_names(self) -> list[str]:
        return [f"{self.metric_prefix}@{fmt(t)}" for t in self.thresholds]

    def extraction(self, name: str) -> Extraction:
        return Extraction(f"{name}-{_DETECTOR_CODE}", self.detector, self.budget or 0, self.options.seed)

    def image_features(
        self,
        descriptor: Descriptor,
        store: FeatureStore,
        item: str,
        files: Iterable[Path],
        image: Callable[[], np.ndarray],
        extraction: Extraction,
        frames: Callable[[np.ndarray], Frames] | None = None,
    ) -> ImageFeatures:
        """Keypoints (from ``frames(image)``, default: the benchmark's detector) and descriptors of one
        image, from the store or computed."""

        def compute() -> ImageFeatures:
            pixels = image()
            found = frames(pixels) if frames else det.detect(self.detector, pixels, self.budget, self.options.seed)
            values = describe(descriptor, pixels, found).numpy()
            return ImageFeatures(found.xy, values, found.scale, found.angle)

        return store.image(item, files, compute, extraction)

    def timing_sample(self, descriptor: Descriptor, dataset: Any) -> TimingSample | None:
        if not dataset.sequences:
            return None
        pixels = dataset.sequences[0].image(1)
        found = det.detect_with(descriptor, self.detector, pixels, self.budget, self.options.seed)
        return TimingSample(pixels, found, f"{self.detector} {self.budget_label}")

    def check_data(self, dataset: Any, context: Context) -> None:
        super().check_data(dataset, context)
        cov = coverage(dataset)
        if not cov.complete:
            context.log(
                f"warning: {dataset.name} holds {cov.describe()}; the {self.name} rows are marked "
                f"{cov.marker} and are not the full set's"
            )

    def variant_parts(self) -> tuple[str, ...]:
        """Settings of this benchmark that make its rows different rows (after det=..:budget=..)."""
        return ()

    def data_files(self, dataset: Any, context: Context) -> list[Path]:
        return [path for seq in dataset.sequences for path in seq.images]

    def sequences(self, dataset: Any, context: Context, label: str):
        return bar(dataset.sequences, desc=label, unit="seq", enabled=context.progress)

    def full_resolution(self, descriptor: Descriptor, dataset: Any, store: FeatureStore, context: Context):
        """Features of every image of every sequence at full resolution: ``{(seq, k): ImageFeatures}``."""
        extraction = self.extraction("full")
        out = {}
        for seq in self.sequences(dataset, context, f"{self.name} {descriptor.name}"):
            for k in range(1, len(seq.images) + 1):
                out[seq.name, k] = self.image_features(
                    descriptor, store, f"{seq.name}/{k}", [seq.images[k - 1]], lambda s=seq, k=k: s.image(k), extraction
                )
        return out

    # ---- rows -------------------------------------------------------------------------------
    def score_pairs(self, features: Any, dataset: Any, distance: Distance) -> PairScores:
        raise NotImplementedError

    def evaluate(self, features: Any, dataset: Any, subject: Subject, context: Context) -> list[ResultRow]:
        scores = self.score_pairs(features, dataset, subject.distance)
        o = self.options
        notes = f"detector={self.detector} budget={self.budget_label} seed={o.seed}" + (
            f" {scores.notes}" if scores.notes else ""
        )
        return self.rows(subject, dataset.name, scores.results, notes, coverage(dataset))

    def rows(
        self, subject: Subject, dataset: str, results: list[PairResult], notes: str, cov: Coverage | None = None
    ) -> list[ResultRow]:
        cov = cov or Coverage(len({r.sequence for r in results}), len(results), None)
        base = ":".join((f"det={self.detector}", f"budget={self.budget_label}", *self.variant_parts()))
        if cov.marker:
            base += f":{cov.marker}"
            notes = f"incomplete: {cov.describe()}; {notes}"
        task = self.tasks[0]

        def counted(chosen: list[PairResult]) -> str:
            return f"{notes} sequences={len({r.sequence for r in chosen})} pairs={len(chosen)}"

        if not results:
            message = "no pair could be evaluated (no keypoints in the common region)"
            return [
                self.row(
                    subject,
                    dataset,
                    "all",
                    task=task,
                    metric=m,
                    value=None,
                    variant=base,
                    notes=f"{notes} sequences={cov.sequences} pairs=0",
                    error=message,
                )
                for m in self.metric_names()
            ]
        groups = {"all": results}
        for kind in ("i", "v"):
            chosen = [r for r in results if r.kind == kind]
            if chosen:
                groups[kind] = chosen
        if self.per_sequence:
            for name in dict.fromkeys(r.sequence for r in results):
                groups[name] = [r for r in results if r.sequence == name]
        rows = []
        metrics = results[0].metrics
        for subset, chosen in groups.items():
            values = np.array([r.values for r in chosen])
            for m, metric in enumerate(metrics):
                rows.append(
                    self.row(
                        subject,
                        dataset,
                        "all",
                        task=task,
                        metric=metric,
                        value=float(values[:, m].mean()),
                        subset=subset,
                        variant=base,
                        notes=counted(chosen),
                        units=grouped_units("sequence", [r.sequence for r in chosen], values[:, m]),
                    )
                )
        for r in results:
            variant = f"{base}:pair=1-{r.target}"
            for metric, value in (*zip(r.metrics, r.values), *r.extra):
                rows.append(
                    self.row(
                        subject,
                        dataset,
                        "all",
                        task=task,
                        metric=metric,
                        value=float(value),
                        subset=r.sequence,
                        variant=variant,
                        notes=counted([r]),
                    )
                )
        return rows
