"""The Brown / UBC PhotoTour layout: reading it lazily and fast, caching it, writing it.

The original layout of one subset (the folder of one extracted archive)::

    patches0000.bmp ...   1024x1024 8-bit gray mosaics of 16x16 patches of 64x64, row-major; files in
                          name order; patch k is file k // 256, row (k % 256) // 16, column k % 16;
                          the last file is partly empty
    info.txt              one line per patch: 3D point id, (unused)
    interest.txt          one line per patch: reference image id, x, y, orientation, scale
    m50_N_N_0.txt         pairs ``patch1 point1 unused patch2 point2 unused``; a match iff the two
                          point ids are equal; the standard test file is m50_100000_100000_0.txt
                          (100,000 pairs, half of them matching)

:class:`BrownSubset` loads lazily: nothing is read until an attribute is used. The first use of
``patches`` decodes the BMP mosaics with OpenCV (in threads) and reshapes each into its 256 patches
with numpy strides (no loop per patch), writing them into ``.cache/patches-<key>.npy`` next to the
data (``<cache root>/brown/`` when that folder is read-only), atomically; later uses memory-map that
file. The text files are parsed once into ``.cache/meta-<key>.npz``. ``<key>`` hashes the names,
sizes and modification times of the data files and the downloaded archive's MANIFEST.json (with its
md5), so an edited or replaced file is read again. :func:`write_subset` writes the same layout
(used by the embedded ``brown-synth`` generator and by tests).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from ..errors import DatasetError
from ..io.atomic import atomic_path
from ..io.paths import cache_root

KIND = "brown"
SUBSETS = ("liberty", "notredame", "yosemite")
PATCH = 64  # Brown patches are 64x64
GRID = 16  # a mosaic holds GRID x GRID patches
PER_FILE = GRID * GRID
MOSAIC = PATCH * GRID
TEST_PAIRS = "m50_100000_100000_0.txt"
READER_VERSION = "1"  # part of the cache key: bump when the reader's output changes
_MOSAIC_NAME = re.compile(r"patches\d+\.bmp")


@dataclass(frozen=True)
class BrownPairs:
    """A pair file: ``patch1``, ``patch2`` ``(M,)`` int64 patch indices, ``is_match`` ``(M,)`` bool."""

    patch1: np.ndarray
    patch2: np.ndarray
    is_match: np.ndarray

    def __len__(self) -> int:
        return len(self.is_match)


# ------------------------------------------------------------------------------------- reading


def mosaic_files(folder: Path) -> list[Path]:
    """The ``patchesNNNN.bmp`` files of a subset folder, in name order."""
    return sorted(p for p in Path(folder).iterdir() if _MOSAIC_NAME.fullmatch(p.name))


def read_column(path: Path, what: str) -> np.ndarray:
    """The first column of a whitespace-separated text file as ``(N,)`` int64; errors name the file."""
    if not path.is_file():
        raise DatasetError(f"missing {what} file {path}")
    try:
        return np.atleast_1d(np.loadtxt(path, usecols=0, dtype=np.int64, ndmin=1))
    except ValueError as exc:
        raise DatasetError(f"malformed {what} file {path}: {exc}") from None


def read_pairs(path: Path, count: int) -> BrownPairs:
    """Read an ``m50_*`` pair file; ``count`` patches exist (indices are checked against it)."""
    if not path.is_file():
        raise DatasetError(f"missing pair file {path}")
    try:
        table = np.loadtxt(path, usecols=(0, 1, 3, 4), dtype=np.int64, ndmin=2)
    except ValueError as exc:
        raise DatasetError(
            f"malformed pair file {path} (expected lines 'patch1 point1 unused patch2 point2 unused'): {exc}"
        ) from None
    if len(table) == 0:
        raise DatasetError(f"pair file {path} is empty")
    patches = table[:, [0, 2]]
    if patches.min() < 0 or patches.max() >= count:
        raise DatasetError(f"pair file {path} names patch {int(patches.max())}; the subset has {count} patches")
    return BrownPairs(table[:, 0].copy(), table[:, 2].copy(), table[:, 1] == table[:, 3])


def _decode(path: Path, out: np.ndarray) -> None:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise DatasetError(f"cannot read patch mosaic {path} (not a readable BMP image)")
    if image.shape != (MOSAIC, MOSAIC):
        found = f"{image.shape[1]}x{image.shape[0]}"
        raise DatasetError(f"malformed patch mosaic {path}: expected {MOSAIC}x{MOSAIC} pixels, found {found}")
    # (16 rows, 64 px, 16 columns, 64 px) -> (16, 16, 64, 64): a stride permutation, then one copy
    tiles = image.reshape(GRID, PATCH, GRID, PATCH).swapaxes(1, 2).reshape(PER_FILE, PATCH, PATCH)
    out[:] = tiles[: len(out)]


def decode_mosaics(files: list[Path], count: int, out: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Decode the first ``count`` patches of ``files`` into ``out`` ``(count, 64, 64)`` uint8."""
    needed = math.ceil(count / PER_FILE)
    if len(files) < needed:
        raise DatasetError(
            f"{count} patches need {needed} patch mosaics (patchesNNNN.bmp); found {len(files)} in "
            f"{files[0].parent if files else 'the folder'}"
        )
    jobs = [(files[k], out[k * PER_FILE : min(count, (k + 1) * PER_FILE)]) for k in range(needed)]
    workers = threads or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:  # cv2.imread releases the GIL
        for future in [pool.submit(_decode, path, part) for path, part in jobs]:
            future.result()
    return out


