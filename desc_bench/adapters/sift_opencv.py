"""OpenCV SIFT and RootSIFT (Lowe, IJCV 2004; Arandjelovic & Zisserman, CVPR 2012).

Patches ``(B, 1, P, P)`` -> ``(B, 128)`` float32.

On patches the descriptor is computed for the patch as a whole, as the official hpatches-benchmark
OpenCV extraction (``python/extract_opencv_sift.py``) does: one keypoint at ``(P/2, P/2)`` with
size ``P / 5.303`` (a 65 px HPatches patch spans 5.303 keypoint sizes) and OpenCV's default angle
(-1). Note the centre is ``P/2`` in OpenCV's pixel convention, half a pixel off the geometric centre
``(P-1)/2``; it is kept because the published OpenCV-SIFT HPatches numbers were computed with it.

On images, descriptors are computed at the given frames (size = OpenCV keypoint diameter,
defaulting to the HPatches patch-centre size for 65 px, angle in degrees, 0 when absent).

RootSIFT: L1-normalise, then element-wise square root (so the result has unit L2 norm).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch

from ..imaging import DEFAULT_KEYPOINT_SIZE, MAGNIFICATION
from .base import Descriptor, Frames, InputSpec


def _centre_keypoint(size: int) -> cv2.KeyPoint:
    return cv2.KeyPoint(size / 2.0, size / 2.0, size / MAGNIFICATION)


class SiftOpenCV(Descriptor):
    """OpenCV's SIFT descriptor (cv2.SIFT_create, default parameters)."""

    name = "sift-opencv"
    dim = 128
    input = InputSpec(channels=1, patch_size=None)
    batch_size = 4096
    summary = "OpenCV SIFT, patch described as a whole (official HPatches OpenCV convention)"
    root = False

    def setup(self) -> None:
        self._sift = cv2.SIFT_create()
        self._threads = max(1, torch.get_num_threads())

    def _finish(self, desc: np.ndarray) -> torch.Tensor:
        desc = desc.astype(np.float32, copy=False)
        if self.root:
            desc = np.sqrt(desc / np.maximum(np.abs(desc).sum(axis=1, keepdims=True), 1e-12))
        return torch.from_numpy(np.ascontiguousarray(desc))

    def _one_patch(self, patch: np.ndarray, keypoint: cv2.KeyPoint) -> np.ndarray:
        _, desc = self._sift.compute(patch, [keypoint])
        if desc is None or len(desc) != 1:
            return np.full(128, np.nan, np.float32)  # reported by check_output as a clear error
        return desc[0]

    def describe_patches(self, prepared: torch.Tensor) -> torch.Tensor:
        patches = prepared[:, 0].round().clamp(0, 255).to(torch.uint8).cpu().numpy()
        keypoint = _centre_keypoint(patches.shape[-1])
        if len(patches) < 64 or self._threads == 1:
            rows = [self._one_patch(p, keypoint) for p in patches]
        else:  # OpenCV releases the GIL: describe chunks of patches in parallel
            with ThreadPoolExecutor(self._threads) as pool:
                rows = list(pool.map(lambda p: self._one_patch(p, keypoint), patches, chunksize=64))
        return self._finish(np.stack(rows))

    def describe_keypoints(self, image: np.ndarray, frames: Frames) -> torch.Tensor:
        gray = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        sizes = frames.scale if frames.scale is not None else np.full(len(frames), DEFAULT_KEYPOINT_SIZE)
        angles = frames.angle if frames.angle is not None else np.zeros(len(frames))
        keypoints = [
            cv2.KeyPoint(float(x), float(y), float(s), float(a)) for (x, y), s, a in zip(frames.xy, sizes, angles)
        ]
        if not keypoints:
            return torch.zeros(0, self.dim)
        kept, desc = self._sift.compute(np.ascontiguousarray(gray), keypoints)
        if desc is None or len(kept) != len(keypoints):
            # OpenCV drops keypoints it cannot describe; describe them one by one to keep the order
            desc = np.stack([self._one_patch(gray, kp) for kp in keypoints])
        return self._finish(desc)


class RootSiftOpenCV(SiftOpenCV):
    """RootSIFT on OpenCV SIFT: Hellinger kernel via L1 normalisation and square root."""

    name = "rootsift-opencv"
    summary = "RootSIFT on OpenCV SIFT (L1 normalise, square root)"
    root = True
