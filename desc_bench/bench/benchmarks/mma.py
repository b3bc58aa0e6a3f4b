"""MMA, the D2-Net protocol (Dusmanu et al., CVPR 2019; its hpatches_sequences notebook).

Each image's own keypoints at full resolution, mutual nearest neighbours (on L2-normalised float
descriptors; Hamming for binary ones), error ``||H x_a - x_b||`` in pixels, per pair the fraction
of matches with error ``<=`` t (0 without matches), mean over pairs, t = 1..10 px, overall / i / v.
Equals the notebook on every per-pair value (tests/bench/test_pairs.py).
"""

from __future__ import annotations

import numpy as np
import torch

from ...adapters.base import Distance
from ...geometry import warp_points
from ..matching import mutual_nearest
from .base import Headline, TableSpec
from .pairs import PairBenchmark, PairResult, PairScores, fmt


def mma_pair(xy_a: np.ndarray, xy_b: np.ndarray, matches: np.ndarray, H: np.ndarray, thresholds) -> np.ndarray:
    """Fraction of matches with reprojection error ``<=`` t for each threshold (0 without matches)."""
    if len(matches) == 0:
        return np.zeros(len(thresholds))
    err = np.linalg.norm(warp_points(H, xy_a[matches[:, 0]]) - xy_b[matches[:, 1]], axis=1)
    return np.array([np.mean(err <= t) for t in thresholds])


class MMA(PairBenchmark):
    name = "mma"
    summary = "D2-Net mean matching accuracy, mutual NN, thresholds 1..10 px"
    tasks = ("mma",)
    thresholds = tuple(range(1, 11))
    metric_prefix = "mma"
    headlines = (Headline("MMA@3", "mma", "mma@3", (("subset", "all"),), percent=False),)
    tables = (
        TableSpec(
            "MMA@3 px (D2-Net protocol, mutual nearest neighbours)",
            metrics=("mma@3",),
            rows=("descriptor", "variant", "dataset"),
            columns="subset",
            order=("all", "i", "v"),
            labels=(("all", "MMA@3 all"),),
        ),
    )

    def features(self, descriptor, dataset, store, context):
        return self.full_resolution(descriptor, dataset, store, context)

    def score_pairs(self, features, dataset, distance: Distance) -> PairScores:
        results = []
        metrics = tuple(f"mma@{fmt(t)}" for t in self.thresholds)
        for seq in dataset.sequences:
            a = features[seq.name, 1]
            for k in range(2, len(seq.images) + 1):
                b = features[seq.name, k]
                matches = mutual_nearest(
                    torch.from_numpy(a.descriptors),
                    torch.from_numpy(b.descriptors),
                    distance,
                    normalise=distance is Distance.L2,
                )
                values = mma_pair(a.xy, b.xy, matches, seq.homography(k), self.thresholds)
                extra = (("matches", float(len(matches))), ("keypoints", float(min(len(a), len(b)))))
                results.append(PairResult(seq.name, seq.kind, k, metrics, tuple(values), extra))
        return PairScores(results, "matching=mutual-nn")
