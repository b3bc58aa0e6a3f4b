"""GIFT's transformed variants of image-pair datasets (Liu et al., NeurIPS 2019), named by a suffix.

In GIFT's order (zju3dv/GIFT, ``dataset/correspondence_database.py``): each target image k = 2..6
is first resized so that its longest side is 480 (GIFT's evaluation size, :func:`gift_size`), then
``<source>-er`` rotates it about the resized image's centre ``(w/2, h/2)`` by U(-90, 90) degrees and
``<source>-es`` scales it about that centre by 2^-U(1.5, 2), inverted half of the time, then shifts it
at random. The uncovered background is filled by another sequence's first image resized to the
target (bilinear, as GIFT's ``add_homography_background``; GIFT draws it from SUN2012). ``H_1k``
becomes ``T @ diag(r, r, 1) @ H_1k`` (r the target's resize ratio), so the targets are already at
GIFT's size. The random draws are desc-bench's own, seeded per sequence and image; the images are
computed in memory on load.
:func:`transformed` makes them from any :class:`~desc_bench.datasets.pairs.PairSet`;
:func:`variant_sources` registers ``-er`` and ``-es`` sources for a registered pair source.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from ..errors import UnknownNameError
from .base import DatasetSource
from .pairs import PairSet, Sequence, image_size, read_image
from .synth.seeds import crc_seed

GIFT_LONGEST = 480  # GIFT's evaluation size: the longest image side


def gift_size(width: int, height: int, longest: int = GIFT_LONGEST) -> tuple[tuple[int, int], float]:
    """GIFT's resize rule: one ratio ``longest / max(w, h)``, the new ``(w, h)`` truncated to int."""
    ratio = longest / max(width, height)
    return (int(width * ratio), int(height * ratio)), ratio


@dataclass(frozen=True)
class Warp:
    """A synthetic transformation applied to a loaded target image (ER/ES variants).

    The source image is first resized to ``(width, height)`` (bilinear) when ``resized`` is set, as
    GIFT transforms its 480 px images; ``matrix`` then maps it to the output (size ``width`` x
    ``height``). Output pixels not covered are taken from ``background`` (an image path, resized to
    the output) or, without one, from smooth deterministic noise seeded by ``seed``.
    """

    matrix: np.ndarray
    width: int
    height: int
    background: Path | None = None
    seed: int = 0
    resized: bool = False  # the source is resized to (width, height) first: GIFT's order

    def apply(self, image: np.ndarray) -> np.ndarray:
        size = (self.width, self.height)
        if self.resized:
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        warped = cv2.warpPerspective(image, self.matrix, size, flags=cv2.INTER_LINEAR)
        covered = cv2.warpPerspective(
            np.ones(image.shape[:2], np.uint8), self.matrix, size, flags=cv2.INTER_NEAREST
        ).astype(bool)
        if self.background is not None:
            back = cv2.resize(read_image(self.background), size, interpolation=cv2.INTER_LINEAR)
        else:
            rng = np.random.default_rng(self.seed)
            noise = rng.integers(0, 256, (max(self.height // 8, 1), max(self.width // 8, 1), 3), dtype=np.uint8)
            back = cv2.resize(noise, size, interpolation=cv2.INTER_CUBIC)
        warped[~covered] = back[~covered]
        return warped


@dataclass(frozen=True)
class Variant:
    """GIFT's transformed variants: which transform, and its parameters."""

    name: str  # "er" or "es"
    angle_range: tuple[float, float] = (-90.0, 90.0)  # ER, degrees
    log2_scale_range: tuple[float, float] = (1.5, 2.0)  # ES: scale = 2 ** -U(low, high)
    invert: bool = True  # ES: use 1 / scale half of the time


VARIANTS = {"er": Variant("er"), "es": Variant("es")}


def rotation_warp(width: int, height: int, rng: np.random.Generator, variant: Variant) -> np.ndarray:
    """Rotate about the image centre ``(w/2, h/2)`` (GIFT's: the mean of the corners) by
    U(angle_range) degrees; output keeps the size."""
    theta = np.deg2rad(rng.uniform(*variant.angle_range))
    cx, cy = width / 2.0, height / 2.0
    c, s = np.cos(theta), np.sin(theta)
    to_centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], np.float64)
    rotate = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float64)
    return np.linalg.inv(to_centre) @ rotate @ to_centre


