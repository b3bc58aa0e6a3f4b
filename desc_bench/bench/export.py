"""Descriptors in the official hpatches-benchmark layout: ``DIR/<seq>/<type>.csv``, one row per patch.

``export_descriptors`` writes that layout for any registered descriptor (``desc-bench export``),
plus a small manifest ``DIR/desc-bench-export.json`` (dataset, its version, descriptor, distance
and each sequence's patch count) so that ``desc-bench evaluate`` scores the files on the dataset
they were made from, with the descriptor's distance, and refuses files whose row counts changed.
``read_descriptor_dir`` reads the layout back (bring your own descriptors: the manifest is optional).

CSV files: one patch a row, ``D`` comma-separated numbers (floats, or the integers 0..255 of packed
bits for Hamming descriptors), no header; row ``i`` of ``<type>.csv`` is patch ``i`` of
``<type>.png`` (the release's stacking order), so a sequence with ``N`` patches has ``N`` rows in
each of its 16 files.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..adapters.base import Descriptor
from ..datasets.base import PATCH_TYPES, PatchSet
from ..errors import DatasetError
from ..io.atomic import atomic_path, write_json
from ..io.progress import bar
from .executors import Executor

MANIFEST_NAME = "desc-bench-export.json"
MANIFEST_FORMAT = "desc-bench export"
MANIFEST_VERSION = 1


@dataclass(frozen=True)
class ExportManifest:
    """What an export folder holds: ``patch_counts`` maps each sequence to its number of rows."""

    dataset: str
    dataset_version: str
    descriptor: str
    distance: str  # "l2", "l1" or "hamming": the descriptor's own distance
    patch_counts: Mapping[str, int] = field(default_factory=dict, hash=False)

    def to_json(self) -> dict:
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "dataset": self.dataset,
            "dataset_version": self.dataset_version,
            "descriptor": self.descriptor,
            "distance": self.distance,
            "patch_counts": dict(self.patch_counts),
        }


def read_manifest(root: Path | str) -> ExportManifest | None:
    """The manifest of an export folder; None when the folder has none (descriptors made elsewhere)."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        return None
    fix = f"delete {path} (the CSV files are then read without it) or export again"
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DatasetError(f"cannot read export manifest {path}: {exc}; {fix}") from None
    if not isinstance(raw, dict) or raw.get("format") != MANIFEST_FORMAT:
        raise DatasetError(f"{path} is not a desc-bench export manifest; {fix}")
    if raw.get("version") != MANIFEST_VERSION:
        raise DatasetError(
            f"export manifest {path} has version {raw.get('version')!r}; this desc-bench reads version "
            f"{MANIFEST_VERSION}; {fix}"
        )
    strings = ("dataset", "dataset_version", "descriptor", "distance")
    counts = raw.get("patch_counts")
    if any(not isinstance(raw.get(k), str) for k in strings) or not isinstance(counts, dict):
        raise DatasetError(f"export manifest {path} lacks {', '.join(strings)} or patch_counts; {fix}")
    if any(type(n) is not int or n < 0 for n in counts.values()):
        raise DatasetError(f"export manifest {path}: patch_counts must be non-negative integers; {fix}")
    return ExportManifest(*(raw[k] for k in strings), patch_counts=dict(counts))


def _write_csv(path: Path, array: np.ndarray) -> None:
    fmt = "%d" if array.dtype == np.uint8 else "%.8g"
    with atomic_path(path, suffix=".csv") as tmp:
        np.savetxt(tmp, array, delimiter=",", fmt=fmt)


def export_descriptors(
    desc: Descriptor,
    patchset: PatchSet,
    out_dir: Path,
    sequences=None,
    overwrite: bool = False,
    progress: bool = True,
    executor: Executor | None = None,
    spec: str | None = None,
    weights: str | None = None,
) -> Path:
    """Describe the sequences and write ``out_dir/<seq>/<type>.csv`` and the manifest.

    Finished sequences are kept (an interrupted export resumes) unless ``overwrite``; a folder
    holding another descriptor's or dataset's export is refused instead of being mixed into.
    ``executor`` (default: serial) describes the sequences, on a Ray cluster say; a worker rebuilds
    the descriptor from ``spec`` (default: its label) and ``weights``.
    """
    from .benchmarks.hpatches import describe_sequence

    out_dir = Path(out_dir)
    sequences = tuple(sequences or patchset.sequence_names())
    manifest = ExportManifest(
        dataset=patchset.name,
        dataset_version=patchset.version,
        descriptor=desc.describe(),
        distance=desc.distance.value,
        patch_counts={seq: patchset.patch_count(seq) for seq in sequences},
    )
    old = read_manifest(out_dir)
    if old is not None and not overwrite:
        mine = (manifest.descriptor, manifest.dataset, manifest.dataset_version)
        if (old.descriptor, old.dataset, old.dataset_version) != mine:
            raise DatasetError(
                f"{out_dir} holds an export of {old.descriptor} on {old.dataset} ({old.dataset_version}); "
                f"pass --overwrite to replace it with {manifest.descriptor} on {manifest.dataset}, or choose "
                "another folder"
            )
        manifest = dataclasses.replace(manifest, patch_counts={**old.patch_counts, **manifest.patch_counts})
    write_json(out_dir / MANIFEST_NAME, manifest.to_json())
    todo = [s for s in sequences if overwrite or not all((out_dir / s / f"{t}.csv").is_file() for t in PATCH_TYPES)]
    items = [(seq, lambda seq=seq: describe_sequence(desc, patchset.load(seq))) for seq in todo]
    described = (executor or Executor()).describe_items(desc, spec or desc.describe(), weights, patchset, items)
    for seq, arrays in bar(described, total=len(todo), desc=f"export {desc.describe()}", unit="seq", enabled=progress):
        for t, array in arrays.items():
            _write_csv(out_dir / seq / f"{t}.csv", array)
    return out_dir


