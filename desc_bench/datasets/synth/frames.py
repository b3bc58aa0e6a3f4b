"""Keypoint frames: detection, frame maps, affine jitter and its measured overlap.

A frame is a row ``x, y, size, angle`` (OpenCV keypoint convention: ``size`` is the diameter in
pixels, ``angle`` in degrees). Its patch spans ``MAGNIFICATION`` x ``size`` (the convention of
:func:`desc_bench.adapters.prepare.extract_patches` and of HPatches), so a frame maps centred
patch coordinates (patch side 1) to image pixels (:func:`frame_matrices`).

Affine jitter (:class:`Jitter`, :data:`JITTER`) follows the HPatches extraction notes: the target
frame is the reference frame moved by a random rotation, anisotropic scale and translation, with
three amounts (easy, hard, tough) calibrated on the overlap of the measurement region.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ...imaging import MAGNIFICATION, PATCH_SIZE

# Patch pixel (column j, row i) -> centred patch coordinates u = (j - 32) / 65 (patch side = 1),
# the sampling grid of prepare.extract_patches.
HALF = (PATCH_SIZE - 1) / 2.0
PATCH_TO_UNIT = np.array(
    [[1 / PATCH_SIZE, 0, -HALF / PATCH_SIZE], [0, 1 / PATCH_SIZE, -HALF / PATCH_SIZE], [0, 0, 1.0]]
)


def detect_frames(
    gray: np.ndarray, rng: np.random.Generator, min_size: float, nms_overlap: float, contrast_threshold: float = 0.04
) -> np.ndarray:
    """OpenCV SIFT (DoG) frames of a gray uint8 image: ``(N, 4)`` float64 x, y, size, angle.

    Frames smaller than ``min_size`` are dropped; frames whose detection circles overlap (IoU) by
    more than ``nms_overlap`` are clustered, keeping one at random. Rows in a canonical order.
    """
    keypoints = cv2.SIFT_create(contrastThreshold=contrast_threshold).detect(gray, None)
    if not keypoints:
        return np.zeros((0, 4))
    frames = np.array([(k.pt[0], k.pt[1], k.size, k.angle) for k in keypoints], dtype=np.float64)
    frames = frames[frames[:, 2] >= min_size]
    if len(frames) == 0:
        return frames
    frames = frames[np.lexsort(frames.T[::-1])]  # canonical order: by x, then y, size, angle
    # Only circles closer than the larger radius can overlap by more than 50 %: candidate pairs from
    # a k-d tree, exact IoU for those, then greedy clustering in a random order.
    from scipy.spatial import cKDTree

    radii = frames[:, 2] / 2
    neighbours = cKDTree(frames[:, :2]).query_ball_point(frames[:, :2], r=radii)
    first = np.repeat(np.arange(len(frames)), [len(n) for n in neighbours])
    second = np.concatenate([np.asarray(n, dtype=np.int64) for n in neighbours])
    pairs = first != second
    first, second = first[pairs], second[pairs]
    iou = circle_iou_pairs(frames[first, :2], radii[first], frames[second, :2], radii[second])
    conflict = iou > nms_overlap
    first, second = first[conflict], second[conflict]
    conflicts = [set() for _ in range(len(frames))]
    for a, b in zip(first.tolist(), second.tolist()):
        conflicts[a].add(b)
        conflicts[b].add(a)
    kept = np.zeros(len(frames), dtype=bool)
    for index in rng.permutation(len(frames)).tolist():
        if not any(kept[j] for j in conflicts[index]):
            kept[index] = True
    return frames[kept]


def circle_iou_pairs(c1: np.ndarray, r1: np.ndarray, c2: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Intersection over union of circles ``(c1[i], r1[i])`` and ``(c2[i], r2[i])``; centres ``(M, 2)``.

    Arguments broadcast (one circle against many: ``c1`` ``(1, 2)``, ``r1`` ``(1,)``).
    """
    d = np.hypot(*(c2 - c1).T)
    d, r1, r2 = np.broadcast_arrays(d, np.asarray(r1, dtype=np.float64), np.asarray(r2, dtype=np.float64))
    inter = np.where(d <= np.abs(r1 - r2), np.pi * np.minimum(r1, r2) ** 2, 0.0)
    lens = (d < r1 + r2) & (d > np.abs(r1 - r2))
    if lens.any():
        dl, a, b = d[lens], r1[lens], r2[lens]
        part1 = a**2 * np.arccos(np.clip((dl**2 + a**2 - b**2) / (2 * dl * a), -1, 1))
        part2 = b**2 * np.arccos(np.clip((dl**2 + b**2 - a**2) / (2 * dl * b), -1, 1))
        tri = 0.5 * np.sqrt(np.clip((-dl + a + b) * (dl + a - b) * (dl - a + b) * (dl + a + b), 0, None))
        inter[lens] = part1 + part2 - tri
    return inter / (np.pi * r1**2 + np.pi * r2**2 - inter)


