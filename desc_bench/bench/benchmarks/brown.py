"""Brown / UBC PhotoTour benchmarks: ``fpr95`` (the HardNet table) and ``brown-snn-map`` (revisited).

Both run on datasets of kind ``"brown"`` (:class:`~desc_bench.datasets.brown_layout.BrownSet`: one
or several of liberty, notredame, yosemite, or the embedded ``brown-synth``) and share their
features: every patch of each subset described once (items of 32,768 patches in the feature store).
The 64x64 patches go to ``compute_patches`` as they are, which resizes them as the descriptor
declares (HardNet: 32 px, bilinear); each row's notes record the size used.

- ``fpr95``: the false positive rate at 95 % recall on a subset's test pairs (m50_100000_100000_0.txt:
  100,000 pairs, half matching), as HardNet's ``EvalMetrics.ErrorRateAt95Recall`` computes it
  (DagnyT/hardnet@35bc1d7): see :func:`fpr95` (its tie rule included). Never the false discovery
  rate FP / (FP + TP) of older code (MatchNet, TFeat). Interval: the pairs resampled (matching and
  non-matching each) and the FPR recomputed (:func:`~desc_bench.bench.bootstrap.fpr_interval`).
- ``brown-snn-map``: mean AP over reference images with second-nearest-neighbour ratios, as
  brown_phototour_revisited 0.3.0 computes it, in its ``published`` mode (bug-compatible hard-negative
  mining) or ``fixed``; :mod:`desc_bench.bench.benchmarks.brown_snn`. A mean over reference images:
  the rows carry each image's AP as their units (the mean row: each cell's images weighted 1 / count).

Rows (``subset`` = the test subset): ``variant`` is the train->test cell ("notredame->liberty") for
weights that declare one Brown training subset (``WeightFile.trained_on``), else the test subset.
A row whose weights were trained on the test subset (or on all of Brown) is flagged in its notes and
left out of the ``mean`` row (subset and variant "mean"), as in the HardNet paper's Table 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ...adapters.base import Descriptor, Distance
from ...adapters.prepare import patch_mode
from ...datasets.brown_layout import PER_FILE, SUBSETS, BrownSet, mosaic_files
from ...errors import InputError
from ...io.progress import bar
from ...records.schema import ResultRow, Units
from ..bootstrap import fpr_interval, with_pooled
from ..metrics import rowwise_distances
from .base import Benchmark, Context, Headline, Subject, TableSpec, per_unit
from .brown_snn import BACKENDS, MODES, snn_map

RECALL = 0.95
CHUNK = 32_768  # patches per feature-store item (a multiple of the 256 patches of a mosaic)
SHORT = {"liberty": "Lib", "notredame": "ND", "yosemite": "Yos"}
# The HardNet paper's column order: test liberty, notredame, yosemite; within each, the training sets.
COLUMNS = tuple(
    c for test in SUBSETS for c in (*(f"{t}->{test}" for t in SUBSETS if t != test), test, f"{test}->{test}")
) + ("mean",)
LABELS = tuple((c, "->".join(SHORT.get(p, p) for p in c.split("->")) if c != "mean" else "mean") for c in COLUMNS)


def fpr95(distances, is_match, recall: float = RECALL) -> float:
    """False positive rate at ``recall`` (0.95) of pair ``distances`` ``(M,)`` with labels ``is_match`` ``(M,)``.

    HardNet: ``labels = labels[argsort(distances)]; t = argmax(cumsum(labels) >= 0.95 * sum(labels));
    FPR = sum(labels[:t] == 0) / sum(labels == 0)``. HardNet's ``np.argsort`` is not stable, so pairs
    at equal distances fall in an arbitrary order; here the order is fixed by the **pessimistic tie
    rule**: among equal distances, non-matching pairs come before matching ones (a stable sort on
    (distance, is_match)), so a non-matching pair tied with the threshold pair counts as a false
    positive. Without ties the value is HardNet's exactly.

    Raises InputError on shape mismatch, non-finite distances, or no matching / no non-matching pair
    (the rate is undefined; HardNet would print 0 or divide by zero).
    """
    d = np.asarray(distances, dtype=np.float64).ravel()
    y = np.asarray(is_match).ravel().astype(bool)
    if d.shape != y.shape:
        raise InputError(f"fpr95: {d.size} distances but {y.size} labels")
    if not np.isfinite(d).all():
        raise InputError("fpr95: distances contain NaN or infinite values")
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        raise InputError(f"fpr95 needs matching and non-matching pairs; got {positives} and {negatives}")
    labels = y[np.lexsort((y, d))]  # by distance, then non-matching (False) first: pessimistic ties
    cumulative = np.cumsum(labels)
    t = int(np.argmax(cumulative >= recall * positives))  # first index reaching the recall (a positive)
    false_positives = t - int(cumulative[t]) + 1  # non-matching pairs in labels[:t]
    return false_positives / negatives


# ------------------------------------------------------------------------------------ features


def training_subsets(text: str) -> frozenset[str]:
    """The Brown subsets a ``WeightFile.trained_on`` text names ("Brown liberty, augmented" ->
    {liberty}); all three for "6Brown" or "Brown + HPatches"; none for other data ("PS dataset")."""
    lowered = text.lower()
    named = frozenset(s for s in SUBSETS if s in lowered)
    if named:
        return named
    return frozenset(SUBSETS) if "brown" in lowered else frozenset()


@dataclass(frozen=True)
class BrownFeatures:
    """Descriptors ``(N, dim)`` of every patch of each subset, and what the rows say about them."""

    descriptors: dict[str, np.ndarray]
    trained_on: frozenset[str] | None  # Brown subsets the weights saw; None: unknown (the user's own file)
    training: str  # the weights' trained_on text ("" for hand-crafted descriptors)
    patch_note: str  # the patch size the descriptor was given


def describe_training(descriptor: Descriptor) -> tuple[frozenset[str] | None, str]:
    declared = type(descriptor).weights
    if not declared or getattr(descriptor, "random_weights", False):
        return frozenset(), ""
    weight = getattr(descriptor, "weights_file", None)
    if weight is None and getattr(descriptor, "weights_path", None) is not None:
        return None, ""  # a file the user added: its training set is not known
    weight = weight or declared.get(descriptor.weights_name or descriptor.default_weights or "")
    text = weight.trained_on if weight is not None else ""
    return training_subsets(text), text


def patch_note(descriptor: Descriptor) -> str:
    size = descriptor.input.patch_size
    if size is None:
        return "64 px patches as given"
    if size == 64:
        return "64 px patches"
    return f"patches resized 64 -> {size} px ({descriptor.input.resize.value})"


# ------------------------------------------------------------------------------------ base


class BrownBenchmark(Benchmark):
    """The shared part of the Brown benchmarks (no ``name``: not registered)."""

    accepts = ("brown",)
    time_unit = "patch"

    def mode(self, descriptor: Descriptor) -> str:
        return patch_mode(descriptor)

    def check_data(self, dataset: Any, context: Context) -> None:
        if not isinstance(dataset, BrownSet):
            raise InputError(f"benchmark {self.name} runs on Brown datasets; got {type(dataset).__name__}")

    def features(self, descriptor: Descriptor, dataset: BrownSet, store: Any, context: Context) -> BrownFeatures:
        out = {}
        for subset in dataset.subsets:
            mosaics = mosaic_files(subset.root)
            count = len(subset)
            parts = []
            starts = range(0, count, CHUNK)
            label = f"describe {subset.name} ({descriptor.describe()})"
            for start in bar(starts, desc=label, unit="chunk", enabled=context.progress):
                files = mosaics[start // PER_FILE : math.ceil(min(count, start + CHUNK) / PER_FILE)]

                def compute(start=start, subset=subset):
                    patches = np.array(subset.patches[start : start + CHUNK])[:, None]
                    return {"descriptors": descriptor.compute_patches(torch.from_numpy(patches)).cpu().numpy()}

                parts.append(store.arrays(f"{subset.name}-{start // CHUNK:04d}", files, compute)["descriptors"])
            out[subset.name] = np.concatenate(parts)
        trained_on, training = describe_training(descriptor)
        return BrownFeatures(out, trained_on, training, patch_note(descriptor))

    # ---- rows ---------------------------------------------------------------------------------
    def cell(self, features: BrownFeatures, dataset: BrownSet, test: str) -> tuple[str, str, bool]:
        """(variant, notes, flagged) of the row of test subset ``test``."""
        trained, synthetic = features.trained_on, dataset.subset(test).synthetic
        notes = [features.patch_note]
        if synthetic:
            notes.append("synthetic stand-in (brown-synth): no weights saw it")
        if trained is None:
            return test, "; ".join([*notes, "own weight file: training set unknown"]), False
        variant = f"{next(iter(trained))}->{test}" if len(trained) == 1 else test
        flagged = test in trained and not synthetic
        if flagged:
            which = "all Brown subsets" if len(trained) > 1 else test
            notes.append(f"weights trained on {which} ({features.training}): the test subset")
        return variant, "; ".join(notes), flagged

    def rows_with_mean(self, subject: Subject, dataset: BrownSet, cells: list[tuple[dict, bool]]) -> list[ResultRow]:
        """The rows of each subset, then their mean (over the unflagged rows when there are any)."""
        rows = [self.row(subject, dataset.name, "all", **fields) for fields, _ in cells]
        kept = [fields for fields, flagged in cells if not flagged] or [fields for fields, _ in cells]
        mean = dict(kept[0], subset="mean", variant="mean", value=float(np.mean([f["value"] for f in kept])))
        if all(f.get("units") for f in kept):  # the mean of the cells: each cell's units weighted 1 / their count
            parts = [f["units"] for f in kept]
            mean["units"] = Units(
                parts[0].kind,
                [n for u in parts for n in u.names],
                [v for u in parts for v in u.values],
                [1.0 / len(u.values) for u in parts for _ in u.values],
            )
        shared = [n for n in kept[0]["notes"].split("; ") if all(n in f["notes"].split("; ") for f in kept)]
        if len(kept) < len(cells):
            shared.append("mean of the cells not trained on the test subset")
        mean["notes"] = "; ".join(shared)
        return [*rows, self.row(subject, dataset.name, "all", **mean)]


def _table(title: str, metric: str, digits: int = 2) -> TableSpec:
    return TableSpec(
        title,
        metrics=(metric,),
        rows=("descriptor",),
        columns="variant",
        order=COLUMNS,
        groups=("dataset", "distance"),
        labels=LABELS,
        percent=True,
        digits=digits,
    )


# ------------------------------------------------------------------------------------ FPR95


class Fpr95(BrownBenchmark):
    name = "fpr95"
    summary = "Brown/PhotoTour FPR at 95 % recall on the test pairs (100k per real subset; HardNet's definition)"
    tasks = ("verification",)
    headlines = (Headline("FPR95", "verification", "fpr95", (("subset", "mean"),), higher_is_better=False),)
    tables = (_table("FPR95 (%, lower is better; {dataset}, {distance}; train->test as the HardNet paper)", "fpr95"),)

    def evaluate(self, features: BrownFeatures, dataset: BrownSet, subject: Subject, context: Context):
        cells, samples = [], []
        for subset in dataset.subsets:
            desc, pairs = features.descriptors[subset.name], subset.pairs
            distances = rowwise_distances(desc[pairs.patch1], desc[pairs.patch2], subject.distance)
            variant, notes, flagged = self.cell(features, dataset, subset.name)
            if len(pairs) != 100_000:
                notes += f"; {len(pairs):,} test pairs ({subset.test_file})"
            value = fpr95(distances, pairs.is_match)
            fields = dict(task="verification", metric="fpr95", value=value, subset=subset.name, variant=variant)
            cells.append(({**fields, "notes": notes}, flagged))
            samples.append((distances, pairs.is_match))
        rows = self.rows_with_mean(subject, dataset, cells)
        groups = [[s] for s in samples] + [[s for s, (_, f) in zip(samples, cells) if not f] or samples]
        ci = context.ci if context is not None else None
        return [with_pooled(r, fpr_interval(g, RECALL, ci, r.key(), r.value)) for r, g in zip(rows, groups)]


# ------------------------------------------------------------------------------------ SNN-mAP


@dataclass(frozen=True)
class SnnOptions:
    mode: str = "published"  # published (brown_phototour_revisited 0.3.0 as written) or fixed
    backend: str = "numpy"  # the package's distance semantics: numpy or pytorch

    def __post_init__(self):
        if self.mode not in MODES:
            raise InputError(f"brown-snn-map mode {self.mode!r}: valid modes are {', '.join(MODES)}")
        if self.backend not in BACKENDS:
            raise InputError(f"brown-snn-map backend {self.backend!r}: valid backends are {', '.join(BACKENDS)}")


class BrownSnnMap(BrownBenchmark):
    name = "brown-snn-map"
    summary = "Brown/PhotoTour revisited: per-image mAP with SNN ratio (brown_phototour_revisited 0.3.0)"
    Options = SnnOptions
    tasks = ("snn-map",)
    headlines = (
        Headline("SNN mAP", "snn-map", "map-published", (("subset", "mean"),)),
        Headline("SNN mAP (fixed)", "snn-map", "map-fixed", (("subset", "mean"),)),
    )
    tables = (
        _table("SNN-mAP (%, published mining; {dataset}, {distance})", "map-published"),
        _table("SNN-mAP (%, fixed mining: every anchor; {dataset}, {distance})", "map-fixed"),
    )

    def distance(self, descriptor: Descriptor) -> Distance:
        if descriptor.distance is Distance.L1:
            raise InputError("brown-snn-map compares descriptors with L2 or Hamming (as the package); not L1")
        return descriptor.distance

    def evaluate(self, features: BrownFeatures, dataset: BrownSet, subject: Subject, context: Context):
        mode, backend = self.options.mode, self.options.backend
        distance = "hamming" if subject.distance is Distance.HAMMING else "l2"
        cells = []
        for subset in dataset.subsets:
            result = snn_map(
                features.descriptors[subset.name],
                subset.point_ids,
                subset.image_ids,
                mode=mode,
                backend=backend,
                distance=distance,
            )
            variant, notes, flagged = self.cell(features, dataset, subset.name)
            extra = [f"{len(result.images)} images, {result.pairs:,} pairs"]
            if mode == "published":
                extra.append(f"{result.unmined:,} anchors not mined (published rule)")
            if backend != "numpy":
                extra.append(f"{backend} backend")
            if result.skipped:
                extra.append(f"{result.skipped} images without a positive pair left out")
            fields = dict(task="snn-map", metric=f"map-{mode}", value=result.value, subset=subset.name, variant=variant)
            fields["units"] = per_unit("image", {f"{subset.name}:{i}": ap for i, ap in zip(result.images, result.aps)})
            cells.append(({**fields, "notes": "; ".join([notes, *extra])}, flagged))
        return self.rows_with_mean(subject, dataset, cells)
