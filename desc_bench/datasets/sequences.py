"""Image-pair datasets: HPatches sequences, Oxford affine, the embedded synthetic set, ER/ES variants.

A :class:`PairSet` holds sequences of six images; pairs are (1, k) for k = 2..6 with a homography
``H_1k`` (float64 3x3) such that ``x_k ~ H_1k @ x_1`` in pixel coordinates (pixel centres at
integers). Images load lazily with OpenCV as RGB uint8 ``(H, W, 3)``; missing images or homographies
raise :class:`~desc_bench.errors.DatasetError` naming the file, when the set is opened.

Registered sources (kind "pairs"); ``<data_dir>`` is the ``data_dir`` given to ``open``:

- ``hpatches-seq``: the 108-sequence MMA subset of D2-Net (Dusmanu et al., CVPR 2019) of
  ``<data_dir>/hpatches-sequences-release/<seq>/{1..6}.ppm, H_1_2..H_1_6`` (Balntas et al.,
  CVPR 2017); the 8 sequences larger than 1600x1200 are left out. ``hpatches-seq-full``: all 116.
- ``oxford-affine``: ``<data_dir>/oxford-affine/<seq>/img{1..6}.{ppm,pgm,png}, H1to{k}p`` for the 8
  sequences of Mikolajczyk et al. (IJCV 2005).
- ``hpatches-seq-synth``: embedded, generated from scikit-image's bundled images (no download):
  4 ``i_`` sequences (photometric changes, identity homographies) and 4 ``v_`` sequences (random
  homographies), 480x360 px, exact homographies, cached under ``<data_dir>/hpatches-seq-synth``.
- GIFT's transformed variants (Liu et al., NeurIPS 2019), named by a suffix: ``<source>-er`` (target
  rotated about its centre by U(-90, 90) degrees) and ``<source>-es`` (target scaled about its
  centre by 2^-U(1.5, 2), inverted half of the time, then shifted at random), both with the
  uncovered background filled by another sequence's first image. Registered for ``hpatches-seq``,
  ``hpatches-seq-full`` and ``hpatches-seq-synth``; :func:`transformed` makes them from any set.
  They are deterministic (fixed seed per sequence and image) and computed in memory on load.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from ..errors import DatasetError
from .base import DatasetSource

IMAGES = 6
TARGETS = tuple(range(2, IMAGES + 1))

HPATCHES_FOLDER = "hpatches-sequences-release"
HPATCHES_URLS = ("http://icvl.ee.ic.ac.uk/vbalnt/hpatches/hpatches-sequences-release.tar.gz",)
# The 8 sequences larger than 1600x1200 that D2-Net leaves out of the MMA benchmark.
MMA_EXCLUDED = frozenset(
    {
        "i_contruction",
        "i_crownnight",
        "i_dc",
        "i_pencils",
        "i_whitebuilding",
        "v_artisans",
        "v_astronautis",
        "v_talent",
    }
)

OXFORD_FOLDER = "oxford-affine"
OXFORD_SEQUENCES = ("graf", "wall", "boat", "bark", "bikes", "trees", "leuven", "ubc")
OXFORD_URL = "http://www.robots.ox.ac.uk/~vgg/research/affine/det_eval_files/{seq}.tar.gz"
IMAGE_SUFFIXES = (".ppm", ".pgm", ".png", ".jpg")


# ------------------------------------------------------------------------------------------ types


@dataclass(frozen=True)
class Warp:
    """A synthetic transformation applied to a loaded target image (ER/ES variants).

    ``matrix`` maps the source image to the output (size ``width`` x ``height``); output pixels not
    covered by the source are taken from ``background`` (an image path, resized to the output) or,
    without one, from smooth deterministic noise seeded by ``seed``.
    """

    matrix: np.ndarray
    width: int
    height: int
    background: Path | None = None
    seed: int = 0

    def apply(self, image: np.ndarray) -> np.ndarray:
        size = (self.width, self.height)
        warped = cv2.warpPerspective(image, self.matrix, size, flags=cv2.INTER_LINEAR)
        covered = cv2.warpPerspective(
            np.ones(image.shape[:2], np.uint8), self.matrix, size, flags=cv2.INTER_NEAREST
        ).astype(bool)
        if self.background is not None:
            back = cv2.resize(read_image(self.background), size, interpolation=cv2.INTER_AREA)
        else:
            rng = np.random.default_rng(self.seed)
            noise = rng.integers(0, 256, (max(self.height // 8, 1), max(self.width // 8, 1), 3), dtype=np.uint8)
            back = cv2.resize(noise, size, interpolation=cv2.INTER_CUBIC)
        warped[~covered] = back[~covered]
        return warped


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
        return (warp.width, warp.height) if warp is not None else _image_size(self.images[index - 1])

    def homography(self, index: int) -> np.ndarray:
        """``H_1k`` for k = ``index`` in 2..6 (a copy)."""
        if not 2 <= index <= len(self.homographies) + 1:
            raise DatasetError(
                f"sequence {self.name} has homographies H_1_2..H_1_{len(self.homographies) + 1}, not H_1_{index}"
            )
        return self.homographies[index - 1 - 1].copy()


@dataclass(frozen=True)
class PairSet:
    """An image-pair dataset: sequences whose pairs (1, k), k = 2..6, carry exact homographies."""

    name: str
    sequences: tuple[Sequence, ...]
    version: str = ""  # part of the cache key
    kind: str = "pairs"
    default_protocol: str = "mma"  # used by `desc-bench run` when no --protocol is given

    def __len__(self) -> int:
        return len(self.sequences)

    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.sequences)

    def sequence(self, name: str) -> Sequence:
        for seq in self.sequences:
            if seq.name == name:
                return seq
        from ..errors import UnknownNameError

        raise UnknownNameError(f"sequence of {self.name}", name, list(self.names()))

    def pairs(self) -> list[tuple[Sequence, int]]:
        """Every pair (sequence, k), k = 2..6, in a fixed order."""
        return [(seq, k) for seq in self.sequences for k in range(2, len(seq.images) + 1)]

    def subset(self, names) -> PairSet:
        """The same set restricted to the named sequences (in the given order)."""
        return replace(self, sequences=tuple(self.sequence(n) for n in names))


# ---------------------------------------------------------------------------------------- reading


def read_image(path: Path) -> np.ndarray:
    """Read an image file as RGB uint8 ``(H, W, 3)``; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing image {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"cannot read image {path} (not a readable image file)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_homography(path: Path) -> np.ndarray:
    """Read a 3x3 homography from a text file (or an OpenCV FileStorage ``.xml`` with any node)."""
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
    if abs(np.linalg.det(matrix)) < 1e-12:
        raise DatasetError(f"homography in {path} is singular")
    return matrix


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
    missing = [
        str(folder / (stem + IMAGE_SUFFIXES[0]))
        for stem in image_stems
        if not any((folder / (stem + suffix)).is_file() for suffix in IMAGE_SUFFIXES)
    ]
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


def load_hpatches_sequence(folder: Path) -> Sequence:
    """One sequence in the hpatches-sequences-release layout: ``{1..6}.ppm`` and ``H_1_2..H_1_6``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"sequence folder {folder} is missing")
    _check_complete(folder, [str(i) for i in range(1, IMAGES + 1)], [f"H_1_{k}" for k in TARGETS])
    images = tuple(_find_image(folder, str(i)) for i in range(1, IMAGES + 1))
    homographies = tuple(read_homography(folder / f"H_1_{k}") for k in TARGETS)
    return Sequence(folder.name, images, homographies)


def load_oxford_sequence(folder: Path) -> Sequence:
    """One Oxford affine sequence: ``img{1..6}.{ppm,pgm,png}`` and ``H1to{k}p`` (or ``H1to{k}p.xml``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"sequence folder {folder} is missing")
    _check_complete(
        folder, [f"img{i}" for i in range(1, IMAGES + 1)], [f"H1to{k}p" for k in TARGETS], alternative=".xml"
    )
    images = tuple(_find_image(folder, f"img{i}") for i in range(1, IMAGES + 1))
    homographies = []
    for k in TARGETS:
        path = folder / f"H1to{k}p"
        if not path.is_file() and (folder / f"H1to{k}p.xml").is_file():
            path = folder / f"H1to{k}p.xml"
        homographies.append(read_homography(path))
    return Sequence(folder.name, images, tuple(homographies))


def open_hpatches_sequences(root: Path, names=None, *, name: str = "hpatches-seq", exclude=frozenset()) -> PairSet:
    """A PairSet of the sequences under ``root`` (all sub-folders, sorted, or ``names``)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"HPatches sequences folder {root} is missing")
    if names is None:
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        names = [n for n in names if n not in exclude]
    if not names:
        raise DatasetError(f"no sequence folders under {root}")
    sequences = tuple(load_hpatches_sequence(root / n) for n in names)
    return PairSet(name, sequences, version=_version(sequences))


def open_oxford(root: Path, names=OXFORD_SEQUENCES, *, name: str = "oxford-affine") -> PairSet:
    root = Path(root)
    sequences = tuple(load_oxford_sequence(root / n) for n in names)
    return PairSet(name, sequences, version=_version(sequences), default_protocol="oxford-ms")


def _version(sequences) -> str:
    """A short content key: file names, sizes and the homographies."""
    digest = hashlib.sha256()
    for seq in sequences:
        digest.update(seq.name.encode())
        for path in seq.images:
            digest.update(f"{path.name}:{path.stat().st_size}".encode())
        for matrix in seq.homographies:
            digest.update(np.ascontiguousarray(matrix, dtype=np.float64).tobytes())
    return digest.hexdigest()[:12]


# ----------------------------------------------------------------------------- ER / ES variants


@dataclass(frozen=True)
class Variant:
    """GIFT's transformed variants: which transform, and its parameters."""

    name: str  # "er" or "es"
    angle_range: tuple[float, float] = (-90.0, 90.0)  # ER, degrees
    log2_scale_range: tuple[float, float] = (1.5, 2.0)  # ES: scale = 2 ** -U(low, high)
    invert: bool = True  # ES: use 1 / scale half of the time


VARIANTS = {"er": Variant("er"), "es": Variant("es")}


def _seed(*parts) -> int:
    return zlib.crc32(":".join(str(p) for p in parts).encode())


def rotation_warp(width: int, height: int, rng: np.random.Generator, variant: Variant) -> np.ndarray:
    """Rotate about the image centre by U(angle_range) degrees; output keeps the size."""
    theta = np.deg2rad(rng.uniform(*variant.angle_range))
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    c, s = np.cos(theta), np.sin(theta)
    to_centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], np.float64)
    rotate = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], np.float64)
    return np.linalg.inv(to_centre) @ rotate @ to_centre


