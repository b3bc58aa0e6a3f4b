"""The embedded default dataset ``hpatches-synth``: HPatches-style patches made locally, no download.

Follows the patch-extraction protocol of HPatches (Balntas, Lenc, Vedaldi, Mikolajczyk, "HPatches:
A benchmark and evaluation of handcrafted and learned local descriptors", CVPR 2017, and the
hpatches-benchmark extraction notes), on images that scikit-image bundles (``skimage.data``):

- Reference frames: OpenCV SIFT (DoG) keypoints with scale and Lowe orientation on the reference
  image; no affine adaptation (square regions). Detections whose detection circles overlap by more
  than 50 % (intersection over union) are clustered and one of them, at random, is kept.
- Each sequence has a reference image and 5 targets: ``v_`` sequences warp the reference by a random
  viewpoint-like homography (with a mild photometric change); ``i_`` sequences keep the geometry
  (identity homography) and change the photometry (gamma, gain, offset, illumination gradient and
  spot, sensor noise).
- Target frames = reference frames with an affine jitter (rotation, anisotropic scale, translation)
  reprojected by the ground-truth homography. Three jitter amounts: Easy, Hard, Tough, with median
  ellipse overlaps of the measurement region about 0.85, 0.72 and 0.60 (``JITTER``).
- Patches are 65x65, sampled through each frame over ``MAGNIFICATION`` x the keypoint size (the
  convention of :func:`desc_bench.adapters.prepare.extract_patches`), from a Gaussian pyramid level
  chosen by the local scale (no aliasing). A frame is kept only when its region lies inside the
  reference and every target image for every jitter, so all 16 files of a sequence hold the same
  frames; ``patches`` of the valid frames are drawn at random.

Output, the hpatches-release layout that :class:`~desc_bench.datasets.base.PatchSet` reads:
``<root>/<seq>/{ref,e1..e5,h1..h5,t1..t5}.png`` (65 px wide, N*65 px tall, gray), ``<root>/params.json``
(generation parameters, sources, homographies, measured overlaps; written last, it marks a complete
dataset), ``<root>/tasks/splits/splits.json`` (splits a, b, c, illum, view, full, as the official
file) and the task files made by :func:`desc_bench.datasets.tasks.generate_task_files`.

Everything is deterministic (seeded per sequence); generation is atomic (a temporary folder renamed
into place), so an interrupted run never leaves a half dataset. The default set (16 sequences, 8 i_
and 8 v_, 300 patches each; 30k verification pairs, 500 queries and up to 1,500 distractors per
split) takes about 14 s of CPU and 157 MB. SIFT detections may differ between OpenCV builds, so the
dataset version (:func:`dataset_version`, a hash of ``params.json``, which records the OpenCV
version) identifies the data a cache was made from.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
import uuid
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..errors import DatasetError
from ..imaging import MAGNIFICATION
from .base import NOISES, PATCH, PATCH_TYPES, DatasetSource, PatchSet, Split, read_patch_file

NAME = "hpatches-synth"
GENERATOR_VERSION = "1"  # bump whenever the output for the same parameters changes
TARGETS = 5
PYRAMID_LEVELS = 5
SPLITS_STREAM = 1  # random stream of make_splits (sequence streams hash the sequence name)


class Change(str, enum.Enum):
    """What differs between the reference and the targets of a sequence."""

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


# In the order sequences are taken: a set of n sequences uses the first n/2 of each list.
ILLUMINATION_SOURCES = (
    Source("i_coffee", "coffee"),
    Source("i_coins", "coins"),
    Source("i_chelsea", "chelsea"),
    Source("i_page", "page"),
    Source("i_text", "text"),
    Source("i_logo", "logo"),
    Source("i_hubble_left", "hubble_deep_field", (0, 872, 0, 500)),
    Source("i_rocket", "rocket"),
)
VIEWPOINT_SOURCES = (
    Source("v_astronaut", "astronaut"),
    Source("v_camera", "camera"),
    Source("v_brick", "brick"),
    Source("v_ihc", "immunohistochemistry"),
    Source("v_grass", "grass"),
    Source("v_gravel", "gravel"),
    Source("v_hubble_right", "hubble_deep_field", (0, 872, 500, 1000)),
    Source("v_motorcycle", "stereo_motorcycle"),
)
MAX_SEQUENCES = 2 * min(len(ILLUMINATION_SOURCES), len(VIEWPOINT_SOURCES))


@dataclass(frozen=True)
class Jitter:
    """Amplitudes of the affine jitter of one noise level; each parameter is uniform in +-amplitude.

    The jitter acts in patch coordinates (the patch side is 1): rotation about the centre, an
    isotropic log-scale, a log-anisotropy along a random axis, and a translation uniform in a disc
    of radius ``translation``.
    """

    rotation_deg: float
    log_scale: float
    log_anisotropy: float
    translation: float


# Calibrated on the measurement region (a disc of diameter 1 in patch coordinates): median
# intersection-over-union with the jittered ellipse about 0.85 (easy), 0.72 (hard), 0.60 (tough).
JITTER = {
    "e": Jitter(rotation_deg=5.5, log_scale=0.11, log_anisotropy=0.165, translation=0.066),
    "h": Jitter(rotation_deg=11.5, log_scale=0.23, log_anisotropy=0.345, translation=0.138),
    "t": Jitter(rotation_deg=16.5, log_scale=0.33, log_anisotropy=0.495, translation=0.198),
}


@dataclass(frozen=True)
class SynthParams:
    """Everything the output depends on (with :data:`GENERATOR_VERSION`)."""

    sequences: int = 16
    patches: int = 300
    seed: int = 0
    contrast_threshold: float = 0.01  # SIFT's (OpenCV default 0.04): denser, like HPatches' union of detectors
    min_size: float = 1.8  # smallest SIFT keypoint size (diameter, px) kept as a frame
    nms_overlap: float = 0.5  # detections overlapping more than this are clustered
    n_pairs: int = 30_000  # verification pairs of each kind per split
    n_queries: int = 500  # retrieval queries per split
    n_distractors: int = 1_500  # retrieval distractors per split (fewer when a split runs out)

    def check(self) -> None:
        if self.sequences < 2 or self.sequences % 2 or self.sequences > MAX_SEQUENCES:
            raise DatasetError(
                f"{NAME}: sequences must be an even number from 2 to {MAX_SEQUENCES} (half i_, half v_); "
                f"got {self.sequences}"
            )
        if self.patches < 1:
            raise DatasetError(f"{NAME}: patches per sequence must be at least 1; got {self.patches}")

    def sources(self) -> tuple[Source, ...]:
        half = self.sequences // 2
        return ILLUMINATION_SOURCES[:half] + VIEWPOINT_SOURCES[:half]


DEFAULT_PARAMS = SynthParams()
TINY_PARAMS = SynthParams(sequences=4, patches=40, n_pairs=2_000, n_queries=40, n_distractors=60)


# ------------------------------------------------------------------------------------- images


def load_source(source: Source) -> np.ndarray:
    """The source picture as a gray ``(H, W)`` uint8 array (bundled with scikit-image, no download)."""
    import skimage.data

    loader = getattr(skimage.data, source.image, None)
    if loader is None:
        raise DatasetError(f"{NAME}: scikit-image has no bundled image {source.image!r} (skimage.data)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = loader()
    except Exception as exc:  # e.g. an image that needs pooch and a download
        raise DatasetError(f"{NAME}: cannot load skimage.data.{source.image}() offline: {exc}") from None
    if isinstance(image, tuple):  # stereo_motorcycle -> (left, right, disparity)
        image = image[0]
    image = np.asarray(image)
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    if image.dtype != np.uint8:
        raise DatasetError(f"{NAME}: skimage.data.{source.image}() is {image.dtype}, expected uint8")
    if source.crop is not None:
        y0, y1, x0, x1 = source.crop
        image = image[y0:y1, x0:x1]
    return np.ascontiguousarray(image)


def viewpoint_homography(rng: np.random.Generator, shape: tuple[int, int], k: int) -> np.ndarray:
    """A random homography for target ``k`` (1..5) of a ``v_`` sequence; the change grows with ``k``.

    A centred rectangle (70 % of the image) is rotated, scaled (mostly zoom-out, as a camera moving
    away and sideways) and its corners moved independently (perspective), in pixels x_t ~ H x_ref.
    """
    height, width = shape
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    half = 0.35 * np.array([width, height])
    src = centre + half * np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    angle = math.radians(rng.uniform(-1, 1) * 3.0 * k)
    scale = math.exp(rng.uniform(-1.0, 0.4) * 0.05 * k)
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    dst = centre + scale * (src - centre) @ rot.T
    dst = dst + rng.uniform(-1, 1, size=(4, 2)) * (0.012 + 0.012 * k) * min(height, width)
    return cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32)).astype(np.float64)


def photometric_change(rng: np.random.Generator, image: np.ndarray, strength: float) -> np.ndarray:
    """Gamma, gain, offset, a linear illumination gradient, a light spot and sensor noise.

    ``image`` float32 0..255 ``(H, W)``; returns float32 0..255. ``strength`` 1 for ``i_`` targets.
    """
    height, width = image.shape
    gamma = math.exp(rng.uniform(-1, 1) * 0.5 * strength)
    gain = math.exp(rng.uniform(-1, 1) * 0.35 * strength)
    offset = rng.uniform(-1, 1) * 0.08 * strength
    direction = rng.uniform(0, 2 * math.pi)
    slope = rng.uniform(-1, 1) * 0.6 * strength
    spot_xy = rng.uniform(0, 1, size=2) * (width, height)
    spot_sigma = rng.uniform(0.15, 0.4) * max(height, width)
    spot_gain = rng.uniform(0, 0.6) * strength
    noise_sigma = rng.uniform(0.5, 3.0) * strength
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    diag = math.hypot(width, height)
    along = ((xs - width / 2) * math.cos(direction) + (ys - height / 2) * math.sin(direction)) / diag
    spot = np.exp(-((xs - spot_xy[0]) ** 2 + (ys - spot_xy[1]) ** 2) / (2 * spot_sigma**2))
    field = np.clip(1.0 + slope * along + spot_gain * spot, 0.2, None)
    base = np.power(np.clip(image / 255.0, 0, 1), gamma)
    out = (gain * field * base + offset) * 255.0
    out = out + rng.standard_normal(out.shape) * noise_sigma
    return np.clip(out, 0, 255).astype(np.float32)


# ------------------------------------------------------------------------------------- frames


def detect_frames(
    gray: np.ndarray, rng: np.random.Generator, min_size: float, nms_overlap: float, contrast_threshold: float = 0.04
) -> np.ndarray:
    """SIFT frames ``(N, 4)`` float64: x, y, size (OpenCV diameter), angle (degrees).

    Frames smaller than ``min_size`` are dropped; frames whose detection circles overlap (IoU) by
    more than ``nms_overlap`` are clustered, keeping one at random. Rows in a canonical order.
    """
    keypoints = cv2.SIFT_create(contrastThreshold=contrast_threshold).detect(gray, None)
    if not keypoints:
        return np.zeros((0, 4))
    frames = np.array([(k.pt[0], k.pt[1], k.size, k.angle) for k in keypoints], dtype=np.float64)
    frames = frames[frames[:, 2] >= min_size]
    if len(frames) == 0:
        return frames
    frames = frames[np.lexsort(frames.T[::-1])]  # canonical order: by x, then y, size, angle
    # Only circles closer than the larger radius can overlap by more than 50 %: candidate pairs from
    # a k-d tree, exact IoU for those, then greedy clustering in a random order.
    from scipy.spatial import cKDTree

    radii = frames[:, 2] / 2
    neighbours = cKDTree(frames[:, :2]).query_ball_point(frames[:, :2], r=radii)
    first = np.repeat(np.arange(len(frames)), [len(n) for n in neighbours])
    second = np.concatenate([np.asarray(n, dtype=np.int64) for n in neighbours])
    pairs = first != second
    first, second = first[pairs], second[pairs]
    iou = circle_iou_pairs(frames[first, :2], radii[first], frames[second, :2], radii[second])
    conflict = iou > nms_overlap
    first, second = first[conflict], second[conflict]
    conflicts = [set() for _ in range(len(frames))]
    for a, b in zip(first.tolist(), second.tolist()):
        conflicts[a].add(b)
        conflicts[b].add(a)
    kept = np.zeros(len(frames), dtype=bool)
    for index in rng.permutation(len(frames)).tolist():
        if not any(kept[j] for j in conflicts[index]):
            kept[index] = True
    return frames[kept]


def circle_iou_pairs(c1: np.ndarray, r1: np.ndarray, c2: np.ndarray, r2: np.ndarray) -> np.ndarray:
    """Intersection over union of circles ``(c1[i], r1[i])`` and ``(c2[i], r2[i])``; centres ``(M, 2)``.

    Arguments broadcast (one circle against many: ``c1`` ``(1, 2)``, ``r1`` ``(1,)``).
    """
    d = np.hypot(*(c2 - c1).T)
    d, r1, r2 = np.broadcast_arrays(d, np.asarray(r1, dtype=np.float64), np.asarray(r2, dtype=np.float64))
    inter = np.where(d <= np.abs(r1 - r2), np.pi * np.minimum(r1, r2) ** 2, 0.0)
    lens = (d < r1 + r2) & (d > np.abs(r1 - r2))
    if lens.any():
        dl, a, b = d[lens], r1[lens], r2[lens]
        part1 = a**2 * np.arccos(np.clip((dl**2 + a**2 - b**2) / (2 * dl * a), -1, 1))
        part2 = b**2 * np.arccos(np.clip((dl**2 + b**2 - a**2) / (2 * dl * b), -1, 1))
        tri = 0.5 * np.sqrt(np.clip((-dl + a + b) * (dl + a - b) * (dl - a + b) * (dl + a + b), 0, None))
        inter[lens] = part1 + part2 - tri
    return inter / (np.pi * r1**2 + np.pi * r2**2 - inter)


# Patch pixel (column j, row i) -> centred patch coordinates u = (j - 32) / 65 (patch side = 1),
# the sampling grid of prepare.extract_patches.
_HALF = (PATCH - 1) / 2.0
PATCH_TO_UNIT = np.array([[1 / PATCH, 0, -_HALF / PATCH], [0, 1 / PATCH, -_HALF / PATCH], [0, 0, 1.0]])


def frame_matrices(frames: np.ndarray) -> np.ndarray:
    """``(N, 3, 3)`` maps from centred patch coordinates (side 1) to image pixels."""
    span = frames[:, 2] * MAGNIFICATION
    angle = np.deg2rad(frames[:, 3])
    out = np.zeros((len(frames), 3, 3))
    out[:, 0, 0] = span * np.cos(angle)
    out[:, 0, 1] = -span * np.sin(angle)
    out[:, 1, 0] = span * np.sin(angle)
    out[:, 1, 1] = span * np.cos(angle)
    out[:, 0, 2] = frames[:, 0]
    out[:, 1, 2] = frames[:, 1]
    out[:, 2, 2] = 1.0
    return out


def sample_jitter(rng: np.random.Generator, count: int, jitter: Jitter) -> np.ndarray:
    """``(count, 3, 3)`` random affine jitters in centred patch coordinates."""
    rotation = np.deg2rad(rng.uniform(-1, 1, count) * jitter.rotation_deg)
    scale = np.exp(rng.uniform(-1, 1, count) * jitter.log_scale)
    aniso = np.exp(rng.uniform(-1, 1, count) * jitter.log_anisotropy)
    axis = rng.uniform(0, np.pi, count)
    radius = jitter.translation * np.sqrt(rng.uniform(0, 1, count))
    phase = rng.uniform(0, 2 * np.pi, count)

    def rot(theta):
        c, s = np.cos(theta), np.sin(theta)
        return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)

    stretch = np.zeros((count, 2, 2))
    stretch[:, 0, 0] = scale * np.sqrt(aniso)
    stretch[:, 1, 1] = scale / np.sqrt(aniso)
    linear = rot(rotation) @ rot(axis) @ stretch @ rot(-axis)
    out = np.zeros((count, 3, 3))
    out[:, :2, :2] = linear
    out[:, 0, 2] = radius * np.cos(phase)
    out[:, 1, 2] = radius * np.sin(phase)
    out[:, 2, 2] = 1.0
    return out


def ellipse_overlap(jitters: np.ndarray, grid: int = 48) -> np.ndarray:
    """IoU of the measurement disc (diameter 1) with its image under each jitter ``(N, 3, 3)``; ``(N,)``."""
    steps = (np.arange(grid) + 0.5) / grid * 2.0 - 1.0  # [-1, 1]: holds the disc and the jittered ellipse
    xs, ys = np.meshgrid(steps, steps)
    points = np.stack([xs.ravel(), ys.ravel()])  # (2, G)
    in_disc = (points**2).sum(0) <= 0.25
    inverse = np.linalg.inv(jitters)
    mapped = inverse[:, :2, :2] @ points + inverse[:, :2, 2:]  # (N, 2, G)
    in_ellipse = (mapped**2).sum(1) <= 0.25
    return (in_disc & in_ellipse).sum(1) / (in_disc | in_ellipse).sum(1)


def apply_homography(matrices: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Map ``points`` ``(P, 2)`` by each of ``matrices`` ``(N, 3, 3)``: ``(N, P, 2)``; w <= 0 gives inf."""
    homogeneous = np.concatenate([points, np.ones((len(points), 1))], 1).T  # (3, P)
    mapped = matrices @ homogeneous  # (N, 3, P)
    w = mapped[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = np.where(w[:, None] > 1e-9, mapped[:, :2] / w[:, None], np.inf)
    return xy.transpose(0, 2, 1)


_CORNERS = np.array([[0, 0], [PATCH - 1, 0], [PATCH - 1, PATCH - 1], [0, PATCH - 1]], dtype=np.float64)


def inside(matrices: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Whether each patch map ``(N, 3, 3)`` (patch pixels -> image) stays inside the image: ``(N,)``."""
    height, width = shape
    corners = apply_homography(matrices, _CORNERS)
    ok = (
        (corners[..., 0] >= 0)
        & (corners[..., 0] <= width - 1)
        & (corners[..., 1] >= 0)
        & (corners[..., 1] <= height - 1)
    )
    return ok.all(1)


# ------------------------------------------------------------------------------------- sampling


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
    centre = np.array([[_HALF, _HALF], [_HALF + 1, _HALF], [_HALF, _HALF + 1]])
    mapped = apply_homography(matrices, centre)
    jac = np.stack([mapped[:, 1] - mapped[:, 0], mapped[:, 2] - mapped[:, 0]], -1)
    pixels_per_patch_pixel = np.sqrt(np.abs(np.linalg.det(jac)))
    chosen = np.clip(np.round(np.log2(np.maximum(pixels_per_patch_pixel, 1.0))), 0, len(levels) - 1).astype(int)
    out = np.empty((len(matrices), PATCH, PATCH), dtype=np.uint8)
    for index, (matrix, level) in enumerate(zip(matrices, chosen)):
        to_level = np.diag([0.5**level, 0.5**level, 1.0]) @ matrix
        patch = cv2.warpPerspective(
            levels[level],
            to_level,
            (PATCH, PATCH),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        out[index] = np.clip(np.rint(patch), 0, 255).astype(np.uint8)
    return out


# ------------------------------------------------------------------------------------- sequences


@dataclass(frozen=True, eq=False)
class GeneratedSequence:
    """One generated sequence."""

    source: Source
    frames: np.ndarray  # (N, 4) x, y, size, angle of the reference frames
    homographies: np.ndarray  # (5, 3, 3) reference -> target k pixels
    patches: dict  # patch type ("ref", "e1", ...) -> (N, 65, 65) uint8
    overlaps: dict  # noise ("e", "h", "t") -> (N * 5,) measurement-region IoU of the jitters used
    candidates: int  # frames left after detection and clustering
    valid: int  # of those, frames inside every image for every jitter


def sequence_seed(params: SynthParams, source: Source) -> np.random.SeedSequence:
    """Independent per-sequence stream: depends on the seed and the sequence name only."""
    digest = hashlib.sha256(source.sequence.encode()).digest()
    return np.random.SeedSequence([params.seed, int.from_bytes(digest[:8], "little")])


def generate_sequence(source: Source, params: SynthParams, with_images: bool = False):
    """Generate one sequence; with ``with_images`` also return ``(ref_image, target_images)`` float32."""
    rng = np.random.default_rng(sequence_seed(params, source))
    gray = load_source(source)
    shape = gray.shape
    reference = gray.astype(np.float32)
    frames = detect_frames(gray, rng, params.min_size, params.nms_overlap, params.contrast_threshold)

    homographies, targets = [], []
    for k in range(1, TARGETS + 1):
        if source.change is Change.VIEWPOINT:
            h = viewpoint_homography(rng, shape, k)
            warped = cv2.warpPerspective(
                reference, h, (shape[1], shape[0]), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
            )
            targets.append(photometric_change(rng, warped, strength=0.25))
        else:
            h = np.eye(3)
            targets.append(photometric_change(rng, reference, strength=1.0))
        homographies.append(h)

    base = frame_matrices(frames) @ PATCH_TO_UNIT  # patch pixels -> reference pixels
    jitters = {(noise, k): sample_jitter(rng, len(frames), JITTER[noise]) for k in range(TARGETS) for noise in NOISES}
    valid = inside(base, shape)
    maps = {}
    for (noise, k), jitter in jitters.items():
        in_reference = frame_matrices(frames) @ jitter @ PATCH_TO_UNIT
        in_target = homographies[k] @ in_reference
        valid &= inside(in_reference, shape) & inside(in_target, shape)
        maps[(noise, k)] = in_target
    candidates, valid_count = len(frames), int(valid.sum())
    if valid_count < params.patches:
        raise DatasetError(
            f"{NAME}: sequence {source.sequence} has only {valid_count} valid frames (of {candidates} "
            f"detections), fewer than the {params.patches} patches asked for; ask for fewer patches"
        )
    chosen = np.sort(rng.choice(np.flatnonzero(valid), size=params.patches, replace=False))

    ref_levels = pyramid(reference)
    patches = {"ref": sample_patches(ref_levels, base[chosen])}
    overlaps = {noise: [] for noise in NOISES}
    for k in range(TARGETS):
        levels = pyramid(targets[k])
        for noise in NOISES:
            patches[f"{noise}{k + 1}"] = sample_patches(levels, maps[(noise, k)][chosen])
            overlaps[noise].append(ellipse_overlap(jitters[(noise, k)][chosen]))
    sequence = GeneratedSequence(
        source=source,
        frames=frames[chosen],
        homographies=np.stack(homographies),
        patches={t: patches[t] for t in PATCH_TYPES},
        overlaps={n: np.concatenate(v) for n, v in overlaps.items()},
        candidates=candidates,
        valid=valid_count,
    )
    if with_images:
        return sequence, (reference, targets)
    return sequence


def write_sequence(folder: Path, sequence: GeneratedSequence) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for patch_type, stack in sequence.patches.items():
        path = folder / f"{patch_type}.png"
        if not cv2.imwrite(str(path), stack.reshape(-1, PATCH)):
            raise DatasetError(f"{NAME}: cannot write {path}")


# ------------------------------------------------------------------------------------- splits


def make_splits(sequences: tuple[str, ...], seed: int) -> dict:
    """Splits in the format of the official ``splits.json``.

    ``illum``/``view``/``full`` test on the ``i_``/``v_``/all sequences; ``a``, ``b``, ``c`` each
    test on about a third of the ``i_`` and of the ``v_`` sequences (consecutive windows of a seeded
    permutation, so the three are disjoint where the counts allow) and train on the rest. As in the
    official file, the order of each ``test`` list is shuffled (it matters for task generation).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, SPLITS_STREAM]))
    illum = [s for s in sequences if s.startswith("i_")]
    view = [s for s in sequences if s.startswith("v_")]
    order = {name: list(rng.permutation(group)) for name, group in (("i", illum), ("v", view))}
    out: dict = {}
    for index, key in enumerate("abc"):
        test = []
        for group in ("i", "v"):
            names = order[group]
            size = max(1, math.ceil(len(names) / 3)) if len(names) > 1 else 1
            test += [names[(index * size + j) % len(names)] for j in range(size)]
        test = [str(s) for s in rng.permutation(test)]
        train = [str(s) for s in rng.permutation([s for s in sequences if s not in test])]
        out[key] = {"name": key, "test": test, "train": train}
    out["illum"] = {"name": "illum", "test": [str(s) for s in rng.permutation(illum)]}
    out["view"] = {"name": "view", "test": [str(s) for s in rng.permutation(view)]}
    out["full"] = {"name": "full", "test": [str(s) for s in rng.permutation(list(sequences))]}
    return out


