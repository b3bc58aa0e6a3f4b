"""PCK, the MSNet protocol (lin-zju/my-descriptor-space, commit 7b6aaa6: ``lib/data/datasets/hpatches.py``,
``lib/utils/keypoint.py``, ``lib/data/evaluators/pck.py``).

Longest side 640 (rounded size, per-axis ratios applied to H, which is read as float32 as upstream
reads it); Harris (2, 3, 0.04) above its 90th percentile and mapping inside image 2; ``budget``
(1,000) pixels drawn with a seeded generator (upstream: ``np.random.choice``, unseeded); image-2
keypoints are the integer-truncated warps; descriptors as the descriptor computes them at the
keypoints, then **L2-normalised** as upstream's ``sample_descriptor`` does (``F.normalize``; binary
descriptors are compared in Hamming distance unnormalised); one-directional nearest neighbour among
the warped keypoints; correct if ``||kp2[nn] - kp2[i]|| <= t``, t = 3 (the published code's
effective value: its config says 5, but the value is never passed).

Matchers (``pck-msnet:matcher=...``, recorded in every row's variant and notes):

- ``exact`` (default): exact nearest neighbour (first index on ties); deterministic. Equals the
  upstream ``compute_pck`` with its exact search (the commented-out lines of its ``nn_match``) on
  the same keypoints and descriptors (tests/bench/test_pck_msnet.py).
- ``flann``: what the published code ran, ``cv2.FlannBasedMatcher_create()`` with OpenCV's default
  parameters (randomised KD-trees, 4 trees, 32 checks), ``match(d0, d1)``; approximate, and not
  reproducible between runs (up to 0.03 per pair).

A pair without keypoints scores 0 (upstream divides by zero); the notes count such pairs.
MSNet's own DAISY baseline is the descriptor ``daisy-msnet`` (desc_bench/adapters/daisy_msnet.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ...adapters.base import Distance, Frames
from ...errors import InputError, UnknownNameError
from .. import detectors as det
from ..matching import nearest
from .base import Headline, TableSpec
from .pairs import PairBenchmark, PairOptions, PairResult, PairScores, fmt

MSNET_SIZE = 640
MATCHERS = ("exact", "flann")


@dataclass(frozen=True)
class MSNetOptions(PairOptions):
    matcher: str = "exact"  # "exact" nearest neighbour, or upstream's approximate "flann"

    def __post_init__(self):
        super().__post_init__()
        if self.matcher not in MATCHERS:
            raise UnknownNameError("pck-msnet matcher", self.matcher, list(MATCHERS))


def resize_msnet(image: np.ndarray, longest: int = MSNET_SIZE) -> tuple[np.ndarray, float, float]:
    """MSNet: rounded new size, bilinear; returns the image and its actual x and y ratios."""
    h, w = image.shape[:2]
    ratio = longest / max(h, w)
    nh, nw = int(round(h * ratio)), int(round(w * ratio))
    return cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR), nw / w, nh / h


def msnet_correspondences(image0: np.ndarray, shape1, H: np.ndarray, budget: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """MSNet's ground-truth sampling: Harris pixels of image 0 whose truncated warp is inside image 1."""
    h0, w0 = image0.shape[:2]
    h1, w1 = shape1[:2]
    xs, ys = np.meshgrid(np.arange(w0), np.arange(h0))
    grid = np.stack([xs, ys], axis=2).reshape(-1, 1, 2).astype(np.float32)
    flow = np.trunc(cv2.perspectiveTransform(grid, np.asarray(H, np.float64))).astype(np.int64).reshape(h0, w0, 2)
    valid = (flow[..., 0] >= 0) & (flow[..., 0] < w1) & (flow[..., 1] >= 0) & (flow[..., 1] < h1)
    kps0 = det.sample_mask(valid & det.harris_mask(image0), budget, rng)
    kps1 = flow[kps0[:, 1], kps0[:, 0]]
    return kps0, kps1


def flann_nearest(d0: np.ndarray, d1: np.ndarray) -> np.ndarray:
    """Upstream's ``nn_match``: ``cv2.FlannBasedMatcher_create().match`` on float32, the train index
    of each returned match (one per query, in query order)."""
    matches = cv2.FlannBasedMatcher_create().match(
        np.ascontiguousarray(d0, np.float32), np.ascontiguousarray(d1, np.float32)
    )
    return np.array([m.trainIdx for m in matches], np.int64)