def scale_warp(width: int, height: int, rng: np.random.Generator, variant: Variant) -> np.ndarray:
    """Scale about the centre by 2^-U(range) (inverted half the time), then shift at random so that
    a shrunk image stays inside the frame and an enlarged one still covers it."""
    ratio = 2.0 ** (-rng.uniform(*variant.log2_scale_range))
    if variant.invert and rng.random() < 0.5:
        ratio = 1.0 / ratio
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    span_x, span_y = abs(ratio - 1.0) * width / 2.0, abs(ratio - 1.0) * height / 2.0
    dx, dy = rng.uniform(-span_x, span_x), rng.uniform(-span_y, span_y)
    return np.array([[ratio, 0, (1 - ratio) * cx + dx], [0, ratio, (1 - ratio) * cy + dy], [0, 0, 1]], np.float64)


def transformed(pairset: PairSet, variant: str, *, seed: int = 0) -> PairSet:
    """GIFT's ER or ES variant of any pair set: each target image k = 2..6 is transformed, ``H_1k``
    becomes ``T @ H_1k``, and the uncovered background is filled with the first image of another
    sequence (chosen by the seeded generator; smooth noise for a one-sequence set)."""
    if variant not in VARIANTS:
        from ..errors import UnknownNameError

        raise UnknownNameError("pair-set variant", variant, list(VARIANTS))
    spec = VARIANTS[variant]
    make = rotation_warp if variant == "er" else scale_warp
    sequences = []
    for index, seq in enumerate(pairset.sequences):
        warps: list[Warp | None] = [None]
        homographies = []
        for k in range(2, len(seq.images) + 1):
            rng = np.random.default_rng(_seed(seed, variant, seq.name, k))
            width, height = _image_size(seq.images[k - 1])
            matrix = make(width, height, rng, spec)
            others = [s for j, s in enumerate(pairset.sequences) if j != index]
            background = others[int(rng.integers(len(others)))].images[0] if others else None
            warps.append(Warp(matrix, width, height, background, seed=_seed(seed, variant, seq.name, k, "noise")))
            homographies.append(matrix @ seq.homographies[k - 2])
        sequences.append(replace(seq, homographies=tuple(homographies), warps=tuple(warps)))
    return PairSet(f"{pairset.name}-{variant}", tuple(sequences), version=f"{pairset.version}-{variant}{seed}")


