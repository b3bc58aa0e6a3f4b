"""Image-pair datasets: the types and the readers of the two sequence layouts.

A :class:`PairSet` holds sequences of six images; pairs are (1, k) for k = 2..6 with a homography
``H_1k`` (float64 3x3) such that ``x_k ~ H_1k @ x_1`` in pixel coordinates (pixel centres at
integers). Images load lazily with OpenCV as RGB uint8 ``(H, W, 3)``; missing images or homographies
raise :class:`~desc_bench.errors.DatasetError` naming the file, when the set is opened.

Layouts read here:

- HPatches sequences (Balntas et al., CVPR 2017): ``<root>/<seq>/{1..6}.ppm`` and ``H_1_2..H_1_6``
  (:func:`load_hpatches_sequence`, :func:`open_hpatches_sequences`). Sub-folders that hold no file
  of the layout (a ``notes/`` folder beside the sequences) are not sequences and are skipped.
- Oxford affine (Mikolajczyk et al., IJCV 2005): ``<root>/<seq>/img{1..6}.{ppm,pgm,png}`` and
  ``H1to{k}p`` or ``H1to{k}p.xml`` (:func:`load_oxford_sequence`, :func:`open_oxford`).

Completeness: a pair set knows how many sequences the full dataset has (``expected_sequences``)
and reports ``sequence_count``, ``pair_count``, ``expected_pairs`` and ``complete`` (and the
``missing`` names where they are known), so that a partial copy never passes for the full set.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from ..errors import DatasetError, UnknownNameError
from .base import imread

if TYPE_CHECKING:
    from .variants import Warp

IMAGES = 6
TARGETS = tuple(range(2, IMAGES + 1))
IMAGE_SUFFIXES = (".ppm", ".pgm", ".png", ".jpg")


# ------------------------------------------------------------------------------------------ types


@dataclass(frozen=True)
class Sequence:
    """Six images of one scene and the homographies ``H_1k`` (k = 2..6) from image 1."""

    name: str
    images: tuple[Path, ...]  # paths of images 1..6
    homographies: tuple[np.ndarray, ...]  # H_12 .. H_16, float64 (3, 3)
    warps: tuple[Warp | None, ...] = ()  # per image 1..6, for transformed variants

    @property
    def kind(self) -> str:
        """ "i" (illumination), "v" (viewpoint) or "" by the HPatches name prefix."""
        prefix = self.name[:2]
        return prefix[0] if prefix in ("i_", "v_") else ""

    def image(self, index: int) -> np.ndarray:
        """Image ``index`` (1..6) as RGB uint8 ``(H, W, 3)``."""
        if not 1 <= index <= len(self.images):
            raise DatasetError(f"sequence {self.name} has images 1..{len(self.images)}, not {index}")
        image = read_image(self.images[index - 1])
        warp = self.warps[index - 1] if self.warps else None
        return warp.apply(image) if warp is not None else image

    def image_size(self, index: int) -> tuple[int, int]:
        """``(width, height)`` of image ``index`` (1..6) as :meth:`image` returns it, without decoding it."""
        warp = self.warps[index - 1] if self.warps else None
        return (warp.width, warp.height) if warp is not None else image_size(self.images[index - 1])

    def homography(self, index: int) -> np.ndarray:
        """``H_1k`` for k = ``index`` in 2..6 (a copy)."""
        if not 2 <= index <= len(self.homographies) + 1:
            raise DatasetError(
                f"sequence {self.name} has homographies H_1_2..H_1_{len(self.homographies) + 1}, not H_1_{index}"
            )
        return self.homographies[index - 1 - 1].copy()


@dataclass(frozen=True)
class PairSet:
    """An image-pair dataset: sequences whose pairs (1, k), k = 2..6, carry exact homographies.

    ``expected_sequences`` is the size of the full dataset (None: not known); ``known_names`` the
    names it must hold, where they are known (Oxford), so that ``missing`` can name them.
    """

    name: str
    sequences: tuple[Sequence, ...]
    version: str = ""  # part of the cache key
    kind: str = "pairs"
    default_protocol: str = "mma"  # used by `desc-bench run` when no --protocol is given
    expected_sequences: int | None = None
    known_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.sequences)

    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sequences)

    @property
    def sequence_count(self) -> int:
        return len(self.sequences)

    @property
    def pair_count(self) -> int:
        return sum(len(seq.images) - 1 for seq in self.sequences)

    @property
    def expected_pairs(self) -> int | None:
        return None if self.expected_sequences is None else self.expected_sequences * (IMAGES - 1)

    @property
    def complete(self) -> bool:
        """False when the set holds fewer sequences than the full dataset (a partial copy, a subset)."""
        return self.expected_sequences is None or self.sequence_count >= self.expected_sequences

    @property
    def missing(self) -> tuple[str, ...]:
        """Names of the full dataset that are absent (empty where the names are not known)."""
        present = set(self.names())
        return tuple(n for n in self.known_names if n not in present)

    def describe_completeness(self) -> str:
        """One line for logs: ``"2 of 116 sequences (10 of 580 pairs)"``, plus the missing names."""
        if self.expected_sequences is None:
            return f"{self.sequence_count} sequences ({self.pair_count} pairs)"
        text = (
            f"{self.sequence_count} of {self.expected_sequences} sequences "
            f"({self.pair_count} of {self.expected_pairs} pairs)"
        )
        return text + (f"; missing {', '.join(self.missing)}" if self.missing else "")

    def sequence(self, name: str) -> Sequence:
        for seq in self.sequences:
            if seq.name == name:
                return seq
        raise UnknownNameError(f"sequence of {self.name}", name, list(self.names()))

    def pairs(self) -> list[tuple[Sequence, int]]:
        """Every pair (sequence, k), k = 2..6, in a fixed order."""
        return [(seq, k) for seq in self.sequences for k in range(2, len(seq.images) + 1)]

    def subset(self, names) -> PairSet:
        """The same set restricted to the named sequences (in the given order); not ``complete``."""
        return replace(self, sequences=tuple(self.sequence(n) for n in names))


# ---------------------------------------------------------------------------------------- files


def read_image(path: Path) -> np.ndarray:
    """Read an image file as RGB uint8 ``(H, W, 3)``; errors name the file."""
    return cv2.cvtColor(imread(path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def read_homography(path: Path) -> np.ndarray:
    """Read a 3x3 homography from a text file (or an OpenCV FileStorage ``.xml`` with any node).

    The matrix is returned as stored. It is refused as singular only when the matrix scaled to
    unit norm (a homography is defined up to scale) has a determinant below 1e-12.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing homography file {path}")
    if path.suffix == ".xml":
        storage = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
        node = storage.getFirstTopLevelNode()
        matrix = node.mat() if node is not None and not node.empty() else None
        storage.release()
        if matrix is None:
            raise DatasetError(f"homography file {path} holds no matrix")
    else:
        try:
            matrix = np.loadtxt(path, dtype=np.float64)
        except ValueError as exc:
            raise DatasetError(f"homography file {path} is not a whitespace-separated matrix: {exc}") from None
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.size != 9 or not np.isfinite(matrix).all():
        raise DatasetError(f"homography file {path} must hold 9 finite numbers (3x3), found shape {matrix.shape}")
    matrix = matrix.reshape(3, 3)
    norm = np.linalg.norm(matrix)
    if norm == 0 or abs(np.linalg.det(matrix / norm)) < 1e-12:
        raise DatasetError(f"homography in {path} is singular (it maps the image onto a line or a point)")
    return matrix


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file: from the PNG/PNM header when possible, else by decoding."""
    import re

    path = Path(path)
    with open(path, "rb") as handle:
        head = handle.read(512)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if head[:1] == b"P" and head[1:2] in b"123456":
        tokens = re.sub(rb"#[^\n]*", b" ", head[2:]).split()
        if len(tokens) >= 2 and tokens[0].isdigit() and tokens[1].isdigit():
            return int(tokens[0]), int(tokens[1])
    full = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if full is None:
        raise DatasetError(f"cannot read image {path}")
    return full.shape[1], full.shape[0]


def _has_image(folder: Path, stem: str) -> bool:
    return any((folder / (stem + suffix)).is_file() for suffix in IMAGE_SUFFIXES)


def _find_image(folder: Path, stem: str) -> Path:
    for suffix in IMAGE_SUFFIXES:
        path = folder / f"{stem}{suffix}"
        if path.is_file():
            return path
    raise DatasetError(
        f"missing image {folder / (stem + IMAGE_SUFFIXES[0])} (looked for {stem}{{{','.join(IMAGE_SUFFIXES)}}})"
    )


def _check_complete(folder: Path, image_stems, homography_names, alternative: str | None = None) -> None:
    """Raise one DatasetError naming every missing image and homography file of a sequence."""
    missing = [str(folder / (stem + IMAGE_SUFFIXES[0])) for stem in image_stems if not _has_image(folder, stem)]
    missing += [
        str(folder / name)
        for name in homography_names
        if not (folder / name).is_file() and not (alternative and (folder / (name + alternative)).is_file())
    ]
    if missing:
        raise DatasetError(
            f"sequence {folder.name} is incomplete: missing "
            + ", ".join(missing)
            + f" (images may also be {'/'.join(IMAGE_SUFFIXES[1:])}); every sequence needs images 1..6 and "
            "the homographies from image 1 to images 2..6"
        )


# ------------------------------------------------------------------------------ HPatches layout

HPATCHES_IMAGES = tuple(str(i) for i in range(1, IMAGES + 1))
HPATCHES_HOMOGRAPHIES = tuple(f"H_1_{k}" for k in TARGETS)


def is_hpatches_sequence(folder: Path) -> bool:
    """Whether ``folder`` holds any file of the HPatches sequence layout (then it must be complete)."""
    return any(_has_image(folder, s) for s in HPATCHES_IMAGES) or any(
        (folder / h).is_file() for h in HPATCHES_HOMOGRAPHIES
    )


def hpatches_sequence_names(root: Path) -> list[str]:
    """Sorted names of the sequence folders under ``root`` (hidden and unrelated folders skipped)."""
    if not Path(root).is_dir():
        return []
    return sorted(
        p.name for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".") and is_hpatches_sequence(p)
    )


def load_hpatches_sequence(folder: Path) -> Sequence:
    """One sequence in the hpatches-sequences-release layout: ``{1..6}.ppm`` and ``H_1_2..H_1_6``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"sequence folder {folder} is missing")
    _check_complete(folder, HPATCHES_IMAGES, HPATCHES_HOMOGRAPHIES)
    images = tuple(_find_image(folder, stem) for stem in HPATCHES_IMAGES)
    homographies = tuple(read_homography(folder / name) for name in HPATCHES_HOMOGRAPHIES)
    return Sequence(folder.name, images, homographies)


