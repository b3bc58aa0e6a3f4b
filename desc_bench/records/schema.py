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
READABLE_SCHEMAS = (1,)  # record schema versions this code reads (SCHEMA_VERSION and older ones)


def _finite(value: float) -> bool:
    """math.isfinite that also takes integers too large for a float (JSON allows them): not finite."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


@dataclass(frozen=True)
class Units:
    """The per-unit values a row's value is the (weighted) mean of: what its interval resamples.

    ``kind`` names the independent unit ("sequence", "query", "pair"); ``names`` identify the units
    (two rows are paired on them); ``weights`` (empty: all 1) are e.g. pairs per sequence, so that
    ``value == sum(w * v) / sum(w)``. Optional in records (older records have none).
    """

    kind: str
    names: tuple[str, ...]
    values: tuple[float, ...]
    weights: tuple[float, ...] = ()

    def __post_init__(self):
        for name in ("names", "values", "weights"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if len(self.names) != len(self.values) or (self.weights and len(self.weights) != len(self.values)):
            raise RecordError(
                f"units: {len(self.names)} names, {len(self.values)} values, {len(self.weights)} weights (must match)"
            )
        if not isinstance(self.kind, str) or not all(isinstance(n, str) for n in self.names):
            raise RecordError("units: kind and names must be strings")
        numbers = (*self.values, *self.weights)
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
            raise RecordError("units: values and weights must be numbers")
        if not all(_finite(v) for v in self.values) or not all(_finite(w) and w > 0 for w in self.weights):
            raise RecordError("units: values must be finite and weights finite and > 0")
        if len(set(self.names)) != len(self.names):
            raise RecordError("units: names must be unique (one value per unit)")

    def mean(self) -> float:
        if not self.values:
            return math.nan
        weights = self.weights or (1.0,) * len(self.values)
        return math.fsum(w * v for w, v in zip(weights, self.values)) / math.fsum(weights)


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
    units: Units | None = None  # per-unit values (the value is their mean); None: not decomposable
    interval: tuple[float, float] | None = None  # bootstrap confidence interval (low, high) of the value

    def __post_init__(self):
        if self.error is None and (self.value is None or not _finite(self.value)):
            raise RecordError(f"result row {self.key()} has no finite value and no error string")
        if isinstance(self.units, dict):  # as read from JSON or a score cache
            object.__setattr__(self, "units", Units(**self.units))
        if self.interval is not None:
            low, high = (float(v) for v in self.interval)
            if not (_finite(low) and _finite(high) and low <= high):
                raise RecordError(f"result row {self.key()}: interval {self.interval!r} must be finite, low <= high")
            object.__setattr__(self, "interval", (low, high))
        if self.units is not None and self.value is not None and self.units.values:
            mean = self.units.mean()
            if not math.isclose(mean, self.value, rel_tol=1e-6, abs_tol=1e-9):
                raise RecordError(
                    f"result row {self.key()}: value {self.value!r} is not the mean {mean!r} "
                    f"of its {self.units.kind} units"
                )

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
    """A fixed reference workload timed in the same process, to normalise speeds across machines.

    ``iqr_ms``: the spread of its repeats (None in records made before it was stored); a spread
    larger than the median says the machine was busy while it ran.
    """

    name: str
    median_ms: float
    iqr_ms: float | None = None


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


# ---- value ranges ---------------------------------------------------------------------------------
# Metrics whose values are fractions (AP, mAP, AUC, PCK, MMA, matching score and other ratios),
# by the name before "@" ("mma@3" -> "mma"); and counts. A benchmark adding a metric adds it here.
FRACTION_METRICS = frozenset(
    {"ap", "auc", "map", "mma", "pck", "matching-score", "repeatability", "fpr95", "snn-map", "accuracy"}
)
COUNT_METRICS = frozenset({"matches", "keypoints", "inliers"})
_SLACK = 1e-9  # floating-point rounding of a mean of fractions


def metric_range(metric: str) -> tuple[float, float] | None:
    """The closed range of a metric's values, or None for a metric without a known range."""
    base = metric.split("@", 1)[0]
    if base in FRACTION_METRICS:
        return (0.0, 1.0)
    if base in COUNT_METRICS:
        return (0.0, math.inf)
    return None


def result_problem(row: ResultRow) -> str | None:
    """What is wrong with a result row's value (None: nothing): not finite, or outside its metric's range."""
    if row.error is not None:
        return None if row.value is None or _finite(row.value) else f"value {row.value!r} is not finite"
    if row.value is None or not _finite(row.value):
        return f"value {row.value!r} is not a finite number and the row has no error string"
    bounds = metric_range(row.metric)
    if bounds and not bounds[0] - _SLACK <= row.value <= bounds[1] + _SLACK:
        return f"{row.metric} value {row.value!r} is outside its range {bounds[0]:g}..{bounds[1]:g}"
    return None


_TIMES = ("median_ms", "iqr_ms", "per_second", "peak_memory_mb", "first_call_ms", "median_ms_with_transfer")


def timing_problem(row: TimingRow) -> str | None:
    """What is wrong with a timing row (None: nothing): a time, rate or memory not finite and >= 0."""
    for name in _TIMES:
        value = getattr(row, name)
        if value is not None and not (_finite(value) and value >= 0):
            return f"{name} {value!r} must be a finite number >= 0"
    if row.batch < 1 or row.threads < 0 or row.repeats < 0:
        return f"batch {row.batch}, threads {row.threads}, repeats {row.repeats}: batch must be >= 1, the others >= 0"
    if row.error is None and row.median_ms is None:
        return "median_ms is missing and the row has no error string"
    return None


