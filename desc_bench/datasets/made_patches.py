"""Your own image sequences as an HPatches-style patch dataset (``desc-bench data make-patches``).

Input: a folder of sequences in the HPatches sequences layout (``<seq>/1.ppm .. 6.ppm``,
``H_1_2 .. H_1_6``) or the Oxford layout (``<seq>/img1..6.{ppm,pgm,png}``, ``H1to2p .. H1to6p``);
every sequence has a reference image 1 and its targets with homographies from it. The extraction
is hpatches-synth's, i.e. the HPatches procedure (Balntas et al., CVPR 2017): DoG frames on the
reference image (clustered so that overlapping detections are kept once), an Easy/Hard/Tough affine
jitter per target, reprojection into each target through its homography, 65x65 patches sampled
from a Gaussian pyramid level chosen by the local scale; a frame is kept only when its region lies
inside every image for every jitter, and at most ``patches`` of them are drawn (seeded). Splits
a/b/c/illum/view/full are made like hpatches-synth's and the task files by the official algorithm
(:func:`desc_bench.datasets.tasks.generate_task_files`, seed 42).

Sequence kinds: HPatches names (``i_*``, ``v_*``) keep theirs; the eight Oxford sequences are
``v_`` (graf, wall, boat, bark: viewpoint, zoom and rotation) or ``i_`` (bikes, trees: blur; leuven:
light; ubc: JPEG); other names need an ``i_``/``v_`` prefix (rename the folder).

Output: ``<data root>/<name>/`` in the hpatches-release layout with ``tasks/`` and ``made.json``
(parameters, source, sequences, written last: it marks a complete dataset). Such a folder is a
dataset: ``desc-bench run --dataset <name>`` finds it under the data root (:func:`made_source`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import DatasetError, InputError
from ..io.atomic import staged_folder
from ..io.progress import bar
from .base import NOISES, DatasetSource, PatchSet, Split, read_patch_file
from .pairs import (
    Sequence,
    is_hpatches_sequence,
    is_oxford_sequence,
    load_hpatches_sequence,
    load_oxford_sequence,
    read_image,
)
from .synth.frames import detect_frames
from .synth.hpatches_synth import DEFAULT_PARAMS, plan_frames
from .synth.seeds import name_seed
from .synth.splits import make_splits
from .synth.writers import write_json, write_patch_files

MARKER = "made.json"
MAKER_VERSION = "1"  # bump when the output for the same input and parameters changes
OXFORD_KINDS = {
    "graf": "v",
    "wall": "v",
    "boat": "v",
    "bark": "v",
    "bikes": "i",
    "trees": "i",
    "leuven": "i",
    "ubc": "i",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class MakeParams:
    """Everything the output depends on besides the images (with :data:`MAKER_VERSION`)."""

    patches: int = 1000  # at most, per sequence (fewer when fewer frames are valid)
    seed: int = 0
    contrast_threshold: float = DEFAULT_PARAMS.contrast_threshold
    min_size: float = DEFAULT_PARAMS.min_size
    nms_overlap: float = DEFAULT_PARAMS.nms_overlap
    n_pairs: int = 100_000  # verification pairs of each kind per split
    n_queries: int = 2_000  # retrieval queries per split
    n_distractors: int = 5_000  # retrieval distractors per split (fewer when a split runs out)

    def check(self) -> None:
        for field in ("patches", "n_pairs", "n_queries", "n_distractors"):
            if getattr(self, field) < 1:
                raise InputError(f"make-patches: --{field.replace('_', '-')} must be at least 1")


def sequence_name(folder: Path) -> str:
    """The dataset name of a sequence folder: HPatches names as they are, Oxford names prefixed."""
    name = folder.name
    if name.startswith(("i_", "v_")):
        return name
    if name in OXFORD_KINDS:
        return f"{OXFORD_KINDS[name]}_{name}"
    raise DatasetError(
        f"make-patches: sequence folder {folder} needs an i_ (photometric change) or v_ (geometric change) "
        "prefix, as HPatches names them; rename it"
    )


def read_sequences(source: Path) -> list[tuple[str, Sequence]]:
    """``(name, sequence)`` of every sequence folder under ``source`` (either layout), sorted."""
    source = Path(source)
    if not source.is_dir():
        raise InputError(f"make-patches: --from {source} is not a folder")
    found = []
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        if is_hpatches_sequence(folder):
            found.append((sequence_name(folder), load_hpatches_sequence(folder)))
        elif is_oxford_sequence(folder):
            found.append((sequence_name(folder), load_oxford_sequence(folder)))
    if not found:
        raise DatasetError(
            f"make-patches: no sequence folder under {source} (expected <seq>/1.ppm..6.ppm with H_1_2..H_1_6, "
            "or <seq>/img1..6.ppm with H1to2p..H1to6p)"
        )
    kinds = {name[:2] for name, _ in found}
    if kinds != {"i_", "v_"}:
        raise DatasetError(
            f"make-patches: {source} holds only {'illumination' if kinds == {'i_'} else 'viewpoint'} sequences; "
            "the HPatches splits need both i_ and v_ sequences"
        )
    return found


def _gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)


def extract_sequence(name: str, seq: Sequence, params: MakeParams) -> tuple[dict, dict]:
    """The 16 patch files of one sequence and what was done (counts, measured jitter overlaps)."""
    rng = np.random.default_rng(name_seed(params.seed, name))
    gray = _gray(read_image(seq.images[0]))
    targets = [_gray(read_image(path)).astype(np.float32) for path in seq.images[1:]]
    frames = detect_frames(gray, rng, params.min_size, params.nms_overlap, params.contrast_threshold)
    # scaled to H[2, 2] = 1: Oxford's H1to5p of leuven is stored negated (the same homography)
    homographies = [seq.homography(k) / seq.homography(k)[2, 2] for k in range(2, len(seq.images) + 1)]
    plan = plan_frames(frames, homographies, gray.shape, [t.shape for t in targets], rng)
    valid = np.flatnonzero(plan.valid)
    if len(valid) == 0:
        raise DatasetError(f"make-patches: sequence {name} ({seq.images[0].parent}) has no frame inside every image")
    chosen = np.sort(rng.choice(valid, size=min(params.patches, len(valid)), replace=False))
    patches, overlaps = plan.sample(gray.astype(np.float32), targets, chosen)
    info = {
        "folder": str(seq.images[0].parent),
        "detections": len(frames),
        "valid_frames": len(valid),
        "patches": len(chosen),
        "overlap_median": {n: round(float(np.median(overlaps[n])), 4) for n in NOISES},
    }
    return patches, info


def _files_digest(sequences: list[tuple[str, Sequence]]) -> str:
    digest = hashlib.sha256()
    for name, seq in sequences:
        digest.update(name.encode())
        for path in seq.images:
            digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
        for matrix in seq.homographies:
            digest.update(np.ascontiguousarray(matrix, dtype=np.float64).tobytes())
    return digest.hexdigest()


def make_patches(
    source: Path,
    name: str,
    data_dir: Path,
    params: MakeParams = MakeParams(),
    *,
    overwrite: bool = False,
    progress=True,
) -> Path:
    """Build the dataset ``name`` under ``data_dir`` from the sequences in ``source``; returns its folder."""
    from .tasks import generate_task_files, std_filter

    params.check()
    if not _NAME.match(name):
        raise InputError(f"make-patches: --name {name!r} must be letters, digits, '-', '_' or '.' (a folder name)")
    if name in DatasetSource._registry:
        raise InputError(f"make-patches: --name {name!r} is a built-in dataset; choose another name")
    target = Path(data_dir) / name
    if target.exists() and not overwrite:
        raise InputError(f"make-patches: {target} exists; pass --overwrite to replace it, or choose another --name")
    if target.exists() and not (target / MARKER).is_file() and any(target.iterdir()):
        raise InputError(f"make-patches: {target} is not a made dataset; it is left alone (choose another --name)")
    sequences = read_sequences(source)
    info = {
        "maker": "desc-bench make-patches",
        "maker_version": MAKER_VERSION,
        "params": asdict(params),
        "detector": f"OpenCV {cv2.__version__} SIFT (DoG), contrastThreshold={params.contrast_threshold}",
        "source": str(Path(source).resolve()),
        "input_sha256": _files_digest(sequences),
        "sequences": {},
    }
    with staged_folder(target) as tmp:
        for seq_name, seq in bar(sequences, desc=f"{name}: sequences", unit="seq", enabled=progress):
            patches, about = extract_sequence(seq_name, seq, params)
            write_patch_files(tmp / seq_name, patches, name)
            info["sequences"][seq_name] = about
        names = tuple(n for n, _ in sequences)
        splits = make_splits(names, params.seed)
        write_json(tmp / "tasks" / "splits" / "splits.json", splits)
        counts = {n: info["sequences"][n]["patches"] for n in names}
        generate_task_files(
            tmp / "tasks",
            {k: Split(v["name"], tuple(v["test"]), tuple(v.get("train", ()))) for k, v in splits.items()},
            counts,
            n_pairs=params.n_pairs,
            n_queries=min(params.n_queries, min(counts.values())),
            n_distractors=params.n_distractors,
            seed=42,
            progress=progress,
            patch_filter=std_filter(lambda sequence: read_patch_file(tmp / sequence / "ref.png")),
        )
        write_json(tmp / MARKER, info, sort_keys=True)  # completion marker, written last
    return target


class MadePatches(DatasetSource):
    """A dataset made by ``make-patches``, found by its folder name under the data root."""

    kind = "patches"
    default_protocol = "python"

    def __init__(self, name: str, root: Path):
        self.name = name
        self.root = Path(root)

    @property
    def summary(self) -> str:  # read only where it is shown (desc-bench list)
        return f"made by make-patches from {self._info().get('source', '?')}"

    def _info(self) -> dict:
        try:
            return json.loads((self.root / MARKER).read_text())
        except (OSError, ValueError):
            return {}

    def availability(self, data_dir: Path) -> str | None:
        return (
            None if (self.root / MARKER).is_file() else f"{self.root / MARKER} is missing (an incomplete make-patches)"
        )

    def open(self, data_dir: Path, progress: bool = True) -> PatchSet:
        marker = self.root / MARKER
        if not marker.is_file():
            raise DatasetError(f"dataset {self.name!r}: {marker} is missing; run `desc-bench data make-patches` again")
        version = f"made{MAKER_VERSION}-{hashlib.sha256(marker.read_bytes()).hexdigest()[:12]}"
        names = tuple(sorted(self._info().get("sequences", {})))
        return PatchSet(name=self.name, root=self.root, tasks_dir=self.root / "tasks", version=version, sequences=names)


def made_source(name: str, data_dir: Path) -> MadePatches | None:
    """The made dataset ``name`` under ``data_dir``, or None when there is none."""
    root = Path(data_dir) / name
    return MadePatches(name, root) if _NAME.match(name) and (root / MARKER).is_file() else None


def made_sources(data_dir: Path) -> dict[str, MadePatches]:
    """Every made dataset under ``data_dir`` by name."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return {}
    return {p.parent.name: MadePatches(p.parent.name, p.parent) for p in sorted(data_dir.glob(f"*/{MARKER}"))}