def msnet_nearest(d0: np.ndarray, d1: np.ndarray, distance: Distance, matcher: str = "exact") -> np.ndarray:
    """Index in ``d1`` of each row of ``d0``'s nearest neighbour, on L2-normalised float descriptors
    (``F.normalize``, as upstream's ``sample_descriptor``), Hamming on binary ones."""
    a, b = torch.from_numpy(np.ascontiguousarray(d0)), torch.from_numpy(np.ascontiguousarray(d1))
    if distance is Distance.HAMMING:
        if matcher == "flann":
            raise InputError("pck-msnet:matcher=flann needs float descriptors; binary ones use matcher=exact")
        return nearest(a, b, distance)
    if distance is Distance.L2:
        a, b = torch.nn.functional.normalize(a.float(), dim=1), torch.nn.functional.normalize(b.float(), dim=1)
    if matcher == "flann":
        return flann_nearest(a.numpy(), b.numpy())
    return nearest(a, b, distance)


def pck_msnet_pair(kps1: np.ndarray, nn: np.ndarray, thresholds) -> np.ndarray:
    err = np.linalg.norm((kps1[nn] - kps1).astype(np.float64), axis=1)
    return np.array([np.mean(err <= t) for t in thresholds]) if len(err) else np.zeros(len(thresholds))


class PCKMSNet(PairBenchmark):
    name = "pck-msnet"
    summary = "MSNet PCK at 640 px, Harris samples, one-direction NN, t = 3"
    tasks = ("pck",)
    thresholds = (3,)
    metric_prefix = "pck"
    default_detector = "harris"
    Options = MSNetOptions
    headlines = (Headline("PCK-3 (msnet)", "pck", "pck@3", (("subset", "all"),), percent=False),)
    tables = (
        TableSpec(
            "PCK (MSNet protocol, 640 px)",
            metrics=("pck@3",),
            rows=("descriptor", "variant"),
            columns="subset",
            order=("all", "v", "i"),
            groups=("dataset",),
            labels=(("all", "pck-3 all"),),
        ),
    )

    def check(self, dataset_name, context):
        super().check(dataset_name, context)
        if self.detector != "harris":
            raise InputError("pck-msnet samples its own Harris keypoints; use detector 'harris'")

    def _pair_geometry(self, seq, k):
        image0, sx0, sy0 = resize_msnet(seq.image(1))
        image1, sx1, sy1 = resize_msnet(seq.image(k))
        H = seq.homography(k).astype(np.float32)  # upstream: np.loadtxt(H_path).astype(np.float32)
        H = np.diag([sx1, sy1, 1.0]) @ H @ np.linalg.inv(np.diag([sx0, sy0, 1.0]))
        return image0, image1, H

    def features(self, descriptor, dataset, store, context):
        extraction = self.extraction("msnet640-h32")  # keypoints from the float32 H
        out = {}
        for seq in self.sequences(dataset, context, f"{self.name} {descriptor.name}"):
            for k in range(2, len(seq.images) + 1):
                cache = {}

                def pair(seq=seq, k=k, cache=cache):
                    if not cache:
                        image0, image1, H = self._pair_geometry(seq, k)
                        rng = np.random.default_rng([self.options.seed, k, *seq.name.encode()])
                        kps0, kps1 = msnet_correspondences(image0, image1.shape, H, self.budget, rng)
                        cache.update(image0=image0, image1=image1, kps0=kps0, kps1=kps1)
                    return cache

                files = [seq.images[0], seq.images[k - 1]]
                for side, image, kps in (("a", "image0", "kps0"), ("b", "image1", "kps1")):
                    out[seq.name, k, side] = self.image_features(
                        descriptor,
                        store,
                        f"{seq.name}/1-{k}/{side}",
                        files,
                        lambda pair=pair, image=image: pair()[image],
                        extraction,
                        frames=lambda _, pair=pair, kps=kps: Frames(pair()[kps].astype(np.float64)),
                    )
        return out

    def variant_parts(self) -> tuple[str, ...]:
        return (f"matcher={self.options.matcher}",)

    def score_pairs(self, features, dataset, distance: Distance) -> PairScores:
        results, empty = [], 0
        metrics = tuple(f"pck@{fmt(t)}" for t in self.thresholds)
        for seq in dataset.sequences:
            for k in range(2, len(seq.images) + 1):
                a, b = features[seq.name, k, "a"], features[seq.name, k, "b"]
                if len(a) == 0:
                    empty += 1
                    values = np.zeros(len(self.thresholds))
                else:
                    nn = msnet_nearest(a.descriptors, b.descriptors, distance, self.options.matcher)
                    values = pck_msnet_pair(b.xy.astype(np.int64), nn, self.thresholds)
                results.append(
                    PairResult(seq.name, seq.kind, k, metrics, tuple(values), (("keypoints", float(len(a))),))
                )
        notes = f"size={MSNET_SIZE} matcher={self.options.matcher} normalised=l2 harris-percentile=90"
        return PairScores(results, f"{notes} empty_pairs={empty}")