# ---- reading ------------------------------------------------------------------------------------
def _first_bad_line(path: Path) -> str | None:
    """Why the CSV at ``path`` does not parse as a rectangle of finite numbers, with the line (slow path)."""
    width = None
    with open(path, errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.rstrip("\r\n").split(",")
            if width is None:
                width, first = len(fields), number
            if len(fields) != width:
                return f"ragged row: line {number} has {len(fields)} values, line {first} has {width}"
            for column, text in enumerate(fields, 1):
                try:
                    value = float(text)
                except ValueError:
                    return f"line {number}, value {column} is not a number: {text.strip()[:20]!r}"
                if not math.isfinite(value):
                    return f"line {number}, value {column} is NaN or infinite ({text.strip()!r})"
    return None


def read_csv_descriptors(path: Path) -> np.ndarray:
    """One descriptor file as ``(N, D)`` float64; errors name the file and the first bad line."""
    try:
        values = pd.read_csv(path, header=None, dtype=np.float64).to_numpy()
    except pd.errors.EmptyDataError:
        raise DatasetError(f"descriptor file {path} is empty (expected one row per patch)") from None
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        reason = _first_bad_line(path) or str(exc)
        raise DatasetError(f"cannot parse descriptor file {path}: {reason}") from None
    if not np.isfinite(values).all():  # a short row is filled with NaN by the parser: say which it was
        reason = _first_bad_line(path) or "NaN or infinite values"
        raise DatasetError(f"descriptor file {path}: {reason}")
    return values


def _sequence_folders(root: Path) -> list[str]:
    """Sub-folders that hold descriptor files (other folders beside the sequences are ignored)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and any((p / f"{t}.csv").is_file() for t in PATCH_TYPES))


def read_descriptor_dir(
    root: Path,
    binary: bool = False,
    progress: bool = True,
    sequences: Sequence[str] | None = None,
    expected_counts: Mapping[str, int] | None = None,
    counts_source: str = "the dataset",
) -> dict[str, dict[str, np.ndarray]]:
    """Read ``root/<seq>/<type>.csv``: type -> ``(N, D)`` float32 (uint8 when ``binary``) per sequence.

    ``sequences``: the ones to read (default: every sub-folder holding descriptor files; other
    folders are ignored). ``expected_counts``: sequence -> patch count; a file with another number
    of rows is refused, naming ``counts_source``. Errors name the bad file.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"descriptor folder {root} does not exist")
    if sequences is None:
        sequences = _sequence_folders(root)
        if not sequences:
            raise DatasetError(f"descriptor folder {root} holds no sequence folders (expected {root}/<seq>/<type>.csv)")
    missing = [s for s in sequences if not (root / s).is_dir()]
    if missing:
        raise DatasetError(
            f"{len(missing)} sequence(s) needed are missing from {root}: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    out: dict[str, dict[str, np.ndarray]] = {}
    for seq in bar(sequences, desc="read descriptors", unit="seq", enabled=progress):
        arrays = {}
        for t in PATCH_TYPES:
            path = root / seq / f"{t}.csv"
            if not path.is_file():
                raise DatasetError(f"missing descriptor file {path} (every sequence needs {', '.join(PATCH_TYPES)})")
            values = read_csv_descriptors(path)
            expected = None if expected_counts is None else expected_counts.get(seq)
            if expected is not None and len(values) != expected:
                raise DatasetError(
                    f"descriptor file {path} has {len(values)} rows, but sequence {seq} has {expected} patches "
                    f"in {counts_source}: one row per patch, in the order of {t}.png"
                )
            if binary and not (np.array_equal(values, np.round(values)) and values.min() >= 0 and values.max() <= 255):
                raise DatasetError(
                    f"descriptor file {path}: Hamming distance needs packed bytes (integers "
                    "0..255), found other values; use --distance l2 or l1 for float descriptors"
                )
            arrays[t] = values.astype(np.uint8) if binary else values.astype(np.float32)
        shapes = {t: a.shape for t, a in arrays.items()}
        if len(set(shapes.values())) != 1:
            raise DatasetError(
                f"sequence {seq}: descriptor files differ in shape: "
                + ", ".join(f"{t}.csv {s}" for t, s in shapes.items() if s != shapes["ref"])
                + f" (ref.csv {shapes['ref']})"
            )
        out[seq] = arrays
    return out
