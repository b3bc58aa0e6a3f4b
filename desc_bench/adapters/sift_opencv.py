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

import hashlib

import cv2
import numpy as np
import torch

from ..imaging import DEFAULT_KEYPOINT_SIZE, MAGNIFICATION
from ..io.memo import BoundedCache
from .base import Descriptor, Frames, InputSpec, reuse_allowed
from .prepare import describe_each, uint8_patches

_CHUNK = 128  # patches per thread task


# Raw OpenCV SIFT of patch batches by content, shared by SIFT and RootSIFT in one run (each batch
# described once); used only inside reusing_results.
_RAW = BoundedCache(256 << 20)


def _batch_key(method: str, patches: np.ndarray) -> tuple:
    return method, patches.shape, hashlib.blake2b(patches.tobytes(), digest_size=16).digest()


def _centre_keypoint(size: int) -> cv2.KeyPoint:
    return cv2.KeyPoint(size / 2.0, size / 2.0, size / MAGNIFICATION)


class SiftOpenCV(Descriptor):
    """OpenCV's SIFT descriptor (cv2.SIFT_create, default parameters)."""

    name = "sift-opencv"
    dim = 128
    input = InputSpec(channels=1, patch_size=None, uint8=True)
    batch_size = 4096
    summary = "OpenCV SIFT, patch described as a whole (official HPatches OpenCV convention)"
    root = False
    raw_method = "cv2.SIFT_create() defaults"  # what the raw SIFT of a batch depends on besides its pixels

    def setup(self) -> None:
        self._sift = cv2.SIFT_create()
        self._threads = max(1, torch.get_num_threads())

    def _finish(self, desc: np.ndarray) -> torch.Tensor:
        desc = desc.astype(np.float32)  # a copy: the raw array may be shared (_RAW)
        if self.root:
            desc = np.sqrt(desc / np.maximum(np.abs(desc).sum(axis=1, keepdims=True), 1e-12))
        return torch.from_numpy(np.ascontiguousarray(desc))

    def _one_patch(self, patch: np.ndarray, keypoint: cv2.KeyPoint) -> np.ndarray:
        _, desc = self._sift.compute(patch, [keypoint])
        if desc is None or len(desc) != 1:
            return np.full(128, np.nan, np.float32)  # reported by check_output as a clear error
        return desc[0]

    def describe_patches(self, prepared: torch.Tensor) -> torch.Tensor:
        patches = uint8_patches(prepared)
        if not reuse_allowed():
            return self._finish(self._raw_patches(patches))
        key = _batch_key(self.raw_method, patches)
        raw = _RAW.get(key)
        if raw is None:
            raw = self._raw_patches(patches)
            _RAW.put(key, raw, raw.nbytes)
        return self._finish(raw)

    def _raw_patches(self, patches: np.ndarray) -> np.ndarray:
        keypoint = _centre_keypoint(patches.shape[-1])
        rows = describe_each(lambda p: self._one_patch(p, keypoint), patches, self._threads, _CHUNK)
        return np.stack(rows)

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