def open_hpatches_sequences(
    root: Path, names=None, *, name: str = "hpatches-seq", exclude=frozenset(), expected_sequences: int | None = None
) -> PairSet:
    """A PairSet of the sequences under ``root`` (every sequence folder, sorted, or ``names``)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"HPatches sequences folder {root} is missing")
    if names is None:
        names = [n for n in hpatches_sequence_names(root) if n not in exclude]
    if not names:
        raise DatasetError(f"no sequence folders under {root} (expected <seq>/1.ppm..6.ppm and H_1_2..H_1_6 in each)")
    sequences = tuple(load_hpatches_sequence(root / n) for n in names)
    return PairSet(name, sequences, version=content_version(sequences), expected_sequences=expected_sequences)


# -------------------------------------------------------------------------------- Oxford layout

OXFORD_IMAGES = tuple(f"img{i}" for i in range(1, IMAGES + 1))
OXFORD_HOMOGRAPHIES = tuple(f"H1to{k}p" for k in TARGETS)


def is_oxford_sequence(folder: Path) -> bool:
    """Whether ``folder`` holds any image of the Oxford layout (``img1.*``..``img6.*``)."""
    return any(_has_image(folder, stem) for stem in OXFORD_IMAGES)


def load_oxford_sequence(folder: Path) -> Sequence:
    """One Oxford affine sequence: ``img{1..6}.{ppm,pgm,png}`` and ``H1to{k}p`` (or ``H1to{k}p.xml``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"sequence folder {folder} is missing")
    _check_complete(folder, OXFORD_IMAGES, OXFORD_HOMOGRAPHIES, alternative=".xml")
    images = tuple(_find_image(folder, stem) for stem in OXFORD_IMAGES)
    homographies = []
    for name in OXFORD_HOMOGRAPHIES:
        path = folder / name
        if not path.is_file() and (folder / f"{name}.xml").is_file():
            path = folder / f"{name}.xml"
        homographies.append(read_homography(path))
    return Sequence(folder.name, images, tuple(homographies))


def open_oxford(root: Path, names, *, name: str = "oxford-affine", known_names=()) -> PairSet:
    """A PairSet of the named Oxford sequences under ``root``."""
    root = Path(root)
    sequences = tuple(load_oxford_sequence(root / n) for n in names)
    known = tuple(known_names) or tuple(names)
    return PairSet(
        name,
        sequences,
        version=content_version(sequences),
        default_protocol="oxford-ms",
        expected_sequences=len(known),
        known_names=known,
    )


def content_version(sequences) -> str:
    """A short content key: file names, sizes and the homographies."""
    digest = hashlib.sha256()
    for seq in sequences:
        digest.update(seq.name.encode())
        for path in seq.images:
            digest.update(f"{path.name}:{path.stat().st_size}".encode())
        for matrix in seq.homographies:
            digest.update(np.ascontiguousarray(matrix, dtype=np.float64).tobytes())
    return digest.hexdigest()[:12]