def _image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image file: from the PNG/PNM header when possible, else by decoding."""
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


# ------------------------------------------------------------------------------ synthetic set

SYNTH_FOLDER = "hpatches-seq-synth"
SYNTH_VERSION = "1"
SYNTH_SIZE = (480, 360)  # width, height of every image
# (sequence name, scikit-image loader name); loaders verified to work offline (bundled files).
SYNTH_SOURCES = (
    ("i_chelsea", "chelsea"),
    ("i_coffee", "coffee"),
    ("i_immuno", "immunohistochemistry"),
    ("i_brick", "brick"),
    ("v_astronaut", "astronaut"),
    ("v_rocket", "rocket"),
    ("v_camera", "camera"),
    ("v_gravel", "gravel"),
)


def _source_image(loader: str) -> np.ndarray:
    from skimage import data

    image = np.asarray(getattr(data, loader)())
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = image[:, :, :3].astype(np.uint8)
    width, height = SYNTH_SIZE
    # scale so the source is at least 1.35x the view in both directions (room for viewpoint moves)
    factor = max(1.35 * width / image.shape[1], 1.35 * height / image.shape[0])
    size = (int(round(image.shape[1] * factor)), int(round(image.shape[0] * factor)))
    return cv2.resize(image, size, interpolation=cv2.INTER_CUBIC if factor > 1 else cv2.INTER_AREA)


def _view_quad(source_shape, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Corners (TL, TR, BR, BL) in source pixels of a view; strength 0 = centred axis-aligned."""
    src_h, src_w = source_shape[:2]
    width, height = SYNTH_SIZE
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


