"""Keypoint detectors for the image-pair protocols; each returns :class:`~desc_bench.adapters.base.Frames`.

- ``dog``: OpenCV SIFT's difference-of-Gaussians detector (Lowe, IJCV 2004) with scale (keypoint
  size, a diameter) and orientation (degrees), the ``budget`` strongest responses kept.
- ``harris``: the MSNet protocol's sampler (Harris, 1988): ``cv2.cornerHarris(gray, blockSize=2,
  ksize=3, k=0.04)``, pixels whose response is above its 90th percentile, ``budget`` drawn at random
  with a seeded generator; no scale or orientation.
- ``superpoint``: SuperPoint detections (DeTone et al., CVPRW 2018), available only when a
  registered ``superpoint`` adapter can run here (weights fetched); it exposes
  ``detect(image) -> Frames`` (strongest first) and the first ``budget`` are kept; with budget
  ``None`` every detection is kept (GIFT's evaluation does so).

Shapes: ``image`` is ``(H, W)`` or ``(H, W, 3)`` RGB uint8; frames are ``(N, 2)`` xy pixels with
pixel centres at integers, ``N <= budget``.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..adapters.base import Frames
from ..errors import DescriptorUnavailableError, InputError, UnknownNameError

HARRIS_BLOCK, HARRIS_KSIZE, HARRIS_K, HARRIS_PERCENTILE = 2, 3, 0.04, 90.0


def gray(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise InputError(f"expected a uint8 (H, W) or (H, W, 3) image, got {image.dtype} {image.shape}")
    return image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def detect_dog(image: np.ndarray, budget: int = 1000, seed: int = 0) -> Frames:
    """OpenCV SIFT keypoints: the ``budget`` strongest, with size and angle."""
    sift = cv2.SIFT_create(nfeatures=int(budget))
    keypoints = sift.detect(gray(image), None)
    keypoints = sorted(keypoints, key=lambda kp: -kp.response)[: int(budget)]
    if not keypoints:
        return Frames(np.zeros((0, 2)), np.zeros(0), np.zeros(0))
    xy = np.array([kp.pt for kp in keypoints], np.float64)
    size = np.array([kp.size for kp in keypoints], np.float64)
    angle = np.array([kp.angle for kp in keypoints], np.float64)
    return Frames(xy, size, angle)


def harris_mask(image: np.ndarray) -> np.ndarray:
    """Boolean ``(H, W)``: Harris response strictly above its 90th percentile (MSNet's sampler)."""
    response = cv2.cornerHarris(gray(image).astype(np.float32), HARRIS_BLOCK, HARRIS_KSIZE, HARRIS_K)
    return response > np.percentile(response.ravel(), HARRIS_PERCENTILE)


def sample_mask(mask: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """Integer xy ``(N, 2)`` of up to ``budget`` pixels drawn without replacement from ``mask``."""
    yx = np.argwhere(mask)
    if len(yx) > budget:
        yx = yx[np.sort(rng.choice(len(yx), int(budget), replace=False))]
    return yx[:, ::-1].astype(np.int64)


def detect_harris(image: np.ndarray, budget: int = 1000, seed: int = 0) -> Frames:
    xy = sample_mask(harris_mask(image), budget, np.random.default_rng(seed))
    return Frames(xy.astype(np.float64))


def detect_superpoint(image: np.ndarray, budget: int | None = 1000, seed: int = 0) -> Frames:
    """SuperPoint's own detections (the adapter's ``detect``, strongest first): the first ``budget``,
    or all of them when ``budget`` is None."""
    frames = _superpoint().detect(image)
    return Frames(frames.xy if budget is None else frames.xy[: int(budget)])


_SUPERPOINT: dict = {}


def _superpoint():
    problem = superpoint_problem()
    if problem:
        raise DescriptorUnavailableError(f"detector superpoint: {problem}")
    if "model" not in _SUPERPOINT:
        from ..adapters.registry import descriptor

        _SUPERPOINT["model"] = descriptor("superpoint")
    return _SUPERPOINT["model"]


def superpoint_problem() -> str | None:
    """None when SuperPoint detections can be computed here, else why not."""
    from ..adapters.registry import registered

    cls = registered().get("superpoint")
    if cls is None:
        return "no superpoint adapter is registered"
    if not hasattr(cls, "detect"):
        return "the superpoint adapter has no detect(image) -> Frames method"
    return cls.availability()


DETECTORS = {"dog": detect_dog, "harris": detect_harris, "superpoint": detect_superpoint}
UNBOUNDED = ("superpoint",)  # detectors that can keep every detection (budget None)


def available_detectors() -> list[str]:
    return [name for name in DETECTORS if name != "superpoint" or superpoint_problem() is None]


def detect(name: str, image: np.ndarray, budget: int | None = 1000, seed: int = 0) -> Frames:
    """Run the named detector; unknown names raise an error listing the valid ones. ``budget`` None
    keeps every detection (only for the detectors in :data:`UNBOUNDED`)."""
    if name not in DETECTORS:
        raise UnknownNameError("detector", name, list(DETECTORS))
    if budget is None:
        if name not in UNBOUNDED:
            raise InputError(f"detector {name} needs a keypoint budget (--budget N)")
        return DETECTORS[name](image, None, seed)
    if budget < 1:
        raise InputError(f"keypoint budget must be at least 1, got {budget}")
    return DETECTORS[name](image, budget, seed)


OWN = "own"  # the descriptor's own detector (an adapter with ``detect(image) -> Frames``)


def detect_with(descriptor, name: str, image: np.ndarray, budget: int | None = 1000, seed: int = 0) -> Frames:
    """The named detector, or with ``name="own"`` the descriptor's own ``detect`` (strongest first,
    the first ``budget`` kept, all of them for None); a descriptor without one is a clear error."""
    if name != OWN:
        return detect(name, image, budget, seed)
    if not callable(getattr(descriptor, "detect", None)):
        raise DescriptorUnavailableError(
            f"detector=own: descriptor {descriptor.name} has no detector of its own; pick one of {', '.join(DETECTORS)}"
        )
    frames = descriptor.detect(image)
    keep = slice(0, None if budget is None else int(budget))
    return Frames(
        frames.xy[keep],
        None if frames.scale is None else frames.scale[keep],
        None if frames.angle is None else frames.angle[keep],
    )
