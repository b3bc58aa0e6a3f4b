"""The embedded default dataset ``hpatches-synth``: HPatches-style patches made locally, no download.

Follows the patch-extraction protocol of HPatches (Balntas, Lenc, Vedaldi, Mikolajczyk, "HPatches:
A benchmark and evaluation of handcrafted and learned local descriptors", CVPR 2017, and the
hpatches-benchmark extraction notes), on images that scikit-image bundles (:mod:`.sources`):

- Reference frames: OpenCV SIFT (DoG) keypoints with scale and Lowe orientation on the reference
  image; no affine adaptation (square regions). Detections whose detection circles overlap by more
  than 50 % (intersection over union) are clustered and one of them, at random, is kept
  (:func:`.frames.detect_frames`).
- Each sequence has a reference image and 5 targets: ``v_`` sequences warp the reference by a random
  viewpoint-like homography (:func:`.geometry.viewpoint_homography`) with a mild photometric change;
  ``i_`` sequences keep the geometry (identity homography) and change the photometry
  (:func:`.photometry.illumination_change`).
- Target frames = reference frames with an affine jitter (:data:`.frames.JITTER`: Easy, Hard,
  Tough, median ellipse overlaps of the measurement region about 0.85, 0.72 and 0.60) reprojected
  by the ground-truth homography.
- Patches are 65x65, sampled through each frame over ``MAGNIFICATION`` x the keypoint size from a
  Gaussian pyramid level chosen by the local scale (:func:`.patches.sample_patches`). A frame is
  kept only when its region lies inside the reference and every target image for every jitter, so
  all 16 files of a sequence hold the same frames; ``patches`` of the valid frames are drawn at
  random.

Output, the hpatches-release layout that :class:`~desc_bench.datasets.base.PatchSet` reads:
``<root>/<seq>/{ref,e1..e5,h1..h5,t1..t5}.png``, ``<root>/params.json`` (generation parameters,
sources, homographies, measured overlaps; written last, it marks a complete dataset),
``<root>/tasks/splits/splits.json`` (:func:`.splits.make_splits`) and the task files made by
:func:`desc_bench.datasets.tasks.generate_task_files`.

Everything is deterministic (seeded per sequence); generation is atomic
(:func:`desc_bench.io.atomic.staged_folder`). The default set (16 sequences, 8 i_ and 8 v_, 300
patches each; 30k verification pairs, 500 queries and up to 1,500 distractors per split) takes
about 14 s of CPU and 157 MB. SIFT detections may differ between OpenCV builds, so the dataset
version (:func:`dataset_version`, a hash of ``params.json``, which records the OpenCV version)
identifies the data a cache was made from.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ...errors import DatasetError
from ...imaging import MAGNIFICATION
from ...io.atomic import remove_stale_staging, staged_folder
from ...io.progress import bar
from ..base import NOISES, PATCH, PATCH_TYPES, DatasetSource, PatchSet, Split, read_patch_file
from .frames import JITTER, PATCH_TO_UNIT, detect_frames, ellipse_overlap, frame_matrices, sample_jitter
from .geometry import viewpoint_homography, warp
from .patches import inside, pyramid, sample_patches
from .photometry import illumination_change
from .seeds import name_seed
from .sources import Change, Source, load_gray
from .splits import make_splits
from .writers import write_json, write_patch_files

NAME = "hpatches-synth"
GENERATOR_VERSION = "1"  # bump whenever the output for the same parameters changes
TARGETS = 5
SPLITS_STREAM = 1  # random stream of make_splits (sequence streams hash the sequence name)
GENERATION_THREADS = 4  # sequences generated at once (at most the CPU count)

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
    return name_seed(params.seed, source.sequence)


@dataclass(frozen=True, eq=False)
class FramePlan:
    """Where every reference frame lands: ``base`` (patch -> reference pixels), for each
    ``(noise, k)`` its jitter and its map into target k, and which frames are ``valid`` (their
    region inside the reference and every target for every jitter)."""

    base: np.ndarray  # (N, 3, 3)
    jitters: dict  # (noise, k) -> (N, 3, 3)
    maps: dict  # (noise, k) -> (N, 3, 3) patch -> target-k pixels
    valid: np.ndarray  # (N,) bool

    def sample(self, reference: np.ndarray, targets, chosen: np.ndarray) -> tuple[dict, dict]:
        """The 16 patch files of the ``chosen`` frames and the measured jitter overlaps per noise."""
        patches = {"ref": sample_patches(pyramid(reference), self.base[chosen])}
        overlaps = {noise: [] for noise in NOISES}
        for k in range(len(targets)):
            levels = pyramid(targets[k])
            for noise in NOISES:
                patches[f"{noise}{k + 1}"] = sample_patches(levels, self.maps[(noise, k)][chosen])
                overlaps[noise].append(ellipse_overlap(self.jitters[(noise, k)][chosen]))
        return {t: patches[t] for t in PATCH_TYPES}, {n: np.concatenate(v) for n, v in overlaps.items()}


def plan_frames(frames: np.ndarray, homographies, shape, target_shapes, rng: np.random.Generator) -> FramePlan:
    """HPatches' reprojection: each frame with an Easy/Hard/Tough affine jitter per target (drawn from
    ``rng`` in target-major order), mapped by the target's homography; ``shape`` is the reference's."""
    base = frame_matrices(frames) @ PATCH_TO_UNIT  # patch pixels -> reference pixels
    count = len(homographies)
    jitters = {(noise, k): sample_jitter(rng, len(frames), JITTER[noise]) for k in range(count) for noise in NOISES}
    valid = inside(base, shape)
    maps = {}
    for (noise, k), jitter in jitters.items():
        in_reference = frame_matrices(frames) @ jitter @ PATCH_TO_UNIT
        in_target = homographies[k] @ in_reference
        valid &= inside(in_reference, shape) & inside(in_target, target_shapes[k])
        maps[(noise, k)] = in_target
    return FramePlan(base, jitters, maps, valid)


def generate_sequence(source: Source, params: SynthParams, with_images: bool = False):
    """Generate one sequence; with ``with_images`` also return ``(ref_image, target_images)`` float32."""
    rng = np.random.default_rng(sequence_seed(params, source))
    gray = load_gray(source, NAME)
    shape = gray.shape
    reference = gray.astype(np.float32)
    frames = detect_frames(gray, rng, params.min_size, params.nms_overlap, params.contrast_threshold)

    homographies, targets = [], []
    for k in range(1, TARGETS + 1):
        if source.change is Change.VIEWPOINT:
            h = viewpoint_homography(rng, shape, k)
            targets.append(illumination_change(rng, warp(reference, h, (shape[1], shape[0])), strength=0.25))
        else:
            h = np.eye(3)
            targets.append(illumination_change(rng, reference, strength=1.0))
        homographies.append(h)

    plan = plan_frames(frames, homographies, shape, [t.shape for t in targets], rng)
    candidates, valid_count = len(frames), int(plan.valid.sum())
    if valid_count < params.patches:
        raise DatasetError(
            f"{NAME}: sequence {source.sequence} has only {valid_count} valid frames (of {candidates} "
            f"detections), fewer than the {params.patches} patches asked for; ask for fewer patches"
        )
    chosen = np.sort(rng.choice(np.flatnonzero(plan.valid), size=params.patches, replace=False))
    patches, overlaps = plan.sample(reference, targets, chosen)
    sequence = GeneratedSequence(
        source=source,
        frames=frames[chosen],
        homographies=np.stack(homographies),
        patches=patches,
        overlaps=overlaps,
        candidates=candidates,
        valid=valid_count,
    )
    if with_images:
        return sequence, (reference, targets)
    return sequence


def write_sequence(folder: Path, sequence: GeneratedSequence) -> None:
    write_patch_files(folder, sequence.patches, NAME)


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
    if not isinstance(stored, dict):
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
    from ..tasks import generate_task_files, std_filter

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


def _sequence_info(source: Source, params: SynthParams, sequence: GeneratedSequence) -> dict:
    return {
        "image": f"skimage.data.{source.image}",
        "crop_y0_y1_x0_x1": list(source.crop) if source.crop else None,
        "change": source.change.name.lower(),
        "patches": params.patches,
        "detections": sequence.candidates,
        "valid_frames": sequence.valid,
        "homographies_ref_to_k": np.round(sequence.homographies, 10).tolist(),
    }


def _generate_and_write(tmp: Path, params: SynthParams, source: Source) -> tuple[dict, dict]:
    """Generate one sequence, write its patch files; return its overlaps and its params.json entry."""
    sequence = generate_sequence(source, params)
    write_sequence(tmp / source.sequence, sequence)
    return sequence.overlaps, _sequence_info(source, params, sequence)


def _build(tmp: Path, params: SynthParams, progress: bool) -> None:
    sources = params.sources()
    info = describe(params)
    info["sequences"] = {}
    overlaps = {noise: [] for noise in NOISES}
    sequences_bar = bar(total=len(sources), desc=f"{NAME}: sequences", unit="seq", enabled=progress)
    # Each sequence draws from its own seed stream, so generating them concurrently gives the same
    # bytes; the heavy parts (OpenCV warps, detection, PNG encoding) release the GIL.
    workers = max(1, min(GENERATION_THREADS, os.cpu_count() or 1, len(sources)))
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda source: _generate_and_write(tmp, params, source), sources)
        for source, (sequence_overlaps, sequence_info) in zip(sources, results):
            for noise in NOISES:
                overlaps[noise].append(sequence_overlaps[noise])
            info["sequences"][source.sequence] = sequence_info
            sequences_bar.set_postfix_str(source.sequence)
            sequences_bar.update()
    sequences_bar.close()
    info["measured_overlap"] = {
        noise: {
            "mean": round(float(np.mean(np.concatenate(v))), 4),
            "median": round(float(np.median(np.concatenate(v))), 4),
        }
        for noise, v in overlaps.items()
    }
    names = tuple(s.sequence for s in sources)
    splits = make_splits(names, params.seed, SPLITS_STREAM)
    write_json(tmp / "tasks" / "splits" / "splits.json", splits)
    _write_tasks(tmp, splits, {name: params.patches for name in names}, params, progress)
    write_json(tmp / "params.json", info, sort_keys=True)  # completion marker, written last


def generate(root: Path, params: SynthParams = DEFAULT_PARAMS, progress: bool = True) -> Path:
    """Generate the dataset into ``root``, replacing what is there, atomically; returns ``root``."""
    params.check()
    root = Path(root)
    if root.exists():
        _check_replaceable(root)
    complete = lambda folder: is_complete(folder, params)  # noqa: E731 (another process made it meanwhile)
    with staged_folder(root, before_replace=_check_replaceable, keep_concurrent=complete) as tmp:
        _build(tmp, params, progress)
    return root


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
    remove_stale_staging(root)  # what a killed generation left, even when the dataset is complete
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
        name=NAME,
        root=root,
        tasks_dir=root / "tasks",
        version=version,
        sequences=tuple(stored["sequences"]),
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

    def open(self, data_dir: Path, progress: bool = True) -> PatchSet:
        root = Path(data_dir) / NAME
        ensure_hpatches_synth(root, progress=progress)
        return open_patch_set(root)

    def availability(self, data_dir: Path) -> str | None:
        return None  # generated on first use

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        """Generate (nothing is downloaded) into ``<data_dir>/hpatches-synth``; returns that folder."""
        return ensure_hpatches_synth(Path(data_dir) / NAME, progress=progress)
