"""PCK, the GIFT protocol (Liu et al., NeurIPS 2019; zju3dv/GIFT's evaluation).

Both images resized so the longest side is 480 (``int`` truncation of the size, one ratio for x and
y, H rescaled); the ER/ES targets are made at that size already (GIFT's order, see
:mod:`desc_bench.datasets.variants`) and are used as they are. Keypoints kept where their warp lands
inside the other image; exact nearest neighbour in both directions; correct if the error is strictly
``<`` t; PCK averaged over the two directions, then over pairs; t = 5, 2, 1. With the SuperPoint
detector every detection is kept, as GIFT does (``--budget N`` keeps the first N). As in GIFT's code
a pair left without keypoints is skipped (upstream divides by zero there); the notes count them.
Equals GIFT's evaluation on plain pairs (tests/bench/test_pairs.py).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ...adapters.base import Distance
from ...datasets.pairs import Sequence
from ...datasets.variants import GIFT_LONGEST, gift_size
from ...geometry import inside, warp_points
from .. import detectors as det
from ..matching import nearest
from .base import Headline, TableSpec
from .pairs import PairBenchmark, PairResult, PairScores, fmt


def resize_gift(image: np.ndarray, longest: int = GIFT_LONGEST) -> tuple[np.ndarray, float]:
    """GIFT: one ratio ``longest / max(h, w)``, new size truncated to int, bilinear."""
    size, ratio = gift_size(image.shape[1], image.shape[0], longest)
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), ratio


def made_at_gift_size(seq: Sequence, k: int) -> bool:
    """Image ``k`` is an ER/ES target, made at GIFT's size already (used as it is)."""
    warp = seq.warps[k - 1] if seq.warps else None
    return warp is not None and warp.resized


def gift_image(seq: Sequence, k: int) -> np.ndarray:
    image = seq.image(k)
    return image if made_at_gift_size(seq, k) else resize_gift(image)[0]


def gift_geometry(seq: Sequence, k: int) -> tuple[float, int, int]:
    """``(ratio, width, height)`` of image ``k`` at GIFT's size."""
    size = seq.image_size(k)
    if made_at_gift_size(seq, k):
        return 1.0, size[0], size[1]
    (width, height), ratio = gift_size(*size)
    return ratio, width, height


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

    @property
    def budget(self) -> int | None:
        if self.options.budget is None and self.detector in det.UNBOUNDED:
            return None  # GIFT keeps every SuperPoint detection
        return super().budget

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
                    lambda s=seq, k=k: gift_image(s, k),
                    extraction,
                )
        return out

    def score_pairs(self, features, dataset, distance: Distance) -> PairScores:
        results, skipped = [], 0
        metrics = tuple(f"pck@{fmt(t)}" for t in self.thresholds)
        for seq in dataset.sequences:
            ratio0, w0, h0 = gift_geometry(seq, 1)
            f0 = features[seq.name, 1]
            for k in range(2, len(seq.images) + 1):
                ratio1, w1, h1 = gift_geometry(seq, k)
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
        return PairScores(results, f"size={GIFT_LONGEST} matching=nn-both-directions skipped_pairs={skipped}")
