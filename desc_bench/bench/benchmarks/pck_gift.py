"""PCK, the GIFT protocol (Liu et al., NeurIPS 2019; zju3dv/GIFT's evaluation).

Both images resized so the longest side is 480 (``int`` truncation of the size, one ratio for x and
y, H rescaled); keypoints kept where their warp lands inside the other image; exact nearest
neighbour in both directions; correct if the error is strictly ``<`` t; PCK averaged over the two
directions, then over pairs; t = 5, 2, 1. As in GIFT's code a pair left without keypoints is
skipped (the notes count them). Equals GIFT's evaluation on plain pairs (tests/bench/test_pairs.py).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ...adapters.base import Distance
from ...geometry import inside, warp_points
from ..matching import nearest
from .base import Headline, TableSpec
from .pairs import PairBenchmark, PairResult, PairScores, fmt

GIFT_SIZE = 480


def resize_gift(image: np.ndarray, longest: int = GIFT_SIZE) -> tuple[np.ndarray, float]:
    """GIFT: one ratio ``longest / max(h, w)``, new size truncated to int, bilinear."""
    h, w = image.shape[:2]
    ratio = longest / max(h, w)
    size = (int(w * ratio), int(h * ratio))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), ratio


def pck_gift_pair(xy0, xy1, d0, d1, H, thresholds, distance: Distance) -> np.ndarray:
    """GIFT PCK of one pair (keypoints already restricted to the common region)."""
    nn01 = nearest(d0, d1, distance)
    nn10 = nearest(d1, d0, distance)
    err01 = np.linalg.norm(warp_points(H, xy0) - xy1[nn01], axis=1)
    err10 = np.linalg.norm(warp_points(np.linalg.inv(H), xy1) - xy0[nn10], axis=1)
    return np.array([(np.mean(err01 < t) + np.mean(err10 < t)) / 2.0 for t in thresholds])


class PCKGift(PairBenchmark):
    name = "pck-gift"
    summary = "GIFT PCK at 480 px, both-direction NN, t = 5, 2, 1 (paper: SuperPoint detections)"
    tasks = ("pck",)
    thresholds = (5, 2, 1)
    metric_prefix = "pck"
    headlines = (Headline("PCK-5", "pck", "pck@5", (("subset", "all"),), percent=False),)
    tables = (
        TableSpec(
            "PCK (GIFT protocol, 480 px)",
            metrics=("pck@5", "pck@2", "pck@1"),
            rows=("descriptor", "variant"),
            columns="metric",
            groups=("dataset",),
            where=(("subset", "all"),),
            labels=(("pck@5", "pck-5"), ("pck@2", "pck-2"), ("pck@1", "pck-1")),
        ),
    )

    def features(self, descriptor, dataset, store, context):
        extraction = self.extraction("gift480")
        out = {}
        for seq in self.sequences(dataset, context, f"{self.name} {descriptor.name}"):
            for k in range(1, len(seq.images) + 1):
                out[seq.name, k] = self.image_features(
                    descriptor,
                    store,
                    f"{seq.name}/{k}",
                    [seq.images[k - 1]],
                    lambda s=seq, k=k: resize_gift(s.image(k))[0],
                    extraction,
                )
        return out

    def score_pairs(self, features, dataset, distance: Distance) -> PairScores:
        results, skipped = [], 0
        metrics = tuple(f"pck@{fmt(t)}" for t in self.thresholds)
        for seq in dataset.sequences:
            size0 = seq.image_size(1)
            ratio0 = GIFT_SIZE / max(size0)
            f0 = features[seq.name, 1]
            w0, h0 = int(size0[0] * ratio0), int(size0[1] * ratio0)
            for k in range(2, len(seq.images) + 1):
                size1 = seq.image_size(k)
                ratio1 = GIFT_SIZE / max(size1)
                w1, h1 = int(size1[0] * ratio1), int(size1[1] * ratio1)
                H = np.diag([ratio1, ratio1, 1.0]) @ seq.homography(k) @ np.diag([1 / ratio0, 1 / ratio0, 1.0])
                f1 = features[seq.name, k]
                keep0 = inside(warp_points(H, f0.xy), w1, h1)
                keep1 = inside(warp_points(np.linalg.inv(H), f1.xy), w0, h0)
                if not keep0.any() or not keep1.any():
                    skipped += 1
                    continue
                d0 = torch.from_numpy(f0.descriptors[keep0])
                d1 = torch.from_numpy(f1.descriptors[keep1])
                values = pck_gift_pair(f0.xy[keep0], f1.xy[keep1], d0, d1, H, self.thresholds, distance)
                extra = (("keypoints", float(min(keep0.sum(), keep1.sum()))),)
                results.append(PairResult(seq.name, seq.kind, k, metrics, tuple(values), extra))
        return PairScores(results, f"size={GIFT_SIZE} matching=nn-both-directions skipped_pairs={skipped}")
