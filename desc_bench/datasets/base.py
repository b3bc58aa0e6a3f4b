"""Dataset types shared by the loaders.

``PatchSet``: an HPatches-release style patch dataset: ``<root>/<seq>/<type>.png`` with 16 types
(ref, e1..e5, h1..h5, t1..t5), each a 65 px wide column of N stacked 65x65 gray patches, plus the
task files (``<tasks_dir>/splits/splits.json``, ``retr_*`` and ``verif_*`` CSVs).
"""

from __future__ import annotations

import json
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from ..errors import DatasetError, UnknownNameError
from ..io.memo import BoundedCache

PATCH = 65
NOISES = ("e", "h", "t")
NOISE_NAMES = {"e": "easy", "h": "hard", "t": "tough"}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PATCH_TYPES = ("ref",) + tuple(f"{n}{i}" for n in NOISES for i in range(1, 6))


def _to_uint8(image: np.ndarray, path: Path) -> np.ndarray:
    """A decoded patch image at its stored bit depth as gray uint8, or DatasetError naming the file.

    8-bit gray is used as is. Colour (or gray with alpha) is accepted only when the colour channels
    are equal and any alpha is opaque. 16-bit images are accepted when they map exactly onto
    0..255: values 0..255 themselves, or an 8-bit image stored as 16 bits (every value a multiple
    of 257, 255 -> 65535). Anything else would change the pixel values: refused.
    """
    if image.ndim == 3:
        channels = image.shape[2]
        if channels in (2, 4):  # gray + alpha, BGRA
            alpha = image[..., -1]
            opaque = np.iinfo(image.dtype).max if image.dtype.kind in "ui" else 1
            if (alpha != opaque).any():
                raise DatasetError(f"patch file {path} has transparent pixels; HPatches patch files are opaque gray")
            image = image[..., :-1]
        if image.shape[2] > 1 and not (image == image[..., :1]).all():
            raise DatasetError(
                f"patch file {path} is in colour; HPatches patch files are gray (convert it, e.g. "
                "cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), and save it again)"
            )
        image = image[..., 0]
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == np.uint16:
        if image.max(initial=0) <= 255:
            return image.astype(np.uint8)
        if not (image % 257).any():
            return (image // 257).astype(np.uint8)
        raise DatasetError(
            f"patch file {path} is a 16-bit image with values up to {int(image.max())} that do not map onto "
            "0..255 exactly; save the patches as 8-bit gray PNG"
        )
    raise DatasetError(f"patch file {path} holds {image.dtype} pixels; save the patches as 8-bit gray PNG")


def imread(path: Path, flags: int, what: str = "image") -> np.ndarray:
    """``cv2.imread`` that raises DatasetError naming the file when it is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing {what} {path}")
    image = cv2.imread(str(path), flags)
    if image is None:
        raise DatasetError(f"cannot read {what} {path} (not a readable image file)")
    return image


def read_patch_file(path: Path) -> np.ndarray:
    """Read one release patch file into ``(N, 65, 65)`` uint8 at its true bit depth; errors name the file."""
    path = Path(path)
    image = _to_uint8(imread(path, cv2.IMREAD_UNCHANGED, "patch file"), path)
    height, width = image.shape
    if width != PATCH or height % PATCH != 0 or height == 0:
        raise DatasetError(
            f"malformed patch file {path}: expected width {PATCH} and a height that is a multiple of "
            f"{PATCH} (stacked {PATCH}x{PATCH} patches), found {width}x{height}"
        )
    return image.reshape(height // PATCH, PATCH, PATCH)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG header without decoding the image; errors name the file."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(24)
    except OSError as exc:
        raise DatasetError(f"cannot read patch file {path}: {exc}") from None
    if len(head) < 24 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise DatasetError(f"malformed patch file {path}: not a PNG image")
    return struct.unpack(">II", head[16:24])


@dataclass(frozen=True)
class Split:
    name: str
    test: tuple[str, ...]
    train: tuple[str, ...] = ()


def _names(value, path: Path, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DatasetError(
            f"splits file {path}: {where} must be a list of sequence names, found {type(value).__name__}"
        )
    return tuple(value)


def read_splits(path: Path) -> dict[str, Split]:
    """The splits of an official-format ``splits.json``: ``{key: {"test": [...], "train": [...]}}``.

    A file of another shape raises DatasetError naming the file and the entry.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"missing splits file {path}")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise DatasetError(f"splits file {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or not raw:
        raise DatasetError(
            f'splits file {path} must be a JSON object of splits ({{"a": {{"test": [...], "train": [...]}}, ...}}), '
            f"found {type(raw).__name__ if raw else 'nothing'}"
        )
    splits = {}
    for key, value in raw.items():
        if not isinstance(value, dict) or "test" not in value:
            raise DatasetError(f'splits file {path}: split {key!r} must be an object with a "test" list')
        test = _names(value["test"], path, f"split {key!r} test")
        if not test:
            raise DatasetError(f"splits file {path}: split {key!r} has no test sequences")
        splits[key] = Split(key, test, _names(value.get("train", []), path, f"split {key!r} train"))
    return splits


def split_named(splits: dict[str, Split], name: str) -> Split:
    """The named split, or an UnknownNameError listing the valid ones."""
    if name not in splits:
        raise UnknownNameError("split", name, list(splits))
    return splits[name]


LOADED = BoundedCache(512 << 20)  # decoded patch files of the sequences read last (PatchSet.load)


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
        """All 16 patch files of a sequence: type -> ``(N, 65, 65)`` uint8 (read-only), same N in each.

        Kept in memory (up to :data:`LOADED` bytes, keyed by the files' sizes and modification
        times) so that the next descriptor of a run does not decode the same files again."""
        folder = self.root / sequence
        if not folder.is_dir():
            raise DatasetError(f"sequence folder {folder} is missing from dataset {self.name!r}")
        paths = [folder / f"{t}.png" for t in PATCH_TYPES]
        try:
            key = (str(folder.resolve()), tuple((s.st_size, s.st_mtime_ns) for s in map(Path.stat, paths)))
        except OSError:
            key = None  # a missing file: read_patch_file names it
        if key is not None and (cached := LOADED.get(key)) is not None:
            return dict(cached)
        with ThreadPoolExecutor(2) as pool:  # PNG decoding releases the GIL
            patches = dict(zip(PATCH_TYPES, pool.map(read_patch_file, paths)))
        counts = {t: len(p) for t, p in patches.items()}
        if len(set(counts.values())) != 1:
            expected = counts["ref"]
            bad = [f"{folder / (t + '.png')} has {n}" for t, n in counts.items() if n != expected]
            raise DatasetError(
                f"sequence {sequence}: every patch file must hold the same number of patches as "
                f"ref.png ({expected}); " + "; ".join(bad)
            )
        for array in patches.values():
            array.flags.writeable = False
        if key is not None:
            LOADED.put(key, dict(patches), sum(a.nbytes for a in patches.values()))
        return patches

    def patch_count(self, sequence: str) -> int:
        """Patches in the sequence's ``ref.png`` (from its header when it is a PNG)."""
        path = self.root / sequence / "ref.png"
        if not path.is_file():
            raise DatasetError(f"missing patch file {path}")
        try:
            return png_size(path)[1] // PATCH
        except DatasetError:
            return len(read_patch_file(path))


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

    def open(self, data_dir: Path, progress: bool = True):
        """The dataset object; ``progress`` False keeps generation and downloads quiet (``-q``)."""
        raise NotImplementedError

    def availability(self, data_dir: Path) -> str | None:
        return None

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        raise NotImplementedError(f"dataset {self.name!r} has no download")
