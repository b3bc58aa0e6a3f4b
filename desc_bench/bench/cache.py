"""Descriptor and score caches: resumable, atomic, keyed by everything that changes the numbers.

Layout under the cache root (``DESC_BENCH_CACHE``, else ``~/.cache/desc-bench``)::

    descriptors/<dataset>-<version>/<descriptor spec>-<key>/<sequence>.npz   one file per sequence
    scores/<dataset>-<version>/<descriptor spec>-<key>/<evaluation key>.json

The key hashes the descriptor spec (name and options), the weights checksum and the extraction
configuration. A sequence file appears only once complete (atomic rename), so an interrupted run
resumes at the first sequence that is missing.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError
from ..io.atomic import write_json, write_npz


def stable_hash(*parts: object, length: int = 12) -> str:
    text = json.dumps([str(p) for p in parts], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", name)


@dataclass(frozen=True)
class DescriptorCache:
    """Per-sequence descriptor arrays of one descriptor on one dataset."""

    root: Path
    dataset: str
    version: str
    spec: str  # descriptor name with options, e.g. "sift-torch-mp:patch_size=32"
    key: str  # hash of weights checksum and extraction config

    @property
    def folder(self) -> Path:
        return self.root / "descriptors" / _safe(f"{self.dataset}-{self.version}") / _safe(f"{self.spec}-{self.key}")

    def path(self, sequence: str) -> Path:
        return self.folder / f"{_safe(sequence)}.npz"

    def has(self, sequence: str) -> bool:
        return self.path(sequence).is_file()

    def load(self, sequence: str) -> dict[str, np.ndarray]:
        path = self.path(sequence)
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except (OSError, ValueError) as exc:
            raise DatasetError(f"corrupt descriptor cache file {path} ({exc}); rerun with --overwrite") from None

    def save(self, sequence: str, arrays: dict[str, np.ndarray]) -> None:
        write_npz(self.path(sequence), arrays)

    def score_path(self, evaluation_key: str) -> Path:
        return (
            self.root
            / "scores"
            / _safe(f"{self.dataset}-{self.version}")
            / _safe(f"{self.spec}-{self.key}")
            / f"{evaluation_key}.json"
        )

    def load_scores(self, evaluation_key: str) -> list[dict] | None:
        path = self.score_path(evaluation_key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None  # a damaged score cache is recomputed

    def save_scores(self, evaluation_key: str, rows: list[dict]) -> None:
        write_json(self.score_path(evaluation_key), rows)
