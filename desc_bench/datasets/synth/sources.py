"""Source pictures: images bundled with scikit-image (``skimage.data``, no download), as arrays.

:func:`load_image` returns the raw uint8 picture; :func:`to_gray`, :func:`to_rgb`,
:func:`crop` and :func:`cover` turn it into what a generator needs. :class:`Source` names one
sequence of a generated dataset and the picture it is made from.
"""

from __future__ import annotations

import enum
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

from ...errors import DatasetError


class Change(str, enum.Enum):
    """What differs between the reference and the targets of a sequence (HPatches name prefix)."""

    ILLUMINATION = "i"
    VIEWPOINT = "v"


@dataclass(frozen=True)
class Source:
    """One sequence: a bundled scikit-image picture (``skimage.data.<image>``), optionally cropped."""

    sequence: str  # "i_coffee", "v_astronaut"
    image: str  # skimage.data function name
    crop: tuple[int, int, int, int] | None = None  # y0, y1, x0, x1

    @property
    def change(self) -> Change:
        return Change(self.sequence[0])


def load_image(name: str, who: str = "synthetic data") -> np.ndarray:
    """``skimage.data.<name>()`` as uint8 ``(H, W)`` or ``(H, W, C)``; errors say what to do.

    Loaders returning a tuple (``stereo_motorcycle``: left, right, disparity) give the first image.
    """
    import skimage.data

    loader = getattr(skimage.data, name, None)
    if loader is None:
        raise DatasetError(f"{who}: scikit-image has no bundled image {name!r} (skimage.data)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = loader()
    except Exception as exc:  # e.g. an image that needs pooch and a download
        raise DatasetError(f"{who}: cannot load skimage.data.{name}() offline: {exc}") from None
    if isinstance(image, tuple):
        image = image[0]
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise DatasetError(f"{who}: skimage.data.{name}() is {image.dtype} {image.shape}, expected a uint8 image")
    return image


def to_gray(image: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W)``: RGB(A) pictures through OpenCV's RGB2GRAY, gray ones unchanged."""
    if image.ndim == 3:
        return cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    return image


def to_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 ``(H, W, 3)``: gray pictures repeated in three channels, alpha dropped."""
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def crop(image: np.ndarray, box: tuple[int, int, int, int] | None) -> np.ndarray:
    """``image[y0:y1, x0:x1]`` (contiguous) for ``box = (y0, y1, x0, x1)``; the image when None."""
    if box is not None:
        y0, y1, x0, x1 = box
        image = image[y0:y1, x0:x1]
    return np.ascontiguousarray(image)


def load_gray(source: Source, who: str = "synthetic data") -> np.ndarray:
    """The source picture as a gray ``(H, W)`` uint8 array, cropped."""
    return crop(to_gray(load_image(source.image, who)), source.crop)


def cover(image: np.ndarray, size: tuple[int, int], margin: float) -> np.ndarray:
    """Resize ``image`` so that it is at least ``margin`` x ``size`` (width, height) in both
    directions, keeping its aspect ratio (cubic when enlarging, area when shrinking)."""
    width, height = size
    factor = max(margin * width / image.shape[1], margin * height / image.shape[0])
    new_size = (int(round(image.shape[1] * factor)), int(round(image.shape[0] * factor)))
    return cv2.resize(image, new_size, interpolation=cv2.INTER_CUBIC if factor > 1 else cv2.INTER_AREA)