# ---- validation of raw JSON -----------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_TYPE_CHECKS = {  # dataclass field annotation -> (check, what it expects)
    "str": (lambda v: isinstance(v, str), "a string"),
    "str | None": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "float": (_is_number, "a number"),
    "float | None": (lambda v: v is None or _is_number(v), "a number or null"),
    "int": (lambda v: type(v) is int, "an integer"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "Units | None": (
        lambda v: v is None or (isinstance(v, dict) and {"kind", "names", "values"} <= v.keys() <= set(_UNIT_KEYS)),
        "null or an object with kind, names, values (and weights)",
    ),
    "tuple[float, float] | None": (
        lambda v: v is None or (isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_number(x) for x in v)),
        "null or [low, high]",
    ),
}
_UNIT_KEYS = ("kind", "names", "values", "weights")


def _check_object(obj: Any, cls: type, where: str) -> None:
    """Field names and JSON types of one row (or the calibration) against the dataclass ``cls``."""
    if not isinstance(obj, dict):
        raise RecordError(f"{where}: expected an object, got {type(obj).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    required = {n for n, f in fields.items() if f.default is dataclasses.MISSING}
    missing, unknown = required - obj.keys(), obj.keys() - fields.keys()
    if missing or unknown:
        raise RecordError(f"{where}: missing fields {sorted(missing)}, unknown fields {sorted(unknown)}")
    for name, value in obj.items():
        check, expected = _TYPE_CHECKS[fields[name].type]
        if not check(value):
            if cls is ResultRow and name == "value":
                raise RecordError(f"{where}: value must be a number unless error is set, got {value!r}")
            raise RecordError(f"{where}: field {name!r} must be {expected}, got {value!r}")


def _check_rows(rows: Any, cls: type, where: str) -> None:
    if not isinstance(rows, list):
        raise RecordError(f"{where}: expected a list")
    for i, raw in enumerate(rows):
        _check_object(raw, cls, f"{where}[{i}]")
        keys = ("descriptor", "dataset", "task", "metric", "noise", "variant", "subset")
        if cls is TimingRow:
            keys = ("descriptor", "device", "batch", "input_size", "unit")
        name = " / ".join(str(raw[k]) for k in keys if raw.get(k) not in (None, "", "all"))
        value = raw.get("value")
        if cls is ResultRow and raw.get("error") is None and (value is None or not _finite(value)):
            problem = f"value {value!r} is not a finite number and the row has no error string"
        else:
            try:
                problem = result_problem(ResultRow(**raw)) if cls is ResultRow else timing_problem(TimingRow(**raw))
            except (RecordError, TypeError, ValueError) as exc:
                problem = str(exc)
        if problem:
            raise RecordError(f"{where}[{i}] ({name}): {problem}")


def validate(raw: Any, source: str = "record") -> None:
    """Raise RecordError, naming ``source``, unless ``raw`` is a valid record of a schema this version reads.

    Checked: the schema version, the metadata keys, every row's fields and JSON types, accuracy
    values finite and inside their metric's range (:func:`metric_range`), timings finite and >= 0,
    and the calibration (name, median_ms > 0).
    """
    if not isinstance(raw, dict):
        raise RecordError(f"{source}: a record is a JSON object")
    version = raw.get("schema")
    if type(version) is not int or version not in READABLE_SCHEMAS:
        found = "no schema version" if "schema" not in raw else f"record schema {version!r}"
        raise RecordError(
            f"{source}: {found}; this desc-bench reads record schema "
            f"{', '.join(map(str, READABLE_SCHEMAS))}: make the record again with this version, or use the "
            "desc-bench version that wrote it"
        )
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
    calibration = raw.get("calibration")
    if calibration is not None:
        _check_object(calibration, Calibration, f"{source}: calibration")
        cal = Calibration(**calibration)
        if not (_finite(cal.median_ms) and cal.median_ms > 0) or not (
            cal.iqr_ms is None or (_finite(cal.iqr_ms) and cal.iqr_ms >= 0)
        ):
            raise RecordError(
                f"{source}: calibration median_ms {cal.median_ms!r} must be finite and > 0 "
                f"(iqr_ms {cal.iqr_ms!r} finite and >= 0)"
            )


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


# Distributions whose version changes numbers (descriptors, matching, estimators); the record lists
# those installed, so ``check`` and ``report`` can warn when a run and its baseline differ.
NUMERIC_LIBRARIES = (
    "numpy",
    "scipy",
    "opencv-python",
    "opencv-contrib-python",
    "opencv-python-headless",
    "opencv-contrib-python-headless",
    "poselib",
    "pycolmap",
    "faiss-cpu",
    "faiss-gpu",
    "scikit-learn",
    "kornia",
)


def library_versions() -> dict[str, str]:
    """Installed versions of :data:`NUMERIC_LIBRARIES` (from package metadata: nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in NUMERIC_LIBRARIES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


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
        "libraries": library_versions(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        meta["gpu"] = torch.cuda.get_device_name(torch.device(device))
    meta.update(extra)
    return meta
