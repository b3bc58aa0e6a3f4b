"""Descriptors in the official hpatches-benchmark layout: ``DIR/<seq>/<type>.csv``, one row per patch.

``export_descriptors`` writes that layout for any registered descriptor (``desc-bench export``);
``read_descriptor_dir`` reads it back for ``desc-bench evaluate`` (bring your own descriptors).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..adapters.base import Descriptor
from ..datasets.base import PATCH_TYPES, PatchSet
from ..errors import DatasetError
from ..io.atomic import atomic_path


def _write_csv(path: Path, array: np.ndarray) -> None:
    fmt = "%d" if array.dtype == np.uint8 else "%.8g"
    with atomic_path(path, suffix=".csv") as tmp:
        np.savetxt(tmp, array, delimiter=",", fmt=fmt)


def export_descriptors(
    desc: Descriptor, patchset: PatchSet, out_dir: Path, sequences=None, overwrite: bool = False, progress: bool = True
) -> Path:
    """Describe the sequences and write ``out_dir/<seq>/<type>.csv``; finished sequences are kept."""
    from .benchmarks.hpatches import describe_sequence

    out_dir = Path(out_dir)
    for seq in tqdm(
        sequences or patchset.sequence_names(), desc=f"export {desc.describe()}", unit="seq", disable=not progress
    ):
        folder = out_dir / seq
        if not overwrite and all((folder / f"{t}.csv").is_file() for t in PATCH_TYPES):
            continue
        for t, array in describe_sequence(desc, patchset.load(seq)).items():
            _write_csv(folder / f"{t}.csv", array)
    return out_dir


def read_descriptor_dir(root: Path, binary: bool = False, progress: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Read ``root/<seq>/<type>.csv`` for every sequence folder; errors name the bad file."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"descriptor folder {root} does not exist")
    sequences = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not sequences:
        raise DatasetError(f"descriptor folder {root} holds no sequence folders (expected {root}/<seq>/<type>.csv)")
    out: dict[str, dict[str, np.ndarray]] = {}
    for seq in tqdm(sequences, desc="read descriptors", unit="seq", disable=not progress):
        arrays = {}
        for t in PATCH_TYPES:
            path = root / seq / f"{t}.csv"
            if not path.is_file():
                raise DatasetError(f"missing descriptor file {path} (every sequence needs {', '.join(PATCH_TYPES)})")
            try:
                values = pd.read_csv(path, header=None, dtype=np.float64).to_numpy()
            except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
                raise DatasetError(f"cannot parse descriptor file {path}: {exc}") from None
            if not np.isfinite(values).all():
                raise DatasetError(f"descriptor file {path} contains NaN or infinite values")
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
            )
        out[seq] = arrays
    return out
