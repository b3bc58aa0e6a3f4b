"""The embedded dataset ``brown-synth``: three Brown-layout subsets made locally, no download.

Made from the scikit-image pictures of ``hpatches-synth`` with its photometric and geometric helpers,
in the exact layout of the real Brown / UBC PhotoTour subsets (see
:mod:`desc_bench.datasets.brown_layout`), so it runs through the same reader and benchmarks:

- Subsets ``liberty``, ``notredame`` and ``yosemite`` (real names, so tables keep the HardNet
  paper's layout; rows on them say "synthetic"), each from its own 3 pictures (:data:`SUBSET_SOURCES`).
  Every picture is one *reference image* (interest.txt column 0, the groups of brown-snn-map) and
  gets a share of the subset's 3D points: groups of about 1,850, 1,370 and 900 patches, so
  brown-snn-map's published mode mines two groups (it mines only groups of more than 1,000
  patches, and there only the first 128 floor(N / 128) anchors) and not the third.
- 3D points are DoG (OpenCV SIFT) detections of the picture, with scale and orientation, clustered
  as in hpatches-synth. Each picture has :data:`VIEWS` (4) views: the picture itself and 3 random
  viewpoint-like homographies (``viewpoint_homography`` with k = 1..3), each with a photometric
  change of strength 0.8 (gamma, gain, gradient, light spot, sensor noise; ``photometric_change``).
  Each point is seen in 2 to 4 of the views (at random); each sighting is a 64x64 patch sampled
  through the point's frame (the patch spans ``MAGNIFICATION`` keypoint sizes, as hpatches-synth)
  mapped into that view, with the affine jitter of hpatches-synth's Hard level (detection noise in
  position, scale, shape and orientation), from a Gaussian pyramid level matched to the scale (no
  aliasing). A point is kept only when all its patches lie inside their views. With these
  settings OpenCV SIFT has an FPR95 of 20-28 % (mean 25 %; the real subsets: 22-30 %, mean 26.6 %).
- Patches are ordered by point id (the patches of a point are consecutive, as in the real files).
  ``m50_10000_10000_0.txt`` holds 10,000 test pairs, half matching (two patches of one point), half
  not (two patches of different points, drawn uniformly), shuffled.

Deterministic (one random stream per subset, seeded by the subset's name); generated into
``<data root>/brown-synth/`` on first use, in a temporary folder renamed into place, so an interrupted
run never leaves a half dataset. ``params.json`` (written last) records the parameters, the OpenCV
version (SIFT detections may differ between builds), group sizes and the sha256 of every file; the
subsets' versions derive from those hashes (content, not modification times).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import DatasetError
from ..io.atomic import remove_stale_staging, staged_folder
from ..io.download import sha256_file
from ..io.progress import bar
from .base import DatasetSource
from .brown_layout import KIND, PATCH, SUBSETS, BrownPairs, BrownSet, BrownSubset, write_subset

# The shared synthetic-data helpers (scikit-image sources, photometry, geometry, sampling).
from .synth.frames import JITTER, detect_frames, frame_matrices, sample_jitter
from .synth.geometry import apply_homography, viewpoint_homography
from .synth.hpatches_synth import ILLUMINATION_SOURCES, VIEWPOINT_SOURCES
from .synth.patches import inside, pyramid, sample_patches
from .synth.photometry import illumination_change as photometric_change
from .synth.sources import load_gray as load_source

NAME = "brown-synth"
GENERATOR_VERSION = "1"  # bump whenever the output for the same parameters changes
TEST_FILE = "m50_10000_10000_0.txt"
VIEWS = 4
_SOURCES = {s.sequence: s for s in ILLUMINATION_SOURCES + VIEWPOINT_SOURCES}
# Per subset: (source, share of the subset's points): two groups of over 1,000 patches, one under.
SUBSET_SOURCES = {
    "liberty": (("v_ihc", 0.45), ("v_astronaut", 0.33), ("i_coffee", 0.22)),
    "notredame": (("v_motorcycle", 0.45), ("v_camera", 0.33), ("i_hubble_left", 0.22)),
    "yosemite": (("v_gravel", 0.45), ("v_grass", 0.33), ("v_hubble_right", 0.22)),
}
# 64 px patch pixel (j, i) -> centred patch coordinates (side 1): u = (j - 31.5) / 64
_HALF = (PATCH - 1) / 2.0
PATCH_TO_UNIT = np.array([[1 / PATCH, 0, -_HALF / PATCH], [0, 1 / PATCH, -_HALF / PATCH], [0, 0, 1.0]])


@dataclass(frozen=True)
class BrownSynthParams:
    """Everything the output depends on (with :data:`GENERATOR_VERSION`)."""

    points: int = 1_400  # 3D points per subset (about 3 patches each)
    min_views: int = 2
    max_views: int = 4
    pairs: int = 10_000  # test pairs per subset, half matching
    seed: int = 0
    contrast_threshold: float = 0.01
    min_size: float = 2.5  # smallest DoG keypoint size (diameter, px) kept as a 3D point
    nms_overlap: float = 0.5
    jitter: str = "h"  # hpatches-synth jitter of every sighting ("e", "h", "t"); "h": OpenCV SIFT FPR95 ~ 30 %
    photometric: float = 0.8  # strength of each view's photometric change
    max_warp: int = 3  # views use viewpoint_homography(k) with k uniform in 1..max_warp

    def check(self) -> None:
        if self.points < 10 or not 2 <= self.min_views <= self.max_views <= VIEWS or self.pairs < 2:
            raise DatasetError(
                f"{NAME}: need points >= 10, 2 <= min_views <= max_views <= {VIEWS} and pairs >= 2; got {self}"
            )


DEFAULT_PARAMS = BrownSynthParams()


def _stream(params: BrownSynthParams, subset: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{NAME}/{subset}".encode()).digest()
    return np.random.default_rng(np.random.SeedSequence([params.seed, int.from_bytes(digest[:8], "little")]))


def _image_patches(gray: np.ndarray, count: int, params: BrownSynthParams, rng: np.random.Generator, name: str):
    """``count`` points of one reference image: patches ``(M, 64, 64)``, point index ``(M,)``, interest ``(M, 4)``."""
    shape = gray.shape
    reference = gray.astype(np.float32)
    frames = detect_frames(gray, rng, params.min_size, params.nms_overlap, params.contrast_threshold)
    homographies = [np.eye(3)] + [
        viewpoint_homography(rng, shape, int(rng.integers(1, params.max_warp + 1))) for _ in range(VIEWS - 1)
    ]
    views = []
    for h in homographies:
        warped = reference if h is homographies[0] else cv2.warpPerspective(reference, h, (shape[1], shape[0]))
        views.append(pyramid(photometric_change(rng, warped, strength=params.photometric)))
    # each point: how many views and which (the first views drawn are where it is sampled)
    seen = np.argsort(rng.random((len(frames), VIEWS)), axis=1)  # a random order of the views per point
    n_views = rng.integers(params.min_views, params.max_views + 1, len(frames))
    jitters = sample_jitter(rng, len(frames) * VIEWS, JITTER[params.jitter]).reshape(len(frames), VIEWS, 3, 3)
    base = frame_matrices(frames)  # unit patch -> reference pixels
    maps = np.stack(homographies)[None] @ (base[:, None] @ jitters @ PATCH_TO_UNIT)  # (N, V, 3, 3) patch -> view
    used = np.zeros((len(frames), VIEWS), bool)
    for k in range(params.max_views):
        rows = np.flatnonzero(n_views > k)
        used[rows, seen[rows, k]] = True
    inside_views = np.stack([inside(maps[:, v], shape) for v in range(VIEWS)], 1) if len(frames) else used
    valid = (inside_views | ~used).all(1)
    if valid.sum() < count:
        raise DatasetError(f"{NAME}: {name} has {int(valid.sum())} usable points, fewer than the {count} asked for")
    chosen = np.sort(rng.choice(np.flatnonzero(valid), size=count, replace=False))
    point, view = [], []
    for index, p in enumerate(chosen):
        for v in np.sort(seen[p, : n_views[p]]):
            point.append(index)
            view.append(v)
    point, view = np.asarray(point), np.asarray(view)
    matrices = maps[chosen[point], view]
    patches = np.empty((len(point), PATCH, PATCH), np.uint8)
    for v in range(VIEWS):
        mask = view == v
        if mask.any():
            patches[mask] = sample_patches(views[v], matrices[mask])[:, :PATCH, :PATCH]
    centre = apply_homography(matrices, np.array([[_HALF, _HALF]]))[:, 0]
    f = frames[chosen[point]]
    interest = np.stack([centre[:, 0], centre[:, 1], np.deg2rad(f[:, 3]), f[:, 2]], 1)  # x, y, angle, size
    return patches, point, interest


def generate_subset(subset: str, params: BrownSynthParams = DEFAULT_PARAMS):
    """One subset in memory: patches, point ids, interest rows ``(N, 5)``, test pairs, group sizes."""
    rng = _stream(params, subset)
    patches, points, interest, groups = [], [], [], {}
    offset = 0
    for image_id, (sequence, share) in enumerate(SUBSET_SOURCES[subset]):
        count = max(2, round(share * params.points))
        p, point, rows = _image_patches(load_source(_SOURCES[sequence]), count, params, rng, sequence)
        patches.append(p)
        points.append(point + offset)
        interest.append(np.concatenate([np.full((len(p), 1), image_id), rows], 1))
        groups[sequence] = len(p)
        offset += count
    patches, points, interest = np.concatenate(patches), np.concatenate(points), np.concatenate(interest)
    return patches, points, interest, _pairs(rng, points, params.pairs), groups


def _pairs(rng: np.random.Generator, points: np.ndarray, total: int) -> BrownPairs:
    """Half matching pairs (two patches of a random point), half not (uniform, different points), shuffled."""
    starts = np.flatnonzero(np.r_[True, points[1:] != points[:-1]])
    sizes = np.diff(np.r_[starts, len(points)])
    n_pos = total // 2
    which = rng.integers(0, len(starts), n_pos)
    first = rng.integers(0, sizes[which])
    second = (first + rng.integers(1, sizes[which])) % sizes[which]
    pos = np.stack([starts[which] + first, starts[which] + second], 1)
    neg = rng.integers(0, len(points), (2 * (total - n_pos), 2))
    neg = neg[points[neg[:, 0]] != points[neg[:, 1]]][: total - n_pos]
    both = np.concatenate([pos, neg])[rng.permutation(total)]
    return BrownPairs(both[:, 0], both[:, 1], points[both[:, 0]] == points[both[:, 1]])


def describe(params: BrownSynthParams) -> dict:
    return {
        "generator": NAME,
        "generator_version": GENERATOR_VERSION,
        "params": asdict(params),
        "views": VIEWS,
        "jitter": asdict(JITTER[params.jitter]),
        "subset_sources": {k: [list(x) for x in v] for k, v in SUBSET_SOURCES.items()},
    }


def _stored(root: Path) -> dict | None:
    try:
        return json.loads((Path(root) / "params.json").read_text())
    except (OSError, ValueError):
        return None


def is_complete(root: Path, params: BrownSynthParams) -> bool:
    stored = _stored(root)
    if stored is None or any(stored.get(k) != v for k, v in describe(params).items()):
        return False
    return all((Path(root) / s / TEST_FILE).is_file() for s in SUBSETS)


def _check_replaceable(root: Path) -> None:
    if root.exists() and any(root.iterdir()) and (_stored(root) or {}).get("generator") != NAME:
        raise DatasetError(f"{NAME}: {root} holds files that are not a {NAME} dataset; refusing to replace it")


def generate(root: Path, params: BrownSynthParams = DEFAULT_PARAMS, progress: bool = False) -> Path:
    """Generate the three subsets into ``root`` (replacing an older brown-synth there), atomically
    (:func:`desc_bench.io.atomic.staged_folder`)."""
    params.check()
    root = Path(root)
    _check_replaceable(root)

    def complete(folder: Path) -> bool:  # another process made it meanwhile
        return is_complete(folder, params)

    with staged_folder(root, before_replace=_check_replaceable, keep_concurrent=complete) as tmp:
        info = describe(params)
        info["opencv"] = cv2.__version__
        info["subsets"] = {}
        for subset in bar(SUBSETS, desc=f"{NAME}: subsets", unit="subset", enabled=progress):
            patches, points, interest, pairs, groups = generate_subset(subset, params)
            folder = write_subset(tmp / subset, patches, points, interest, pairs, TEST_FILE)
            info["subsets"][subset] = {
                "patches": len(patches),
                "points": int(points.max()) + 1,
                "groups": groups,
                "sha256": {p.name: sha256_file(p) for p in sorted(folder.iterdir())},
            }
        (tmp / "params.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")  # completion marker
    return root


def ensure(root: Path, params: BrownSynthParams = DEFAULT_PARAMS, progress: bool = False) -> Path:
    """``root`` holding a complete brown-synth made with ``params``, generated when absent or stale."""
    remove_stale_staging(root)  # what a killed generation left, even when the set is complete
    if not is_complete(root, params):
        generate(root, params, progress=progress)
    return Path(root)


def open_set(root: Path) -> BrownSet:
    """The generated subsets at ``root`` (which must be complete); versions from the content hashes."""
    stored = _stored(root) or {}
    subsets = []
    for subset in SUBSETS:
        digest = hashlib.sha256(json.dumps(stored["subsets"][subset]["sha256"], sort_keys=True).encode())
        content = f"{NAME}-g{GENERATOR_VERSION}-{digest.hexdigest()[:12]}"
        subsets.append(BrownSubset(subset, Path(root) / subset, TEST_FILE, synthetic=True, content_version=content))
    return BrownSet(NAME, tuple(subsets))


class BrownSynth(DatasetSource):
    """The embedded Brown stand-in: three subsets generated on first use."""

    name = NAME
    kind = KIND
    default_protocol = "fpr95,brown-snn-map"
    embedded = True
    summary = (
        "Brown-layout patches generated from scikit-image pictures (liberty/notredame/yosemite stand-ins, "
        f"about {DEFAULT_PARAMS.points * 3:,} patches and {DEFAULT_PARAMS.pairs:,} test pairs each); no download"
    )

    def open(self, data_dir: Path, progress: bool = True) -> BrownSet:
        return open_set(ensure(Path(data_dir) / NAME, progress=progress))

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        """Generate (nothing is downloaded) into ``<data_dir>/brown-synth``; returns that folder."""
        return ensure(Path(data_dir) / NAME, progress=progress)
