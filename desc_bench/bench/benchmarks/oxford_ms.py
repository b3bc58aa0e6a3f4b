"""Oxford matching score and repeatability (Mikolajczyk et al., IJCV 2005).

Frames with a centre in the common region; circular regions of radius ``size / 2`` (DoG; a fixed
10 px without a scale), those of image k mapped into image 1 by the local affine approximation of
``H^-1``; overlap error ``1 - |A and B| / |A or B|`` after scaling both shapes (not the centre
offset) so that A's radius is 30 px; geometric matches: error < 0.4, one-to-one (greedy by error);
descriptor matches: each frame of image 1 to its nearest neighbour in image k; matching score =
|descriptor matches that are geometric matches| / min(|A|, |B|); repeatability = |geometric
matches| / min(|A|, |B|). Pairs without regions in the common part score 0.
"""

from __future__ import annotations

import numpy as np
import torch

from ...adapters.base import Distance
from ...geometry import OVERLAP_RADIUS, frame_shapes, geometric_matches, inside, warp_ellipses, warp_points
from ..features import ImageFeatures
from ..matching import nearest
from .base import Headline, TableSpec
from .pairs import PairBenchmark, PairResult, PairScores

OXFORD_SEQUENCES = ("graf", "wall", "boat", "bark", "bikes", "trees", "leuven", "ubc")


def matching_score_pair(a: ImageFeatures, b: ImageFeatures, H, shape_a, shape_b, distance: Distance):
    """(matching score, repeatability, correspondences) of one Oxford pair; shapes are (h, w)."""
    keep_a = inside(warp_points(H, a.xy), shape_b[1], shape_b[0])
    Hinv = np.linalg.inv(H)
    keep_b = inside(warp_points(Hinv, b.xy), shape_a[1], shape_a[0])
    ca, sa = a.xy[keep_a], frame_shapes(a.scale, len(a))[keep_a]
    cb, sb = warp_ellipses(Hinv, b.xy[keep_b], frame_shapes(b.scale, len(b))[keep_b])
    denominator = min(len(ca), len(cb))
    if denominator == 0:
        return 0.0, 0.0, 0
    matches, _ = geometric_matches(ca, sa, cb, sb)
    nn = nearest(torch.from_numpy(a.descriptors[keep_a]), torch.from_numpy(b.descriptors[keep_b]), distance)
    geometric = set(map(tuple, matches.tolist()))
    correct = sum((i, int(j)) in geometric for i, j in enumerate(nn))
    return correct / denominator, len(matches) / denominator, len(matches)


class OxfordMatchingScore(PairBenchmark):
    name = "oxford-ms"
    summary = "Mikolajczyk matching score and repeatability, overlap error < 40 %"
    tasks = ("matching-score",)
    per_sequence = True
    headlines = (Headline("matching score", "matching-score", "matching-score", (("subset", "all"),), percent=False),)
    tables = tuple(
        TableSpec(
            f"Oxford {metric}",
            metrics=(metric,),
            rows=("descriptor", "variant"),
            columns="subset",
            order=(*OXFORD_SEQUENCES, "all"),
            labels=(("all", "mean"),),
        )
        for metric in ("matching-score", "repeatability")
    )

    def metric_names(self) -> list[str]:
        return ["matching-score", "repeatability"]

    def features(self, descriptor, dataset, store, context):
        return self.full_resolution(descriptor, dataset, store, context)

    def score_pairs(self, features, dataset, distance: Distance) -> PairScores:
        results = []
        metrics = ("matching-score", "repeatability")
        for seq in dataset.sequences:
            a = features[seq.name, 1]
            shape_a = seq.image_size(1)[::-1]
            for k in range(2, len(seq.images) + 1):
                b = features[seq.name, k]
                score, rep, count = matching_score_pair(
                    a, b, seq.homography(k), shape_a, seq.image_size(k)[::-1], distance
                )
                results.append(
                    PairResult(seq.name, seq.kind, k, metrics, (score, rep), (("correspondences", float(count)),))
                )
        return PairScores(results, f"overlap<0.4 radius={OVERLAP_RADIUS:g} matching=nn")
