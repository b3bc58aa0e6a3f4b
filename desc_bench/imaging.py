"""Image and frame conventions shared by adapters, datasets and benchmarks (bottom layer)."""

from __future__ import annotations

# Patches sampled around keypoint frames for patch descriptors are PATCH_SIZE px wide and span
# MAGNIFICATION keypoint sizes (OpenCV's diameter convention): the HPatches convention, in which a
# 65 px patch holds a frame of size 2 * 32.5 / 5.303. The one definition of that constant.
PATCH_SIZE = 65
MAGNIFICATION = 5.303
# Keypoint size (OpenCV diameter) of a frame given without one, and of a whole HPatches patch.
DEFAULT_KEYPOINT_SIZE = PATCH_SIZE / MAGNIFICATION
