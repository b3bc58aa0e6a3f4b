"""Patches sampled through frame maps (patch pixels -> image pixels), without aliasing.

A patch map is a ``(3, 3)`` homography from patch pixels (column, row of a ``PATCH_SIZE`` square)
to level-0 image pixels, e.g. ``frame_matrices(frames) @ PATCH_TO_UNIT`` from :mod:`.frames`,
optionally followed by a ground-truth homography to another image.
"""

from __future__ import annotations

import cv2
import numpy as np

from ...imaging import PATCH_SIZE
from .frames import HALF
from .geometry import apply_homography, points_inside

PYRAMID_LEVELS = 5
CORNERS = np.array(
    [[0, 0], [PATCH_SIZE - 1, 0], [PATCH_SIZE - 1, PATCH_SIZE - 1], [0, PATCH_SIZE - 1]], dtype=np.float64
)


def inside(matrices: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Whether each patch map ``(N, 3, 3)`` keeps the whole patch inside an image of ``shape``: ``(N,)``."""
    return points_inside(matrices, CORNERS, shape)


def pyramid(image: np.ndarray, levels: int = PYRAMID_LEVELS) -> list[np.ndarray]:
    """Gaussian pyramid of a float32 image; level l pixel (x, y) is level 0 pixel (2^l x, 2^l y)."""
    out = [image]
    while len(out) < levels and min(out[-1].shape) >= 16:
        out.append(cv2.pyrDown(out[-1]))
    return out


def sample_patches(levels: list[np.ndarray], matrices: np.ndarray) -> np.ndarray:
    """Sample ``(N, 65, 65)`` uint8 patches through maps ``(N, 3, 3)`` (patch pixels -> level-0 pixels).

    Each patch is read from the pyramid level nearest to its local scale (image pixels per patch
    pixel at the patch centre), so downsampled patches are not aliased.
    """
    centre = np.array([[HALF, HALF], [HALF + 1, HALF], [HALF, HALF + 1]])
    mapped = apply_homography(matrices, centre)
    jac = np.stack([mapped[:, 1] - mapped[:, 0], mapped[:, 2] - mapped[:, 0]], -1)
    pixels_per_patch_pixel = np.sqrt(np.abs(np.linalg.det(jac)))
    chosen = np.clip(np.round(np.log2(np.maximum(pixels_per_patch_pixel, 1.0))), 0, len(levels) - 1).astype(int)
    # Scaling rows by powers of two is exact, so these equal diag(2^-l, 2^-l, 1) @ matrix.
    to_level = matrices * np.stack([0.5**chosen, 0.5**chosen, np.ones(len(chosen))], -1)[:, :, None]
    sampled = np.empty((len(matrices), PATCH_SIZE, PATCH_SIZE), dtype=np.float32)
    for index, level in enumerate(chosen):  # one OpenCV call per patch (it releases the GIL)
        cv2.warpPerspective(
            levels[level],
            to_level[index],
            (PATCH_SIZE, PATCH_SIZE),
            dst=sampled[index],
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
    return np.clip(np.rint(sampled), 0, 255).astype(np.uint8)