def frame_matrices(frames: np.ndarray) -> np.ndarray:
    """``(N, 3, 3)`` maps from centred patch coordinates (side 1) to image pixels."""
    span = frames[:, 2] * MAGNIFICATION
    angle = np.deg2rad(frames[:, 3])
    out = np.zeros((len(frames), 3, 3))
    out[:, 0, 0] = span * np.cos(angle)
    out[:, 0, 1] = -span * np.sin(angle)
    out[:, 1, 0] = span * np.sin(angle)
    out[:, 1, 1] = span * np.cos(angle)
    out[:, 0, 2] = frames[:, 0]
    out[:, 1, 2] = frames[:, 1]
    out[:, 2, 2] = 1.0
    return out


@dataclass(frozen=True)
class Jitter:
    """Amplitudes of the affine jitter of one noise level; each parameter is uniform in +-amplitude.

    The jitter acts in patch coordinates (the patch side is 1): rotation about the centre, an
    isotropic log-scale, a log-anisotropy along a random axis, and a translation uniform in a disc
    of radius ``translation``.
    """

    rotation_deg: float
    log_scale: float
    log_anisotropy: float
    translation: float


# Calibrated on the measurement region (a disc of diameter 1 in patch coordinates): median
# intersection-over-union with the jittered ellipse about 0.85 (easy), 0.72 (hard), 0.60 (tough).
JITTER = {
    "e": Jitter(rotation_deg=5.5, log_scale=0.11, log_anisotropy=0.165, translation=0.066),
    "h": Jitter(rotation_deg=11.5, log_scale=0.23, log_anisotropy=0.345, translation=0.138),
    "t": Jitter(rotation_deg=16.5, log_scale=0.33, log_anisotropy=0.495, translation=0.198),
}


def sample_jitter(rng: np.random.Generator, count: int, jitter: Jitter) -> np.ndarray:
    """``(count, 3, 3)`` random affine jitters in centred patch coordinates."""
    rotation = np.deg2rad(rng.uniform(-1, 1, count) * jitter.rotation_deg)
    scale = np.exp(rng.uniform(-1, 1, count) * jitter.log_scale)
    aniso = np.exp(rng.uniform(-1, 1, count) * jitter.log_anisotropy)
    axis = rng.uniform(0, np.pi, count)
    radius = jitter.translation * np.sqrt(rng.uniform(0, 1, count))
    phase = rng.uniform(0, 2 * np.pi, count)

    def rot(theta):
        c, s = np.cos(theta), np.sin(theta)
        return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)

    stretch = np.zeros((count, 2, 2))
    stretch[:, 0, 0] = scale * np.sqrt(aniso)
    stretch[:, 1, 1] = scale / np.sqrt(aniso)
    linear = rot(rotation) @ rot(axis) @ stretch @ rot(-axis)
    out = np.zeros((count, 3, 3))
    out[:, :2, :2] = linear
    out[:, 0, 2] = radius * np.cos(phase)
    out[:, 1, 2] = radius * np.sin(phase)
    out[:, 2, 2] = 1.0
    return out


def ellipse_overlap(jitters: np.ndarray, grid: int = 48) -> np.ndarray:
    """IoU of the measurement disc (diameter 1) with its image under each jitter ``(N, 3, 3)``; ``(N,)``."""
    steps = (np.arange(grid) + 0.5) / grid * 2.0 - 1.0  # [-1, 1]: holds the disc and the jittered ellipse
    xs, ys = np.meshgrid(steps, steps)
    points = np.stack([xs.ravel(), ys.ravel()])  # (2, G)
    in_disc = (points**2).sum(0) <= 0.25
    inverse = np.linalg.inv(jitters)
    out = np.empty(len(jitters))
    for start in range(0, len(jitters), 16):  # in chunks that stay in cache (the same values, 3x faster)
        part = inverse[start : start + 16]
        mapped = part[:, :2, :2] @ points + part[:, :2, 2:]  # (n, 2, G)
        in_ellipse = (mapped**2).sum(1) <= 0.25
        out[start : start + 16] = (in_disc & in_ellipse).sum(1) / (in_disc | in_ellipse).sum(1)
    return out