def data_files(folder: Path, test_file: str) -> list[Path]:
    """The files a subset's arrays are read from (what the cache key covers)."""
    names = ["info.txt", "interest.txt", test_file]
    return mosaic_files(folder) + [folder / n for n in names if (folder / n).is_file()]


def files_key(folder: Path, test_file: str) -> str:
    """Hash of the reader version, the archive md5 (when downloaded) and the data files' names, sizes, mtimes."""
    h = hashlib.sha256(f"brown-reader-{READER_VERSION}".encode())
    manifest = folder / "MANIFEST.json"
    if manifest.is_file():
        h.update(manifest.read_bytes())
    for path in data_files(folder, test_file):
        stat = path.stat()
        h.update(f"{path.name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------------- datasets


@dataclass(frozen=True, eq=False)
class BrownSubset:
    """One Brown subset in the original layout; arrays load on first use (see the module docstring).

    ``subset`` is the name a descriptor's training set is compared with (``WeightFile.trained_on``):
    "liberty", "notredame" or "yosemite". ``synthetic`` marks a generated stand-in (``brown-synth``),
    whose subsets carry the real names so tables keep the paper's layout, but which no weights saw.
    """

    name: str  # e.g. "liberty"
    root: Path
    test_file: str = TEST_PAIRS
    synthetic: bool = False
    content_version: str = ""  # generated sets: a hash of their content (else sizes and mtimes are used)

    @property
    def subset(self) -> str:
        return self.name

    @cached_property
    def version(self) -> str:
        """Identifies the data: a hash of the data files (names, sizes, mtimes) and the archive md5."""
        if self.content_version:
            return self.content_version
        return f"{self.name}-{files_key(self.root, self.test_file)}"

    def files(self) -> list[Path]:
        return data_files(self.root, self.test_file)

    @cached_property
    def _meta(self) -> dict[str, np.ndarray]:
        path = self._cache_file("meta", ".npz")
        if path.is_file():
            try:
                with np.load(path) as stored:
                    return {k: stored[k] for k in stored.files}
            except (OSError, ValueError):
                pass  # damaged: read the text files again
        points = read_column(self.root / "info.txt", "info")
        pairs = read_pairs(self.root / self.test_file, len(points))
        meta = {"point_ids": points, "pairs": np.stack([pairs.patch1, pairs.patch2, pairs.is_match], 1)}
        if (self.root / "interest.txt").is_file():
            images = read_column(self.root / "interest.txt", "interest")
            if len(images) != len(points):
                raise DatasetError(
                    f"{self.root / 'interest.txt'} has {len(images)} lines; info.txt has {len(points)} (one per patch)"
                )
            meta["image_ids"] = images
        self._store(path, lambda tmp: np.savez(tmp, **meta))
        return meta

    def __len__(self) -> int:
        return len(self.point_ids)

    @property
    def point_ids(self) -> np.ndarray:
        """``(N,)`` int64 3D point id of each patch (info.txt column 0)."""
        return self._meta["point_ids"]

    @property
    def image_ids(self) -> np.ndarray:
        """``(N,)`` int64 reference image id of each patch (interest.txt column 0)."""
        if "image_ids" not in self._meta:
            raise DatasetError(
                f"{self.root / 'interest.txt'} is missing: the reference image ids (needed by brown-snn-map) come "
                "from it; download the subset again with `desc-bench data download brown-" + self.name + "`"
            )
        return self._meta["image_ids"]

    @property
    def pairs(self) -> BrownPairs:
        """The test pairs of ``test_file`` (100,000 for the real subsets)."""
        table = self._meta["pairs"]
        return BrownPairs(table[:, 0], table[:, 1], table[:, 2].astype(bool))

    @cached_property
    def patches(self) -> np.ndarray:
        """``(N, 64, 64)`` uint8, memory-mapped from the cache (decoded and cached on first use)."""
        path = self._cache_file("patches", ".npy")
        count = len(self)
        if path.is_file():
            try:
                stored = np.load(path, mmap_mode="r")
                if stored.shape == (count, PATCH, PATCH) and stored.dtype == np.uint8:
                    return stored
            except (OSError, ValueError):
                pass  # damaged or truncated: decode again

        def write(tmp: Path) -> None:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(count, PATCH, PATCH))
            decode_mosaics(mosaic_files(self.root), count, out)
            out.flush()
            del out

        return np.load(self._store(path, write), mmap_mode="r")

    # ---- cache --------------------------------------------------------------------------------
    def _cache_dirs(self) -> list[Path]:
        fallback = cache_root() / "brown" / hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:12]
        return [self.root / ".cache", fallback]

    def _cache_file(self, stem: str, suffix: str) -> Path:
        key = files_key(self.root, self.test_file)
        for folder in self._cache_dirs():
            if (folder / f"{stem}-{key}{suffix}").is_file():
                return folder / f"{stem}-{key}{suffix}"
        return self._cache_dirs()[0] / f"{stem}-{key}{suffix}"

    def _store(self, path: Path, write) -> Path:
        """Write a cache file atomically (in its folder, else the fallback); remove copies with other
        keys; return where it was written."""
        failure = None
        for folder in dict.fromkeys([path.parent, *self._cache_dirs()]):
            target = folder / path.name
            try:
                with atomic_path(target, suffix=path.suffix) as tmp:
                    write(tmp)
            except OSError as exc:  # a read-only data folder: try the cache root
                failure = exc
                continue
            stem = path.name.split("-", 1)[0]
            for old in folder.glob(f"{stem}-*{path.suffix}"):
                if old.name != path.name:
                    old.unlink(missing_ok=True)
            return target
        raise DatasetError(
            f"cannot write the Brown patch cache in {path.parent} or {self._cache_dirs()[-1]} ({failure}); "
            "set DESC_BENCH_CACHE to a writable folder"
        )


