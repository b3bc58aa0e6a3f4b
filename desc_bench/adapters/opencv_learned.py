"""Learned descriptors shipped inside OpenCV's contrib module (``cv2.xfeatures2d``): no download.

    vgg-opencv        VGG (Simonyan, Vedaldi & Zisserman, TPAMI 2014), VGG_120: (N, 120) float32, L2
    boostdesc-opencv  BinBoost (Trzcinski et al., CVPR 2013 / TPAMI 2015), BINBOOST_256:
                      (N, 32) uint8 (256 bits), Hamming
    beblid-opencv     BEBLID (Suarez et al., Pattern Recognition Letters 2020), 512 bits:
                      (N, 64) uint8, Hamming
    teblid-opencv     TEBLID (Suarez et al., Knowledge-Based Systems 2021), 256 bits:
                      (N, 32) uint8, Hamming

Frames are OpenCV keypoints (size = diameter, angle in degrees). Each descriptor samples a window of
``scale_factor x size``; the scale factor depends on the detector that made the keypoints. OpenCV's
documentation gives, for all four: 6.25 for KAZE/SURF (the OpenCV default), 6.75 for SIFT, 5.00 for
AKAZE/MSD/AGAST/FAST/BRISK, and 0.75 (VGG) / 1.50 (BoostDesc) / 1.00 (BEBLID, TEBLID) for ORB.
Our frames follow the SIFT convention (the HPatches patches were cut around SIFT-like frames, and the
harness's frames are OpenCV SIFT sizes), so the default is 6.75; the option ``scale_factor`` changes it.

On patches ``(B, 1, P, P)`` the patch is described as a whole, as sift-opencv does (the official
HPatches OpenCV convention): one keypoint at ``(P/2, P/2)`` with size ``P / 5.303`` (12.26 px for a
65 px patch), angle 0. Each patch is described in its own padded image (so a descriptor never
depends on the other patches of the batch or on its position in it), patches in parallel threads.
On images, frames without a size get the same 65 / 5.303, angle 0. Images are padded by reflection
before describing so that OpenCV drops no keypoint near the border.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, ClassVar

import cv2
import numpy as np
import torch

from ..errors import DescriptorOutputError
from ..imaging import DEFAULT_KEYPOINT_SIZE, MAGNIFICATION
from .base import Descriptor, Distance, Frames, InputSpec
from .prepare import describe_each, uint8_patches

SIFT_SCALE_FACTOR = 6.75
# Enum values of cv::xfeatures2d (the Python bindings do not export them): VGG::VGG_120 and
# BoostDesc::BINBOOST_256, the defaults of VGG_create and BoostDesc_create.
VGG_120 = 100
BINBOOST_256 = 302
_CHUNK = 64  # patches per thread task


@dataclass(frozen=True)
class ScaleOptions:
    scale_factor: float = SIFT_SCALE_FACTOR  # window / keypoint size; 6.75 for SIFT frames (OpenCV docs)


def _xfeatures(name: str):
    module = getattr(cv2, "xfeatures2d", None)
    return getattr(module, name, None) if module is not None else None


class _OpenCVLearned(Descriptor):
    """Shared keypoint handling; subclasses set ``factory`` and ``make``."""

    input = InputSpec(channels=1, patch_size=None, uint8=True)
    Options = ScaleOptions
    batch_size = 4096
    factory: ClassVar[str] = ""

    @classmethod
    def availability(cls) -> str | None:
        if _xfeatures(cls.factory) is None:
            return (
                f"needs opencv-contrib-python: cv2.xfeatures2d.{cls.factory} is missing from OpenCV "
                f"{cv2.__version__} (pip install opencv-contrib-python)"
            )
        return None

    def make(self, create: Any) -> Any:
        raise NotImplementedError

    def setup(self) -> None:
        create = _xfeatures(self.factory)
        if create is None:
            from ..errors import DescriptorUnavailableError

            raise DescriptorUnavailableError(f"{self.name}: {self.availability()}")
        self._extractor = self.make(create)
        self._threads = max(1, torch.get_num_threads())
        self._local = threading.local()
        size = self._extractor.descriptorSize()
        if size != self.dim:
            raise DescriptorOutputError(
                f"{self.name}: OpenCV {cv2.__version__} gives {size}-byte/float descriptors, expected {self.dim}"
            )

    def _thread_extractor(self) -> Any:
        """This thread's extractor: OpenCV's VGG and BoostDesc keep per-call state in the object, so
        concurrent ``compute`` calls on one instance give wrong descriptors; each worker has its own."""
        if threading.current_thread() is threading.main_thread():
            return self._extractor
        extractor = getattr(self._local, "extractor", None)
        if extractor is None:
            extractor = self._local.extractor = self.make(_xfeatures(self.factory))
        return extractor

    def _padding(self, size: float) -> int:
        """Reflected border (px) that keeps a keypoint of ``size`` anywhere in the image described."""
        return int(math.ceil(self.options.scale_factor * size * 0.75)) + 8

    def _padded_compute(self, gray: np.ndarray, pad: int, keypoints: list) -> tuple[list, np.ndarray]:
        """OpenCV's ``compute`` on ``gray`` reflected by ``pad`` px (``keypoints`` in padded pixels);
        DescriptorOutputError unless every keypoint is described."""
        padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
        kept, desc = self._thread_extractor().compute(padded, keypoints)
        if desc is None or len(kept) != len(keypoints):
            found = 0 if desc is None else len(kept)
            raise DescriptorOutputError(f"{self.name}: OpenCV described {found} of {len(keypoints)} keypoints")
        return kept, desc

    def _compute(self, gray: np.ndarray, xy: np.ndarray, sizes: np.ndarray, angles: np.ndarray) -> np.ndarray:
        """Descriptors ``(N, dim)`` in the order of the keypoints; the image is padded so none is dropped."""
        pad = self._padding(float(sizes.max()))
        keypoints = [
            cv2.KeyPoint(float(x + pad), float(y + pad), float(s), float(a), 0.0, 0, i)
            for i, ((x, y), s, a) in enumerate(zip(xy, sizes, angles))
        ]
        kept, desc = self._padded_compute(np.ascontiguousarray(gray), pad, keypoints)
        order = np.array([kp.class_id for kp in kept])
        out = np.empty_like(desc)
        out[order] = desc
        return out

    def _tensor(self, desc: np.ndarray) -> torch.Tensor:
        dtype = np.uint8 if self.distance is Distance.HAMMING else np.float32
        return torch.from_numpy(np.ascontiguousarray(desc.astype(dtype, copy=False)))

    def describe_patches(self, prepared: torch.Tensor) -> torch.Tensor:
        """Each patch described as a whole, alone in its own padded image: what :meth:`_compute` does
        for its centre keypoint, with the keypoint and the border made once per batch."""
        patches = uint8_patches(prepared)
        size = patches.shape[-1]
        pad = self._padding(size / MAGNIFICATION)
        centre = size / 2.0 + pad
        keypoints = [cv2.KeyPoint(centre, centre, size / MAGNIFICATION, 0.0, 0.0, 0, 0)]
        rows = describe_each(lambda p: self._padded_compute(p, pad, keypoints)[1], patches, self._threads, _CHUNK)
        return self._tensor(np.concatenate(rows))

    def describe_keypoints(self, image: np.ndarray, frames: Frames) -> torch.Tensor:
        if len(frames) == 0:
            dtype = torch.uint8 if self.distance is Distance.HAMMING else torch.float32
            return torch.zeros(0, self.dim, dtype=dtype)
        gray = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        sizes = frames.scale if frames.scale is not None else np.full(len(frames), DEFAULT_KEYPOINT_SIZE)
        angles = frames.angle if frames.angle is not None else np.zeros(len(frames))
        return self._tensor(self._compute(gray, frames.xy, sizes, angles))


class VggOpenCV(_OpenCVLearned):
    """OpenCV's VGG descriptor (learned pooling regions + projection), 120-D float."""

    name = "vgg-opencv"
    dim = 120
    distance = Distance.L2
    factory = "VGG_create"
    summary = "VGG (Simonyan et al. 2014) from OpenCV contrib, VGG_120, SIFT-frame scale 6.75"

    def make(self, create: Any) -> Any:
        return create(desc=VGG_120, scale_factor=self.options.scale_factor)


