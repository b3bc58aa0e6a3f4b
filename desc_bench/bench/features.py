"""The feature store: what a descriptor computed on a dataset, on disk, keyed by everything that
changes it, resumable per item.

Layout under the cache root (``DESC_BENCH_CACHE``, else ``~/.cache/desc-bench``)::

    features/<dataset>-<version>/<descriptor spec>-<key>/<extraction>/<item>.npz
    scores/<dataset>-<version>/<descriptor spec>-<key>/<benchmark>-<evaluation key>.json

``key`` hashes the weights checksum, the adapter's *code fingerprint* (its module sources and the
shared preparation code), the library versions and the device type; ``extraction`` names how
image features were made (detector, budget, resize rule, seed; ``patches`` for patch datasets).
Every item file records the fingerprint (names, sizes, modification times) of the dataset files it
was computed from: an edited patch file or image is a miss, so exactly that item is recomputed.
A damaged file is a miss too (one-line warning, recompute), never a crash or a stale number.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..adapters.base import Descriptor, Frames
from ..errors import DescBenchError
from ..io.atomic import write_json, write_npz

FINGERPRINT = "__fingerprint__"
_PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# Code every descriptor's output depends on besides its own module: the contract and the preparation.
_SHARED_CODE = ("adapters/base.py", "adapters/prepare.py", "imaging.py")


def stable_hash(*parts: object, length: int = 12) -> str:
    """A short hex digest of the string forms of ``parts``."""
    text = json.dumps([str(p) for p in parts], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def safe_name(name: str) -> str:
    """A file-system-safe spelling of a spec or item name."""
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", name)


@lru_cache(maxsize=512)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _digest(path: str) -> str | None:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return _file_digest(path, st.st_size, st.st_mtime_ns)


def source_fingerprint(paths: Iterable[Path | str]) -> str:
    """Digest of the contents of source files (missing ones are skipped); a file is re-read when its
    size or modification time changes."""
    digests = [f"{Path(p).name}:{d}" for p in sorted(map(str, paths)) if (d := _digest(p)) is not None]
    return stable_hash(*digests, length=16)


def class_sources(cls: type) -> list[Path]:
    """The source files of a class, of its bases (builtins have none) and of its ``code_modules``."""
    files = []
    modules = [sys.modules.get(klass.__module__) for klass in cls.__mro__]
    for module in [*modules, *getattr(cls, "code_modules", ())]:
        try:
            path = inspect.getsourcefile(module) if module is not None else None
        except TypeError:
            path = None
        if path and path not in files:
            files.append(path)
    return [Path(p) for p in files]


def code_fingerprint(cls: type) -> str:
    """Fingerprint of a descriptor class's code: its module(s) and the shared preparation code, so
    that editing an adapter recomputes that descriptor only (and editing the contract, all)."""
    return source_fingerprint([*class_sources(cls), *(_PACKAGE_ROOT / p for p in _SHARED_CODE)])


def files_fingerprint(paths: Iterable[Path | str]) -> str:
    """Names, sizes and modification times of dataset files (cheap: no content is read)."""
    parts = []
    for p in map(Path, paths):
        try:
            st = p.stat()
            parts.append(f"{p.name}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            parts.append(f"{p.name}:missing")
    return stable_hash(*parts, length=16)


@dataclass(frozen=True)
class Extraction:
    """How image features are made; part of the store key. ``patches`` for patch datasets."""

    name: str = "patches"  # e.g. "full-res", "gift-480", "msnet-640"
    detector: str = ""
    budget: int = 0
    seed: int = 0

    def key(self) -> str:
        if self.name == "patches":
            return "patches"
        return safe_name(f"{self.name}-{self.detector}-{self.budget}-{self.seed}")


@dataclass(frozen=True)
class ImageFeatures:
    """Keypoints of one image with their descriptors: ``xy (N, 2)``, optional ``scale``/``angle (N,)``
    (OpenCV conventions), ``descriptors (N, dim)`` (float32, or uint8 for binary descriptors)."""

    xy: np.ndarray
    descriptors: np.ndarray
    scale: np.ndarray | None = None
    angle: np.ndarray | None = None

    @property
    def frames(self) -> Frames:
        return Frames(self.xy, self.scale, self.angle)

    def __len__(self) -> int:
        return len(self.xy)

    def arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ImageFeatures:
        return cls(**{f.name: arrays.get(f.name) for f in dataclasses.fields(cls)})

    def subset(self, keep: np.ndarray) -> ImageFeatures:
        return ImageFeatures(**{k: v[keep] for k, v in self.arrays().items()})


@dataclass(frozen=True)
class FeatureKey:
    """Identity of one descriptor's features on one dataset."""

    dataset: str
    version: str
    spec: str  # descriptor with options, e.g. "sift-torch-mp:patch_size=32"
    digest: str  # weights checksum, code fingerprint, library and backend versions, device type

    def folder(self, root: Path, kind: str) -> Path:
        return root / kind / safe_name(f"{self.dataset}-{self.version}") / safe_name(f"{self.spec}-{self.digest}")


def feature_key(desc: Descriptor, dataset: str, version: str, device: str, libraries: Iterable[str] = ()) -> FeatureKey:
    """The store key of a built descriptor on a dataset."""
    weights = getattr(desc, "weights_checksum", None) or desc.weights_label
    digest = stable_hash(weights, code_fingerprint(type(desc)), device, *libraries, *desc.backend_versions())
    return FeatureKey(dataset, version, desc.describe(), digest)