@dataclass(frozen=True, eq=False)
class BrownSet:
    """A dataset of kind ``"brown"``: one or several subsets, evaluated one by one."""

    name: str  # "brown-liberty", "brown", "brown-synth"
    subsets: tuple[BrownSubset, ...]

    @property
    def version(self) -> str:
        return hashlib.sha256("\n".join(s.version for s in self.subsets).encode()).hexdigest()[:16]

    @property
    def synthetic(self) -> bool:
        return all(s.synthetic for s in self.subsets)

    def subset(self, name: str) -> BrownSubset:
        for s in self.subsets:
            if s.name == name:
                return s
        raise DatasetError(f"dataset {self.name!r} has no subset {name!r}; it has {', '.join(self.names())}")

    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.subsets)


def is_subset_folder(folder: Path, test_file: str = TEST_PAIRS) -> bool:
    return (folder / "info.txt").is_file() and (folder / "patches0000.bmp").is_file() and (folder / test_file).is_file()


def write_subset(
    folder: Path,
    patches: np.ndarray,
    point_ids: np.ndarray,
    interest: np.ndarray,
    pairs: BrownPairs,
    test_file: str = TEST_PAIRS,
) -> Path:
    """Write a subset in the original layout into ``folder`` (plain writes: callers stage and rename).

    ``patches`` ``(N, 64, 64)`` uint8; ``point_ids`` ``(N,)``; ``interest`` ``(N, 5)`` reference image
    id, x, y, orientation, scale; ``pairs`` the test pairs (their point columns are ``point_ids``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    count = len(patches)
    if patches.shape[1:] != (PATCH, PATCH) or patches.dtype != np.uint8:
        raise DatasetError(f"Brown patches must be (N, {PATCH}, {PATCH}) uint8; got {patches.shape} {patches.dtype}")
    for k in range(math.ceil(count / PER_FILE)):
        tiles = np.zeros((PER_FILE, PATCH, PATCH), np.uint8)
        part = patches[k * PER_FILE : (k + 1) * PER_FILE]
        tiles[: len(part)] = part
        mosaic = tiles.reshape(GRID, GRID, PATCH, PATCH).swapaxes(1, 2).reshape(MOSAIC, MOSAIC)
        path = folder / f"patches{k:04d}.bmp"
        if not cv2.imwrite(str(path), mosaic):
            raise DatasetError(f"cannot write {path}")
    points = np.asarray(point_ids, dtype=np.int64)
    np.savetxt(folder / "info.txt", np.stack([points, np.zeros_like(points)], 1), fmt="%d")
    image = np.asarray(interest, dtype=np.float64)
    with open(folder / "interest.txt", "w") as out:
        for row in image:
            out.write(f"{int(row[0])} {row[1]:.2f} {row[2]:.2f} {row[3]:.4f} {row[4]:.4f}\n")
    p1, p2 = np.asarray(pairs.patch1, np.int64), np.asarray(pairs.patch2, np.int64)
    zeros = np.zeros_like(p1)
    np.savetxt(folder / test_file, np.stack([p1, points[p1], zeros, p2, points[p2], zeros], 1), fmt="%d")
    return folder
