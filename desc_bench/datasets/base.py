"""Dataset types shared by the loaders.

``PatchSet``: an HPatches-release style patch dataset: ``<root>/<seq>/<type>.png`` with 16 types
(ref, e1..e5, h1..h5, t1..t5), each a 65 px wide column of N stacked 65x65 gray patches, plus the
task files (``<tasks_dir>/splits/splits.json``, ``retr_*`` and ``verif_*`` CSVs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import DatasetError, UnknownNameError

PATCH = 65
NOISES = ("e", "h", "t")
NOISE_NAMES = {"e": "easy", "h": "hard", "t": "tough"}
PATCH_TYPES = ("ref",) + tuple(f"{n}{i}" for n in NOISES for i in range(1, 6))


def read_patch_file(path: Path) -> np.ndarray:
    """Read one release patch file into ``(N, 65, 65)`` uint8; errors name the file."""
    if not path.is_file():
        raise DatasetError(f"missing patch file {path}")
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DatasetError(f"cannot read patch file {path} (not a readable image)")
    height, width = image.shape
    if width != PATCH or height % PATCH != 0 or height == 0:
        raise DatasetError(
            f"malformed patch file {path}: expected width {PATCH} and a height that is a multiple of "
            f"{PATCH} (stacked {PATCH}x{PATCH} patches), found {width}x{height}"
        )
    return image.reshape(height // PATCH, PATCH, PATCH)


@dataclass(frozen=True)
class Split:
    name: str
    test: tuple[str, ...]
    train: tuple[str, ...] = ()


def read_splits(path: Path) -> dict[str, Split]:
    if not path.is_file():
        raise DatasetError(f"missing splits file {path}")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"splits file {path} is not valid JSON: {exc}") from None
    return {key: Split(key, tuple(value["test"]), tuple(value.get("train", ()))) for key, value in raw.items()}


def split_named(splits: dict[str, Split], name: str) -> Split:
    """The named split, or an UnknownNameError listing the valid ones."""
    if name not in splits:
        raise UnknownNameError("split", name, list(splits))
    return splits[name]


@dataclass(frozen=True)
class PatchSet:
    """A patch dataset in the hpatches-release layout."""

    name: str
    root: Path
    tasks_dir: Path
    version: str  # part of the cache key
    sequences: tuple[str, ...] = field(default=())

    def sequence_names(self) -> tuple[str, ...]:
        if self.sequences:
            return self.sequences
        return tuple(sorted(p.name for p in self.root.iterdir() if p.is_dir() and (p / "ref.png").exists()))

    def splits(self) -> dict[str, Split]:
        return read_splits(self.tasks_dir / "splits" / "splits.json")

    def split(self, name: str) -> Split:
        return split_named(self.splits(), name)

    def load(self, sequence: str) -> dict[str, np.ndarray]:
        """All 16 patch files of a sequence: type -> ``(N, 65, 65)`` uint8, same N in each."""
        folder = self.root / sequence
        if not folder.is_dir():
            raise DatasetError(f"sequence folder {folder} is missing from dataset {self.name!r}")
        patches = {t: read_patch_file(folder / f"{t}.png") for t in PATCH_TYPES}
        counts = {t: len(p) for t, p in patches.items()}
        if len(set(counts.values())) != 1:
            expected = counts["ref"]
            bad = [f"{folder / (t + '.png')} has {n}" for t, n in counts.items() if n != expected]
            raise DatasetError(
                f"sequence {sequence}: every patch file must hold the same number of patches as "
                f"ref.png ({expected}); " + "; ".join(bad)
            )
        return patches

    def patch_count(self, sequence: str) -> int:
        path = self.root / sequence / "ref.png"
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise DatasetError(f"missing or unreadable patch file {path}")
        return image.shape[0] // PATCH


class DatasetSource:
    """A named dataset. Subclasses that set ``name`` register themselves (no central list).

    ``open(data_dir)`` returns the dataset object (a :class:`PatchSet` for patch datasets, a pair
    set for image-pair datasets); ``availability(data_dir)`` returns None when it can be opened, else
    what is missing and how to get it (e.g. "run `desc-bench data download hpatches`").
    """

    name: str = ""
    kind: str = "patches"  # "patches" or "pairs"
    summary: str = ""
    embedded: bool = False  # generated locally, no download needed
    default_protocol: str | None = None  # benchmark(s) `desc-bench run` uses when no --protocol is given

    _registry: dict[str, type[DatasetSource]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and cls.name:
            DatasetSource._registry[cls.name] = cls

    def open(self, data_dir: Path):
        raise NotImplementedError

    def availability(self, data_dir: Path) -> str | None:
        return None

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        raise NotImplementedError(f"dataset {self.name!r} has no download")