# ------------------------------------------------------------------------------------- dataset


def dataset_version(root: Path) -> str:
    """Cache key of a generated dataset: generator version and a hash of its ``params.json``."""
    params = Path(root) / "params.json"
    if not params.is_file():
        raise DatasetError(f"{NAME}: {params} is missing; the dataset at {root} is not complete")
    return f"{NAME}-g{GENERATOR_VERSION}-{hashlib.sha256(params.read_bytes()).hexdigest()[:12]}"


def describe(params: SynthParams) -> dict:
    """The parameter block of ``params.json`` (what a complete dataset must match)."""
    return {
        "generator": NAME,
        "generator_version": GENERATOR_VERSION,
        "params": asdict(params),
        "patch_size": PATCH,
        "magnification": MAGNIFICATION,
        "detector": f"OpenCV {cv2.__version__} SIFT (DoG), contrastThreshold={params.contrast_threshold}",
        "jitter": {noise: asdict(JITTER[noise]) for noise in NOISES},
    }


def is_complete(root: Path, params: SynthParams) -> bool:
    """Whether ``root`` holds a complete dataset made with these parameters and this generator."""
    root = Path(root)
    try:
        stored = json.loads((root / "params.json").read_text())
    except (OSError, ValueError):
        return False
    expected = describe(params)
    if any(stored.get(key) != value for key, value in expected.items() if key != "detector"):
        return False
    names = [s.sequence for s in params.sources()]
    if not (root / "tasks" / "splits" / "splits.json").is_file():
        return False
    return all((root / name / f"{t}.png").is_file() for name in names for t in PATCH_TYPES)


