"""Result records: one JSON object ``{"metadata": ..., "results": [...], "timings": [...]}`` per run.

Result rows carry descriptor, weights, dataset, split, protocol, task, metric (plus the noise
level and the i/v subset for HPatches), value, and an error string instead of a silent NaN.
Timing rows carry device, batch, patch size, median and IQR, throughput and peak memory.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RecordError

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ResultRow:
    descriptor: str
    weights: str
    dataset: str
    split: str
    protocol: str  # e.g. "python", "matlab", "mma", "pck-gift"
    task: str  # e.g. "verification", "matching", "retrieval", "pck"
    metric: str  # e.g. "ap", "auc", "map", "pck@5"
    value: float | None
    noise: str = ""  # "easy", "hard", "tough", "mean" for HPatches, "" elsewhere
    subset: str = "all"  # "all", "i", "v", a sequence name, ...
    variant: str = ""  # e.g. "intra"/"inter", "balanced"/"imbalanced", "pool=1000"
    distance: str = ""  # "l2", "l1", "hamming": the distance that produced the number
    mode: str = "patches"  # how the descriptor ran: "patches", "dense-at-centre", "keypoints", ...
    error: str | None = None
    notes: str = ""  # e.g. "weights saw HPatches in training"

    def __post_init__(self):
        if self.error is None and (self.value is None or not math.isfinite(self.value)):
            raise RecordError(f"result row {self.key()} has no finite value and no error string")

    def key(self) -> tuple:
        """Identity of a row across runs (everything but the value)."""
        return (
            self.descriptor,
            self.weights,
            self.dataset,
            self.split,
            self.protocol,
            self.distance,
            self.task,
            self.metric,
            self.noise,
            self.subset,
            self.variant,
        )


@dataclass(frozen=True)
class TimingRow:
    descriptor: str
    weights: str
    device: str
    batch: int
    input_size: str  # "65" for patches, "1024x436" for dense images
    unit: str  # "patch" or "image"
    median_ms: float | None  # per unit
    iqr_ms: float | None
    per_second: float | None
    peak_memory_mb: float | None
    first_call_ms: float | None = None
    median_ms_with_transfer: float | None = None  # GPU: including the copy of the result to host
    fp16: bool = False
    threads: int = 0
    repeats: int = 0
    random_weights: bool = False
    error: str | None = None


@dataclass(frozen=True)
class Calibration:
    """A fixed reference workload timed in the same process, to normalise speeds across machines."""

    name: str
    median_ms: float


@dataclass
class Record:
    metadata: dict[str, Any]
    results: list[ResultRow] = field(default_factory=list)
    timings: list[TimingRow] = field(default_factory=list)
    calibration: Calibration | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "metadata": self.metadata,
            "results": [dataclasses.asdict(r) for r in self.results],
            "timings": [dataclasses.asdict(t) for t in self.timings],
            "calibration": dataclasses.asdict(self.calibration) if self.calibration else None,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any], source: str = "record") -> Record:
        validate(raw, source)
        return cls(
            metadata=raw["metadata"],
            results=[ResultRow(**r) for r in raw["results"]],
            timings=[TimingRow(**t) for t in raw.get("timings", [])],
            calibration=Calibration(**raw["calibration"]) if raw.get("calibration") else None,
        )


def _check_rows(rows: Any, cls: type, where: str) -> None:
    if not isinstance(rows, list):
        raise RecordError(f"{where}: expected a list")
    names = {f.name for f in dataclasses.fields(cls)}
    required = {
        f.name
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise RecordError(f"{where}[{i}]: expected an object, got {type(row).__name__}")
        missing, unknown = required - row.keys(), row.keys() - names
        if missing or unknown:
            raise RecordError(f"{where}[{i}]: missing fields {sorted(missing)}, unknown fields {sorted(unknown)}")
        value = row.get("value", 0.0) if cls is ResultRow else 0.0
        if cls is ResultRow and row.get("error") is None and not isinstance(value, (int, float)):
            raise RecordError(f"{where}[{i}]: value must be a number unless error is set")


def validate(raw: Any, source: str = "record") -> None:
    """Raise RecordError unless ``raw`` is a valid record."""
    if not isinstance(raw, dict):
        raise RecordError(f"{source}: a record is a JSON object")
    for key in ("metadata", "results"):
        if key not in raw:
            raise RecordError(f"{source}: missing {key!r}")
    if not isinstance(raw["metadata"], dict):
        raise RecordError(f"{source}: metadata must be an object")
    for key in ("time", "version", "git_commit", "platform", "python", "torch", "opencv", "device", "threads"):
        if key not in raw["metadata"]:
            raise RecordError(f"{source}: metadata lacks {key!r}")
    _check_rows(raw["results"], ResultRow, f"{source}: results")
    _check_rows(raw.get("timings", []), TimingRow, f"{source}: timings")


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def config_json(config: Any) -> dict[str, Any]:
    """A configuration dataclass as JSON-ready values (paths and other objects as strings)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        return str(value)

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def machine_metadata(device: str = "cpu", **extra: Any) -> dict[str, Any]:
    """Metadata of a run: time, versions, platform, device and thread count."""
    import cv2
    import torch

    from .._version import __version__

    meta = {
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "version": __version__,
        "git_commit": _git_commit(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "device": device,
        "threads": torch.get_num_threads(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        meta["gpu"] = torch.cuda.get_device_name(torch.device(device))
    meta.update(extra)
    return meta
