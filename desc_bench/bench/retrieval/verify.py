"""Spatial verification (Philbin et al., CVPR 2007) and average query expansion (Chum et al., ICCV 2007).

Tentative correspondences are the feature pairs of a query and a database image assigned to the
same word (pairs of a word that occurs more than ``burst`` times in either image are left out: they
say little and cost much). Every correspondence gives one hypothesis from its two local frames,
``x_d = s R(a_d - a_q) x_q + t`` with the scale ratio ``s = size_d / size_q`` and the orientation
difference (OpenCV angles; frames without scale or angle give ``s = 1`` / no rotation), kept only
when ``1 / max_scale <= s <= max_scale``. A hypothesis is scored by its inliers: correspondences
whose two-way transfer error (forward ``|A x_q + t - x_d|`` and backward ``|A^-1 (x_d - t) - x_q|``)
is below ``error`` px in both directions. The best is refined (local optimisation: a least-squares
affine on its inliers, re-scored, ``refine`` times while the count grows). The published
thresholds are those of the C++ reference tsattler/geometric_burstiness: 40 px, sqrt(1000),
3 inliers (for Oxford's 1024 px images); all are recorded in every row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frames2D:
    """Positions ``(N, 2)``, sizes ``(N,)`` (or None) and angles in degrees ``(N,)`` (or None)."""

    xy: np.ndarray
    scale: np.ndarray | None = None
    angle: np.ndarray | None = None


@dataclass(frozen=True)
class SVParams:
    error: float = 40.0
    max_scale: float = math.sqrt(1000.0)
    min_inliers: int = 3
    hypotheses: int = 100  # at most this many correspondences seed a hypothesis (evenly spread)
    burst: int = 5
    refine: int = 3

    def describe(self) -> str:
        return (
            f"sv_error={self.error:g}px sv_max_scale={self.max_scale:.4g} sv_min_inliers={self.min_inliers} "
            f"sv_hypotheses={self.hypotheses} sv_burst={self.burst} sv_refine={self.refine}"
        )


def tentative(words_q: np.ndarray, words_d: np.ndarray, burst: int) -> np.ndarray:
    """``(M, 2)`` index pairs (query feature, database feature) that share a word."""
    order_d = np.argsort(words_d, kind="stable")
    sorted_d = words_d[order_d]
    lo = np.searchsorted(sorted_d, words_q, "left")
    hi = np.searchsorted(sorted_d, words_q, "right")
    count_q = np.bincount(words_q, minlength=int(max(words_q.max(initial=0), words_d.max(initial=0))) + 1)
    keep = (hi > lo) & (hi - lo <= burst) & (count_q[words_q] <= burst)
    qi = np.repeat(np.flatnonzero(keep), (hi - lo)[keep])
    starts = lo[keep]
    offsets = np.arange(len(qi)) - np.repeat(np.cumsum((hi - lo)[keep]) - (hi - lo)[keep], (hi - lo)[keep])
    di = order_d[np.repeat(starts, (hi - lo)[keep]) + offsets]
    return np.stack([qi, di], axis=1).astype(np.int64)


def _count(a, t, xq, xd, error: float, scale: np.ndarray | None = None) -> np.ndarray:
    """Inlier masks ``(H, M)`` of affine hypotheses ``a (H, 2, 2)``, ``t (H, 2)``: two-way transfer
    error. For similarities (``scale`` given) the backward error is the forward one over the scale."""
    forward = np.einsum("hij,mj->hmi", a, xq) + t[:, None, :] - xd[None]
    ahead = np.einsum("hmi,hmi->hm", forward, forward)
    if scale is not None:
        back = ahead / (scale[:, None] ** 2)
    else:
        backward = np.einsum("hij,hmj->hmi", np.linalg.inv(a), forward)  # x_q - A^-1 (x_d - t)
        back = np.einsum("hmi,hmi->hm", backward, backward)
    return (ahead < error**2) & (back < error**2)


def verify(q: Frames2D, d: Frames2D, pairs: np.ndarray, params: SVParams) -> tuple[int, np.ndarray | None]:
    """(inliers, ``(2, 3)`` affine query -> database) of the best refined hypothesis; (0, None)
    when fewer than ``min_inliers`` agree."""
    if len(pairs) < params.min_inliers or len(pairs) == 0:
        return 0, None
    xq, xd = q.xy[pairs[:, 0]].astype(np.float64), d.xy[pairs[:, 1]].astype(np.float64)
    seeds = np.unique(np.linspace(0, len(pairs) - 1, min(len(pairs), params.hypotheses)).round().astype(np.int64))
    s = np.ones(len(seeds))
    if q.scale is not None and d.scale is not None:
        s = d.scale[pairs[seeds, 1]] / np.maximum(q.scale[pairs[seeds, 0]], 1e-9)
    theta = np.zeros(len(seeds))
    if q.angle is not None and d.angle is not None:
        theta = np.deg2rad(d.angle[pairs[seeds, 1]] - q.angle[pairs[seeds, 0]])
    ok = (s >= 1 / params.max_scale) & (s <= params.max_scale)
    if not ok.any():
        return 0, None
    seeds, s, theta = seeds[ok], s[ok], theta[ok]
    c, n = np.cos(theta) * s, np.sin(theta) * s
    a = np.stack([np.stack([c, -n], 1), np.stack([n, c], 1)], 1)  # (H, 2, 2)
    t = xd[seeds] - np.einsum("hij,hj->hi", a, xq[seeds])
    masks = _count(a, t, xq, xd, params.error, s)
    h = int(np.argmax(masks.sum(axis=1)))
    best, count, model = masks[h], int(masks[h].sum()), np.hstack([a[h], t[h][:, None]])
    for _ in range(params.refine):
        if count < 3:
            break
        design = np.hstack([xq[best], np.ones((count, 1))])
        solution, *_ = np.linalg.lstsq(design, xd[best], rcond=None)
        a_ref, t_ref = solution[:2].T[None], solution[2][None]
        if abs(np.linalg.det(a_ref[0])) < 1e-9:
            break
        mask = _count(a_ref, t_ref, xq, xd, params.error)[0]
        if mask.sum() <= count:
            break
        best, count, model = mask, int(mask.sum()), solution.T
    return (count, model) if count >= params.min_inliers else (0, None)


def inside_query(d: Frames2D, model: np.ndarray, size: tuple[float, float]) -> np.ndarray:
    """Mask of a verified image's features that its model's inverse maps inside the query region
    (``size`` = width, height): the features Chum et al. back-project into the query."""
    a, t = model[:, :2], model[:, 2]
    if abs(np.linalg.det(a)) < 1e-9:
        return np.zeros(len(d.xy), bool)
    xy = (d.xy - t) @ np.linalg.inv(a).T
    return (xy[:, 0] >= 0) & (xy[:, 1] >= 0) & (xy[:, 0] < size[0]) & (xy[:, 1] < size[1])


def rerank(order: np.ndarray, inliers: dict[int, int], top: int) -> np.ndarray:
    """The first ``top`` of ``order`` with verified images (inliers > 0) first, by inliers then the
    original order; the rest of the list unchanged."""
    head, tail = order[:top], order[top:]
    verified = [int(i) for i in head if inliers.get(int(i), 0) > 0]
    verified.sort(key=lambda i: -inliers[i])  # stable: ties keep the BoW order
    rest = [int(i) for i in head if inliers.get(int(i), 0) == 0]
    return np.concatenate([np.array(verified + rest, np.int64), tail]).astype(np.int64)
