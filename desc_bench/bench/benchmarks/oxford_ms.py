"""Oxford matching score and repeatability (Mikolajczyk et al., IJCV 2005), as the VGG code
computes them: ``repeatability.m`` calling the C function ``c_eoverlap`` (from
www.robots.ox.ac.uk/~vgg/research/affine/det_eval_files/repeatability.tar.gz; the same C code is in
vlfeat/vlbenchmarks ``+benchmarks/+helpers/mexComputeEllipseOverlap.cpp``), with ``common_part=1``
and overlap error 40 %, the numbers people compare with.

Regions: each frame is a circle of radius ``size / 2`` (OpenCV's keypoint size is a diameter; a
fixed 10 px without a scale). The VGG rules, in order:

1. Projection: the regions of image 1 are mapped into image k and those of image k into image 1
   by the homography linearised at each centre (``Sigma' = J Sigma J^T``).
2. Common part: a region is kept only if its axis-aligned bounding box (half sizes
   ``sqrt(Sigma_xx)``, ``sqrt(Sigma_yy)``) lies strictly inside its own image *and*, after the
   projection, strictly inside the other image (``x - bx > 0`` and ``x + bx < width``; the centre
   alone is not enough). ``n = min(|A|, |B|)`` over the kept regions.
3. Overlap error (c_eoverlap): A of image 1 against B of image k projected into image 1, compared
   only when the centres are less than ``4 r_A`` apart (``r_A`` = A's radius before any scaling);
   both shapes scaled about their centres by ``30 / r_A`` (the offset is not scaled); the areas
   counted on c_eoverlap's float32 grid (:func:`desc_bench.geometry.overlap_errors`); error =
   ``1 - intersection / union``.
4. Geometric correspondences: one-to-one, greedy by ascending overlap error, error < 40 %
   (:func:`desc_bench.geometry.geometric_matches`). Repeatability = #correspondences / n.
5. Descriptor matches: one-to-one, greedy by ascending descriptor distance over all pairs (each
   region used at most once: min(|A|, |B|) matches), not each region's nearest neighbour; ties go
   to the lowest index of image 1, then of image k (the C loop's scan order). The VGG code uses L2
   on the raw descriptors (float32 distances); other distances (L1, Hamming) are used as declared.
6. Matching score = #(pairs that are both a descriptor match and a geometric correspondence) / n.

Zero regions in the common part (n = 0): the VGG code divides by zero (NaN); such pairs score 0
here, and the row notes count them (``empty_pairs=``). Equals the VGG code run on the same DoG-1000
frames of the 8 Oxford sequences to 0.002 per sequence (tests/bench/test_oxford_ms.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...adapters.base import Distance
from ...geometry import OVERLAP_RADIUS, box_inside, frame_shapes, geometric_matches, warp_ellipses
from ..features import ImageFeatures
from ..matching import distance_matrix
from .base import Headline, TableSpec
from .pairs import PairBenchmark, PairResult, PairScores

OXFORD_SEQUENCES = ("graf", "wall", "boat", "bark", "bikes", "trees", "leuven", "ubc")
MAX_OVERLAP_ERROR = 0.4
METRICS = ("matching-score", "repeatability")


@dataclass(frozen=True)
class OxfordPair:
    """What one pair yields: counts over the regions kept in the common part."""

    regions: int  # n = min(|A|, |B|)
    correspondences: int  # geometric, one-to-one, error < 40 %
    correct: int  # descriptor matches that are correspondences

    @property
    def matching_score(self) -> float:
        return self.correct / self.regions if self.regions else 0.0

    @property
    def repeatability(self) -> float:
        return self.correspondences / self.regions if self.regions else 0.0


def descriptor_distances(da: np.ndarray, db: np.ndarray, distance: Distance) -> np.ndarray:
    """``(Na, Nb)`` distances as the VGG code compares them: L2 as float32 ``sqrt`` of the squared
    distance (exact for integer-valued descriptors such as OpenCV SIFT's, so its ties are kept);
    the other distances through :func:`desc_bench.bench.matching.distance_matrix`."""
    if distance is not Distance.L2:
        return distance_matrix(torch.from_numpy(da), torch.from_numpy(db), distance).numpy()
    a, b = np.asarray(da, np.float64), np.asarray(db, np.float64)
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(squared, 0.0).astype(np.float32))


def greedy_matches(cost: np.ndarray) -> np.ndarray:
    """``(M, 2)`` one-to-one pairs (i, j) taken greedily by ascending ``cost``, ties to the lowest i
    then j, M = min(Na, Nb): what c_eoverlap's descriptor loop selects.

    Computed in rounds: a pair that is the minimum of both its row and its column among the rows
    and columns still free is exactly one that the greedy scan takes, so each round takes all such
    pairs (at least the global minimum) and removes their rows and columns.
    """
    rows, cols = np.arange(cost.shape[0]), np.arange(cost.shape[1])
    found = []
    while len(rows) and len(cols):
        sub = cost[np.ix_(rows, cols)]
        best_col = sub.argmin(axis=1)  # first index on ties: lowest j
        best_row = sub.argmin(axis=0)  # lowest i
        mutual = np.nonzero(best_row[best_col] == np.arange(len(rows)))[0]
        found.append(np.stack([rows[mutual], cols[best_col[mutual]]], axis=1))
        rows = np.delete(rows, mutual)
        cols = np.delete(cols, best_col[mutual])
    return np.concatenate(found).reshape(-1, 2) if found else np.zeros((0, 2), np.int64)


def oxford_pair(a: ImageFeatures, b: ImageFeatures, H, shape_a, shape_b, distance: Distance) -> OxfordPair:
    """Counts of one pair (image 1 features ``a``, image k features ``b``, ``H`` from 1 to k);
    shapes are (h, w)."""
    Hinv = np.linalg.inv(H)
    sa, sb = frame_shapes(a.scale, len(a)), frame_shapes(b.scale, len(b))
    ca_k, sa_k = warp_ellipses(H, a.xy, sa)
    cb_1, sb_1 = warp_ellipses(Hinv, b.xy, sb)
    (h1, w1), (hk, wk) = shape_a[:2], shape_b[:2]
    keep_a = box_inside(a.xy, sa, w1, h1) & box_inside(ca_k, sa_k, wk, hk)
    keep_b = box_inside(b.xy, sb, wk, hk) & box_inside(cb_1, sb_1, w1, h1)
    regions = int(min(keep_a.sum(), keep_b.sum()))
    if regions == 0:
        return OxfordPair(0, 0, 0)
    geometric, _ = geometric_matches(a.xy[keep_a], sa[keep_a], cb_1[keep_b], sb_1[keep_b], MAX_OVERLAP_ERROR)
    cost = descriptor_distances(a.descriptors[keep_a], b.descriptors[keep_b], distance)
    described = greedy_matches(cost)
    correct = len(set(map(tuple, geometric.tolist())) & set(map(tuple, described.tolist())))
    return OxfordPair(regions, len(geometric), correct)


class OxfordMatchingScore(PairBenchmark):
    name = "oxford-ms"
    summary = "Mikolajczyk matching score and repeatability (the VGG code), overlap error < 40 %"
    tasks = ("matching-score",)
    per_sequence = True
    headlines = (
        Headline("repeatability", "matching-score", "repeatability", (("subset", "all"),), percent=False),
        Headline("matching score", "matching-score", "matching-score", (("subset", "all"),), percent=False),
    )
    tables = (
        TableSpec(
            "Oxford affine, mean over pairs ({dataset})",
            metrics=METRICS,
            rows=("descriptor", "variant"),
            columns="metric",
            order=METRICS,
            where=(("subset", "all"),),
        ),
        TableSpec(
            "Oxford affine per sequence ({dataset})",
            metrics=METRICS,
            rows=("descriptor", "variant", "metric"),
            columns="subset",
            order=(*OXFORD_SEQUENCES, "all"),
            labels=(("all", "mean"),),
        ),
    )

    def metric_names(self) -> list[str]:
        return list(METRICS)

    def features(self, descriptor, dataset, store, context):
        return self.full_resolution(descriptor, dataset, store, context)

    def score_pairs(self, features, dataset, distance: Distance) -> PairScores:
        results, empty = [], 0
        for seq in dataset.sequences:
            a = features[seq.name, 1]
            shape_a = seq.image_size(1)[::-1]
            for k in range(2, len(seq.images) + 1):
                b, H = features[seq.name, k], seq.homography(k)
                pair = oxford_pair(a, b, H, shape_a, seq.image_size(k)[::-1], distance)
                empty += pair.regions == 0
                extra = (
                    ("correspondences", float(pair.correspondences)),
                    ("correct-matches", float(pair.correct)),
                    ("regions", float(pair.regions)),
                )
                values = (pair.matching_score, pair.repeatability)
                results.append(PairResult(seq.name, seq.kind, k, METRICS, values, extra))
        notes = f"overlap<{MAX_OVERLAP_ERROR:g} radius={OVERLAP_RADIUS:g} matching=greedy-one-to-one"
        return PairScores(results, f"{notes} empty_pairs={empty}")