@dataclass
class FeatureStore:
    """Per-item features of one descriptor on one dataset.

    ``overwrite`` recomputes every item; otherwise a stored item whose dataset fingerprint still
    matches is loaded and its ``compute`` is never called (so ``--re-eval`` calls no descriptor).
    ``computed`` counts the items computed in this run.
    """

    root: Path | None  # None: nothing is stored (every item is computed)
    key: FeatureKey
    overwrite: bool = False
    log: Callable[[str], None] = lambda _: None
    computed: int = field(default=0, init=False)

    def path(self, item: str, extraction: Extraction) -> Path | None:
        if self.root is None:
            return None
        return self.key.folder(self.root, "features") / extraction.key() / f"{safe_name(item)}.npz"

    def _load(self, path: Path | None, fingerprint: str) -> dict[str, np.ndarray] | None:
        if path is None or self.overwrite or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except (OSError, ValueError, EOFError) as exc:
            self.log(f"warning: damaged feature file {path} ({type(exc).__name__}); recomputing it")
            return None
        stored = arrays.pop(FINGERPRINT, None)
        if stored is None or str(stored) != fingerprint:
            return None  # the dataset item changed since: recompute
        return arrays

    def _save(self, path: Path | None, arrays: dict[str, np.ndarray], fingerprint: str) -> None:
        self.computed += 1
        if path is None:
            return
        try:
            self._write_manifest("features")
            write_npz(path, {**arrays, FINGERPRINT: np.array(fingerprint)})
        except OSError as exc:
            raise DescBenchError(f"cannot write the feature store at {path}: {exc}; set DESC_BENCH_CACHE") from None

    def arrays(
        self,
        item: str,
        files: Iterable[Path],
        compute: Callable[[], dict[str, np.ndarray]],
        extraction: Extraction = Extraction(),
    ) -> dict[str, np.ndarray]:
        """The arrays of ``item`` (computed from ``files``), loaded or computed and stored."""
        fingerprint = files_fingerprint(files)
        path = self.path(item, extraction)
        arrays = self._load(path, fingerprint)
        if arrays is None:
            arrays = {k: np.ascontiguousarray(v) for k, v in compute().items()}
            self._save(path, arrays, fingerprint)
        return arrays

    def image(
        self, item: str, files: Iterable[Path], compute: Callable[[], ImageFeatures], extraction: Extraction
    ) -> ImageFeatures:
        """Keypoints and descriptors of one image (or image variant) ``item``."""
        return ImageFeatures.from_arrays(self.arrays(item, files, lambda: compute().arrays(), extraction))

    def _write_manifest(self, kind: str) -> None:
        path = self.key.folder(self.root, kind) / MANIFEST
        if not path.is_file():
            write_json(path, {"dataset": self.key.dataset, "version": self.key.version, "descriptor": self.key.spec})

    # ---- evaluation results -------------------------------------------------------------------
    def score_path(self, benchmark: str, evaluation_key: str) -> Path | None:
        if self.root is None:
            return None
        return self.key.folder(self.root, "scores") / f"{safe_name(benchmark)}-{evaluation_key}.json"

    def load_scores(self, benchmark: str, evaluation_key: str) -> list[dict] | None:
        path = self.score_path(benchmark, evaluation_key)
        if path is None or self.overwrite or not path.is_file():
            return None
        try:
            rows = json.loads(path.read_text())
            if isinstance(rows, list) and all(isinstance(r, dict) for r in rows):
                return rows
        except (OSError, ValueError, RecursionError):
            pass
        self.log(f"warning: damaged score file {path}; recomputing it")
        return None

    def save_scores(self, benchmark: str, evaluation_key: str, rows: list[dict]) -> None:
        path = self.score_path(benchmark, evaluation_key)
        if path is None:
            return
        try:
            self._write_manifest("scores")
            write_json(path, rows)
        except OSError as exc:
            self.log(f"warning: cannot write the score cache ({exc}); results are not cached")


# ------------------------------------------------------------------------------ cache management

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class CacheEntry:
    """One descriptor's stored features or scores on one dataset (``desc-bench cache list``)."""

    kind: str  # "features" or "scores"
    dataset: str
    descriptor: str  # spec with options
    folder: Path
    files: int
    bytes: int


def _manifest(folder: Path) -> dict:
    try:
        data = json.loads((folder / MANIFEST).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def cache_entries(root: Path) -> list[CacheEntry]:
    """Every descriptor folder of the feature store and the score cache under ``root``."""
    out = []
    for kind in ("features", "scores"):
        for folder in sorted((root / kind).glob("*/*")):
            if not folder.is_dir():
                continue
            files = [p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST]
            meta = _manifest(folder)
            out.append(
                CacheEntry(
                    kind,
                    meta.get("dataset", folder.parent.name),
                    meta.get("descriptor", folder.name),
                    folder,
                    len(files),
                    sum(p.stat().st_size for p in files),
                )
            )
    return out


def clear_cache(root: Path, descriptor: str | None = None, dataset: str | None = None) -> list[CacheEntry]:
    """Delete the cached features and scores of a descriptor (its name, any options) and/or a dataset."""
    import shutil

    removed = []
    for entry in cache_entries(root):
        name = entry.descriptor.split(":")[0]
        if descriptor is not None and descriptor not in (name, entry.descriptor):
            continue
        if dataset is not None and entry.dataset != dataset:
            continue
        shutil.rmtree(entry.folder, ignore_errors=True)
        removed.append(entry)
    return removed