def _write_tasks(root: Path, splits: dict, counts: dict[str, int], params: SynthParams, progress: bool) -> None:
    """Task files by the official algorithm (seed 42, std > 10 filter on the retrieval candidates)."""
    from .tasks import generate_task_files, std_filter

    generate_task_files(
        root / "tasks",
        {
            key: Split(value["name"], tuple(value["test"]), tuple(value.get("train", ())))
            for key, value in splits.items()
        },
        counts,
        n_pairs=params.n_pairs,
        n_queries=params.n_queries,
        n_distractors=params.n_distractors,
        seed=42,
        progress=progress,
        patch_filter=std_filter(lambda sequence: read_patch_file(root / sequence / "ref.png")),
    )


def generate(root: Path, params: SynthParams = DEFAULT_PARAMS, progress: bool = True) -> Path:
    """Generate the dataset into ``root``, replacing what is there, atomically; returns ``root``."""
    params.check()
    root = Path(root)
    if root.exists():
        _check_replaceable(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(root)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        sources = params.sources()
        info = describe(params)
        info["sequences"] = {}
        overlaps = {noise: [] for noise in NOISES}
        bar = tqdm(sources, desc=f"{NAME}: sequences", unit="seq", disable=not progress)
        for source in bar:
            bar.set_postfix_str(source.sequence)
            sequence = generate_sequence(source, params)
            write_sequence(tmp / source.sequence, sequence)
            for noise in NOISES:
                overlaps[noise].append(sequence.overlaps[noise])
            info["sequences"][source.sequence] = {
                "image": f"skimage.data.{source.image}",
                "crop_y0_y1_x0_x1": list(source.crop) if source.crop else None,
                "change": source.change.name.lower(),
                "patches": params.patches,
                "detections": sequence.candidates,
                "valid_frames": sequence.valid,
                "homographies_ref_to_k": np.round(sequence.homographies, 10).tolist(),
            }
        info["measured_overlap"] = {
            noise: {
                "mean": round(float(np.mean(np.concatenate(v))), 4),
                "median": round(float(np.median(np.concatenate(v))), 4),
            }
            for noise, v in overlaps.items()
        }
        names = tuple(s.sequence for s in sources)
        splits = make_splits(names, params.seed)
        split_dir = tmp / "tasks" / "splits"
        split_dir.mkdir(parents=True)
        (split_dir / "splits.json").write_text(json.dumps(splits, indent=1) + "\n")
        _write_tasks(tmp, splits, {name: params.patches for name in names}, params, progress)
        (tmp / "params.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")  # completion marker
        _move_into_place(tmp, root, params)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _move_into_place(tmp: Path, root: Path, params: SynthParams) -> None:
    old = None
    if root.exists():
        _check_replaceable(root)
        old = root.with_name(f".{root.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(root, old)
    try:
        os.replace(tmp, root)
    except OSError:
        # Another process put a dataset there first: keep it when it is complete.
        if not is_complete(root, params):
            raise DatasetError(f"{NAME}: cannot move the generated dataset into {root}") from None
        shutil.rmtree(tmp, ignore_errors=True)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_leftovers(root: Path, stale_s: float = 3600.0) -> None:
    """Remove replaced datasets, and temporary folders of runs killed over an hour ago."""
    now = time.time()
    for path in root.parent.glob(f".{root.name}.*-*"):
        old = path.name.startswith(f".{root.name}.old-")
        stale = path.name.startswith(f".{root.name}.tmp-") and now - path.stat().st_mtime > stale_s
        if path.is_dir() and (old or stale):
            shutil.rmtree(path, ignore_errors=True)


def _check_replaceable(root: Path) -> None:
    """Refuse to replace a folder that is not an ``hpatches-synth`` dataset (or empty)."""
    if not root.is_dir():
        raise DatasetError(f"{NAME}: {root} exists and is not a folder; remove it or choose another data folder")
    if not any(root.iterdir()):
        return
    try:
        generator = json.loads((root / "params.json").read_text()).get("generator")
    except (OSError, ValueError, AttributeError):
        generator = None
    if generator != NAME:
        raise DatasetError(
            f"{NAME}: {root} holds files that are not an {NAME} dataset (no params.json of this generator); "
            f"refusing to replace it: remove it or choose another data folder"
        )


def ensure_hpatches_synth(root: Path, progress: bool = True, params: SynthParams | None = None) -> Path:
    """Return ``root`` holding a complete ``hpatches-synth`` dataset, generating it when absent,
    incomplete, or made with other parameters or another generator version."""
    params = params or DEFAULT_PARAMS
    root = Path(root)
    if not is_complete(root, params):
        generate(root, params, progress=progress)
    return root


def generate_tiny(root: Path, sequences: int = 4, patches: int = 40, progress: bool = False) -> Path:
    """A small set for tests and quick end-to-end runs (about a second): ``sequences`` x ``patches``."""
    params = SynthParams(
        sequences=sequences,
        patches=patches,
        n_pairs=TINY_PARAMS.n_pairs,
        n_queries=min(TINY_PARAMS.n_queries, patches),
        n_distractors=TINY_PARAMS.n_distractors,
    )
    return ensure_hpatches_synth(root, progress=progress, params=params)


def open_patch_set(root: Path) -> PatchSet:
    """A :class:`PatchSet` over a generated dataset at ``root`` (which must be complete)."""
    root = Path(root)
    version = dataset_version(root)
    stored = json.loads((root / "params.json").read_text())
    return PatchSet(
        name=NAME, root=root, tasks_dir=root / "tasks", version=version, sequences=tuple(stored["sequences"])
    )


class HPatchesSynth(DatasetSource):
    """The embedded default: HPatches-style patches generated locally on first use."""

    name = NAME
    kind = "patches"
    default_protocol = "python"
    embedded = True
    summary = (
        f"HPatches-style patches generated from scikit-image pictures ({DEFAULT_PARAMS.sequences} sequences, "
        f"{DEFAULT_PARAMS.patches} patches each, e/h/t jitter); no download, made on first use"
    )

    def open(self, data_dir: Path) -> PatchSet:
        root = Path(data_dir) / NAME
        ensure_hpatches_synth(root, progress=True)
        return open_patch_set(root)

    def availability(self, data_dir: Path) -> str | None:
        return None  # generated on first use

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        """Generate (nothing is downloaded) into ``<data_dir>/hpatches-synth``; returns that folder."""
        return ensure_hpatches_synth(Path(data_dir) / NAME, progress=progress)