class BoostDescOpenCV(_OpenCVLearned):
    """OpenCV's BoostDesc in its BinBoost-256 configuration (binary)."""

    name = "boostdesc-opencv"
    dim = 32
    distance = Distance.HAMMING
    factory = "BoostDesc_create"
    summary = "BinBoost-256 (Trzcinski et al.) from OpenCV contrib, binary, SIFT-frame scale 6.75"

    def make(self, create: Any) -> Any:
        return create(desc=BINBOOST_256, scale_factor=self.options.scale_factor)


class BeblidOpenCV(_OpenCVLearned):
    """OpenCV's BEBLID, 512 bits."""

    name = "beblid-opencv"
    dim = 64
    distance = Distance.HAMMING
    factory = "BEBLID_create"
    summary = "BEBLID-512 (Suarez et al. 2020) from OpenCV contrib, binary, SIFT-frame scale 6.75"

    def make(self, create: Any) -> Any:
        return create(self.options.scale_factor, cv2.xfeatures2d.BEBLID_SIZE_512_BITS)


class TeblidOpenCV(_OpenCVLearned):
    """OpenCV's TEBLID, 256 bits."""

    name = "teblid-opencv"
    dim = 32
    distance = Distance.HAMMING
    factory = "TEBLID_create"
    summary = "TEBLID-256 (Suarez et al. 2021) from OpenCV contrib, binary, SIFT-frame scale 6.75"

    def make(self, create: Any) -> Any:
        return create(self.options.scale_factor, cv2.xfeatures2d.TEBLID_SIZE_256_BITS)