def scale_warp(width: int, height: int, rng: np.random.Generator, variant: Variant) -> np.ndarray:
    """Scale about the centre ``(w/2, h/2)`` by 2^-U(range) (inverted half the time), then shift at
    random so that a shrunk image stays inside the frame and an enlarged one still covers it (GIFT's
    offset ranges)."""
    ratio = 2.0 ** (-rng.uniform(*variant.log2_scale_range))
    if variant.invert and rng.random() < 0.5:
        ratio = 1.0 / ratio
    cx, cy = width / 2.0, height / 2.0
    span_x, span_y = abs(ratio - 1.0) * width / 2.0, abs(ratio - 1.0) * height / 2.0
    dx, dy = rng.uniform(-span_x, span_x), rng.uniform(-span_y, span_y)
    return np.array([[ratio, 0, (1 - ratio) * cx + dx], [0, ratio, (1 - ratio) * cy + dy], [0, 0, 1]], np.float64)


def transformed(pairset: PairSet, variant: str, *, seed: int = 0) -> PairSet:
    """GIFT's ER or ES variant of any pair set: each target image k = 2..6 is resized to GIFT's size,
    then transformed; ``H_1k`` becomes ``T @ diag(r, r, 1) @ H_1k``, and the uncovered background is
    filled with the first image of another sequence (chosen by the seeded generator; smooth noise for
    a one-sequence set). The variant keeps the base set's completeness and default protocol."""
    if variant not in VARIANTS:
        raise UnknownNameError("pair-set variant", variant, list(VARIANTS))
    spec = VARIANTS[variant]
    make = rotation_warp if variant == "er" else scale_warp
    sequences: list[Sequence] = []
    for index, seq in enumerate(pairset.sequences):
        warps: list[Warp | None] = [None]
        homographies = []
        for k in range(2, len(seq.images) + 1):
            rng = np.random.default_rng(crc_seed(seed, variant, seq.name, k))
            (width, height), ratio = gift_size(*image_size(seq.images[k - 1]))
            matrix = make(width, height, rng, spec)
            others = [s for j, s in enumerate(pairset.sequences) if j != index]
            background = others[int(rng.integers(len(others)))].images[0] if others else None
            noise = crc_seed(seed, variant, seq.name, k, "noise")
            warps.append(Warp(matrix, width, height, background, seed=noise, resized=True))
            homographies.append(matrix @ np.diag([ratio, ratio, 1.0]) @ seq.homographies[k - 2])
        sequences.append(replace(seq, homographies=tuple(homographies), warps=tuple(warps)))
    return replace(
        pairset,
        name=f"{pairset.name}-{variant}",
        sequences=tuple(sequences),
        version=f"{pairset.version}-{variant}{seed}-gift480",
    )


_WORDS = {"er": "rotated (ER, U(-90, 90) deg)", "es": "scaled (ES, 2^-U(1.5, 2), inverted half the time)"}


def variant_sources(base: type[DatasetSource], module: str) -> tuple[type[DatasetSource], type[DatasetSource]]:
    """Register ``<base>-er`` and ``<base>-es``: sources that open ``base`` and transform it.

    Returns the two classes (ER, ES), which callers bind to names in ``module``.
    """

    def make(variant: str) -> type[DatasetSource]:
        def open_(self, data_dir: Path, progress: bool = True) -> PairSet:
            return transformed(base().open(data_dir, progress=progress), variant)

        return type(
            f"{base.__name__}{variant.upper()}",
            (base,),
            {
                "name": f"{base.name}-{variant}",
                "summary": f"{base.name} with GIFT's {_WORDS[variant]} target images",
                "open": open_,
                "__module__": module,
            },
        )

    return make("er"), make("es")
