"""Random homographies and applying them (pixel coordinates, pixel centres at integers).

- :func:`viewpoint_homography`: a viewpoint-like change of one image (``hpatches-synth`` ``v_``).
- :func:`view_quad` / :func:`view_matrix`: a camera view (a quadrilateral) of a larger picture,
  and the homography that renders it (``hpatches-seq-synth``).
- :func:`apply_homography`, :func:`points_inside`, :func:`warp`.
"""

from __future__ import annotations

import math

import cv2
import numpy as np


def viewpoint_homography(rng: np.random.Generator, shape: tuple[int, int], k: int) -> np.ndarray:
    """A random homography ``(3, 3)`` for target ``k`` (1..5) of an image of ``shape`` (H, W).

    A centred rectangle (70 % of the image) is rotated, scaled (mostly zoom-out, as a camera moving
    away and sideways) and its corners moved independently (perspective); the change grows with
    ``k``. Pixels: ``x_t ~ H x_ref``.
    """
    height, width = shape
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    half = 0.35 * np.array([width, height])
    src = centre + half * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    angle = math.radians(rng.uniform(-1, 1) * 3.0 * k)
    scale = math.exp(rng.uniform(-1.0, 0.4) * 0.05 * k)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    dst = centre + scale * (src - centre) @ rot.T
    dst = dst + rng.uniform(-1, 1, size=(4, 2)) * (0.012 + 0.012 * k) * min(height, width)
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float64)


def view_quad(
    rng: np.random.Generator, source_shape: tuple[int, ...], view_size: tuple[int, int], strength: float
) -> np.ndarray:
    """Corners (TL, TR, BR, BL) ``(4, 2)`` in source pixels of a random view of ``view_size``
    (width, height): rotated, scaled, moved and its corners perturbed, more with ``strength``
    (0: centred and axis-aligned). Redrawn, with less strength, until it lies inside the source."""
    src_h, src_w = source_shape[:2]
    width, height = view_size
    centre = np.array([(src_w - 1) / 2.0, (src_h - 1) / 2.0])
    base = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64) * [(width - 1) / 2.0, (height - 1) / 2.0]
    for _ in range(100):
        angle = np.deg2rad(rng.uniform(-25, 25) * strength)
        scale = 2.0 ** (rng.uniform(-0.5, 0.35) * strength)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        quad = (base * scale) @ rot.T
        quad = quad + rng.uniform(-0.12, 0.12, size=(4, 2)) * [width, height] * strength  # perspective
        quad = quad + centre + rng.uniform(-0.08, 0.08, size=2) * [width, height] * strength
        if (quad >= 0).all() and (quad[:, 0] <= src_w - 1).all() and (quad[:, 1] <= src_h - 1).all():
            return quad
        strength *= 0.9
    return base + centre


def view_matrix(quad: np.ndarray, view_size: tuple[int, int]) -> np.ndarray:
    """Homography ``(3, 3)`` from source pixels to view pixels sending ``quad`` to the view's corners."""
    width, height = view_size
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)
    return cv2.getPerspectiveTransform(quad.astype(np.float32), corners.astype(np.float32)).astype(np.float64)


def warp(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` seen through ``matrix`` (source -> output pixels) at ``size`` (width, height);
    bilinear, black outside the source."""
    return cv2.warpPerspective(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def apply_homography(matrices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``points`` ``(P, 2)`` by each of ``matrices`` ``(N, 3, 3)``: ``(N, P, 2)``; w <= 0 gives inf."""
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], 1).T  # (3, P)
    mapped = matrices @ homogeneous  # (N, 3, P)
    w = mapped[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = np.where(w[:, None] > 1e-9, mapped[:, :2] / w[:, None], np.inf)
    return xy.transpose(0, 2, 1)


def points_inside(matrices: np.ndarray, points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Whether ``points`` ``(P, 2)`` mapped by each of ``matrices`` ``(N, 3, 3)`` all lie inside an
    image of ``shape`` (H, W), pixel centres 0..W-1, 0..H-1: ``(N,)`` bool."""
    height, width = shape
    mapped = apply_homography(matrices, points)
    ok = (mapped[..., 0] >= 0) & (mapped[..., 0] <= width - 1) & (mapped[..., 1] >= 0) & (mapped[..., 1] <= height - 1)
    return ok.all(1)