def _view_matrix(quad: np.ndarray) -> np.ndarray:
    """Homography from source pixels to view pixels that sends ``quad`` to the view's corners."""
    width, height = SYNTH_SIZE
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)
    return cv2.getPerspectiveTransform(quad.astype(np.float32), corners.astype(np.float32)).astype(np.float64)


def _photometric(image: np.ndarray, rng: np.random.Generator, step: int) -> np.ndarray:
    """Illumination change of increasing strength: gamma, per-channel gain, offset, slight noise."""
    x = image.astype(np.float64) / 255.0
    gamma = 2.0 ** (rng.uniform(-1, 1) * 0.35 * step)
    gain = 1.0 + rng.uniform(-0.12, 0.12, size=3) * step
    offset = rng.uniform(-0.04, 0.04) * step
    x = np.clip(x, 0, 1) ** gamma * gain + offset
    x = x + rng.normal(0, 0.004 * step, size=x.shape)
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def _write_sequence(folder: Path, name: str, loader: str) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(_seed("hpatches-seq-synth", SYNTH_VERSION, name))
    source = _source_image(loader)
    width, height = SYNTH_SIZE
    g1 = _view_matrix(_view_quad(source.shape, rng, 0.25))
    first = cv2.warpPerspective(source, g1, (width, height), flags=cv2.INTER_LINEAR)
    cv2.imwrite(str(folder / "1.png"), cv2.cvtColor(first, cv2.COLOR_RGB2BGR))
    for k in TARGETS:
        if name.startswith("i_"):
            image, h1k = _photometric(first, rng, k - 1), np.eye(3)
        else:
            gk = _view_matrix(_view_quad(source.shape, rng, 0.2 + 0.16 * (k - 1)))
            image = cv2.warpPerspective(source, gk, (width, height), flags=cv2.INTER_LINEAR)
            h1k = gk @ np.linalg.inv(g1)
            h1k = h1k / h1k[2, 2]
        cv2.imwrite(str(folder / f"{k}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        np.savetxt(folder / f"H_1_{k}", h1k, fmt="%.17g")


def generate_synthetic(data_dir: Path) -> Path:
    """Generate the synthetic sequences once under ``<data_dir>/hpatches-seq-synth`` (atomically:
    written to a temporary folder, then renamed) and return that folder."""
    target = Path(data_dir) / SYNTH_FOLDER
    stamp = target / "VERSION"
    if stamp.is_file() and stamp.read_text().strip() == SYNTH_VERSION:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{SYNTH_FOLDER}.tmp-", dir=target.parent))
    try:
        for name, loader in SYNTH_SOURCES:
            _write_sequence(staging / name, name, loader)
        (staging / "VERSION").write_text(SYNTH_VERSION + "\n")
        if target.exists():  # an older version: replace it
            old = target.with_name(f".{SYNTH_FOLDER}.old-{os.getpid()}")
            os.replace(target, old)
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(staging, target)
        except OSError:
            if not (stamp.is_file() and stamp.read_text().strip() == SYNTH_VERSION):
                raise  # not a concurrent generation that won the race
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


# ---------------------------------------------------------------------------------- sources


def _download_hpatches(data_dir: Path, progress: bool) -> Path:
    from ..io.download import extract_folder, fetch_any

    data_dir = Path(data_dir)
    target = data_dir / HPATCHES_FOLDER
    if target.is_dir():
        return target
    archive = fetch_any(HPATCHES_URLS, data_dir / "downloads" / "hpatches-sequences-release.tar.gz", progress=progress)
    return extract_folder(archive, target, progress=progress)


class HPatchesSequences(DatasetSource):
    name = "hpatches-seq"
    kind = "pairs"
    default_protocol = "mma"
    summary = "HPatches sequences, the 108-sequence MMA subset of D2-Net (540 pairs)"
    exclude = MMA_EXCLUDED

    def open(self, data_dir: Path) -> PairSet:
        return open_hpatches_sequences(Path(data_dir) / HPATCHES_FOLDER, name=self.name, exclude=self.exclude)

    def availability(self, data_dir: Path) -> str | None:
        if (Path(data_dir) / HPATCHES_FOLDER).is_dir():
            return None
        return f"needs {Path(data_dir) / HPATCHES_FOLDER}: run `desc-bench data download {self.name}`"

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        return _download_hpatches(data_dir, progress)


class HPatchesSequencesFull(HPatchesSequences):
    name = "hpatches-seq-full"
    summary = "HPatches sequences, all 116 (580 pairs)"
    exclude = frozenset()


class OxfordAffine(DatasetSource):
    name = "oxford-affine"
    kind = "pairs"
    default_protocol = "oxford-ms"
    summary = "Oxford affine (Mikolajczyk et al.): graf wall boat bark bikes trees leuven ubc"

    def open(self, data_dir: Path) -> PairSet:
        return open_oxford(Path(data_dir) / OXFORD_FOLDER, name=self.name)

    def availability(self, data_dir: Path) -> str | None:
        root = Path(data_dir) / OXFORD_FOLDER
        missing = [s for s in OXFORD_SEQUENCES if not (root / s).is_dir()]
        if not missing:
            return None
        return f"needs {root}/{{{','.join(missing)}}}: run `desc-bench data download {self.name}`"

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        from ..io.download import extract_folder, fetch

        root = Path(data_dir) / OXFORD_FOLDER
        for seq in OXFORD_SEQUENCES:
            target = root / seq
            if target.is_dir():
                continue
            archive = fetch(
                OXFORD_URL.format(seq=seq), Path(data_dir) / "downloads" / f"oxford-{seq}.tar.gz", progress=progress
            )
            extract_folder(archive, target, progress=progress)
        return root


class SyntheticSequences(DatasetSource):
    name = "hpatches-seq-synth"
    kind = "pairs"
    default_protocol = "mma"
    summary = "embedded synthetic HPatches-style sequences (4 i_ + 4 v_, 480x360, exact homographies)"
    embedded = True

    def open(self, data_dir: Path) -> PairSet:
        root = generate_synthetic(Path(data_dir))
        names = [name for name, _ in SYNTH_SOURCES]
        pairs = open_hpatches_sequences(root, names, name=self.name)
        return replace(pairs, version=f"synth{SYNTH_VERSION}-{pairs.version}")

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        return generate_synthetic(Path(data_dir))


def _variant_source(base: type[DatasetSource], variant: str) -> type[DatasetSource]:
    """A registered source ``<base>-<variant>`` that opens the base and transforms it."""

    def open_(self, data_dir: Path) -> PairSet:
        return transformed(base().open(data_dir), variant)

    words = {"er": "rotated (ER, U(-90, 90) deg)", "es": "scaled (ES, 2^-U(1.5, 2), inverted half the time)"}
    return type(
        f"{base.__name__}{variant.upper()}",
        (base,),
        {
            "name": f"{base.name}-{variant}",
            "summary": f"{base.name} with GIFT's {words[variant]} target images",
            "open": open_,
            "__module__": __name__,
        },
    )


for _base in (HPatchesSequences, HPatchesSequencesFull, SyntheticSequences):
    for _variant in VARIANTS:
        globals()[f"{_base.__name__}{_variant.upper()}"] = _variant_source(_base, _variant)
del _base, _variant
