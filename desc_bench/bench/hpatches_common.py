"""Shared parts of the HPatches patch tasks: score rows, input checks, gathers, scaling, degeneracy.

Internal to :mod:`desc_bench.bench.hpatches_tasks`, which re-exports the public names (import
them from there). Shapes follow that module: ``descs[seq][type]`` is ``(N, D)`` with N the
sequence's patch count, the same for its 16 types.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..adapters.base import Distance
from ..datasets.base import PATCH_TYPES, Split
from ..datasets.tasks import TaskFiles
from ..errors import DatasetError, InputError, UnknownNameError
from ..io.progress import bar
from ..records.schema import Units

TASKS = ("verification", "matching", "retrieval")
PROTOCOLS = ("python", "matlab")
POOL_SIZES = (100, 500, 1000, 5000, 10000, 15000, 20000)
N_POSITIVES = 5  # retrieval: images 1..5 of the query's sequence
IMBALANCED_RATIO = 0.2
IMAGES = 6  # ref and images 1..5 of a noise level
# A score whose value moves by at least this much when exact ties are counted the other way is
# decided by the tie rule rather than by the descriptor: its row gets a "degenerate" note.
DEGENERATE_SWING = 0.05

Descs = Mapping[str, Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class Score:
    """One number of the HPatches tasks. ``value`` is a fraction (0..1).

    ``note`` is empty for a regular number; it starts with "degenerate:" when the descriptor is
    constant or when exact ties decide the number (see :func:`degenerate_note`); the runner puts
    it into the row's notes.
    """

    task: str  # verification | matching | retrieval
    metric: str  # ap | auc | map
    noise: str  # easy | hard | tough | mean
    subset: str  # all | i | v
    variant: str  # intra | inter | mean (verification); pool=K | pool=mean | pool=all (retrieval); ""
    value: float
    note: str = ""
    units: Units | None = None  # per-sequence values (value = their weighted mean), for intervals
    # pooled statistics (verification): row key -> the interval recomputed on resampled sequences
    pooled: Callable[[tuple], Any] | None = dataclasses.field(default=None, compare=False, repr=False)


def row_fields(score: Score | Mapping, notes: str = "") -> dict:
    """A score (or its ``dataclasses.asdict`` dict, as cached) as ResultRow fields: ``note`` joins ``notes``."""
    if isinstance(score, Score):
        score = {f.name: getattr(score, f.name) for f in dataclasses.fields(score)}
    fields = dict(score)
    fields.pop("pooled", None)
    note = fields.pop("note", "")
    fields["notes"] = "; ".join(part for part in (notes, note) if part)
    return fields


def type_name(noise: str, image: int) -> str:
    return "ref" if image == 0 else f"{noise}{image}"


@dataclass(frozen=True)
class Checked:
    """Validated descriptors (numpy arrays), their patch counts and the distance."""

    descs: dict[str, dict[str, np.ndarray]]
    counts: dict[str, int]
    distance: Distance


def check_descs(descs: Descs, sequences: Sequence[str], distance) -> Checked:
    try:
        distance = Distance(distance)
    except ValueError:
        raise UnknownNameError("distance", str(distance), [d.value for d in Distance]) from None
    out, counts, dim = {}, {}, None
    for seq in sequences:
        if seq not in descs:
            raise InputError(f"no descriptors for sequence {seq!r}, which the split uses")
        types = {}
        for t in PATCH_TYPES:
            if t not in descs[seq]:
                raise InputError(f"descriptors of sequence {seq!r} lack patch type {t!r}")
            arr = descs[seq][t]
            arr = arr.detach().cpu().numpy() if isinstance(arr, torch.Tensor) else np.asarray(arr)
            if arr.ndim != 2:
                raise InputError(f"descriptors {seq}/{t} must be (N, D); got shape {arr.shape}")
            if distance is Distance.HAMMING and arr.dtype != np.uint8:
                raise InputError(f"Hamming distance needs uint8 packed bits; {seq}/{t} is {arr.dtype}")
            if dim is None:
                dim = arr.shape[1]
            expected = (types["ref"].shape[0] if types else arr.shape[0], dim)
            if arr.shape != expected:
                raise InputError(f"descriptors {seq}/{t} have shape {arr.shape}; expected {expected}")
            types[t] = arr
        out[seq] = types
        counts[seq] = types["ref"].shape[0]
    return Checked(out, counts, distance)


def check_refs(chk: Checked, names: tuple[str, ...], codes: np.ndarray, idx: np.ndarray, where: str) -> None:
    used = np.unique(codes)
    missing = [names[c] for c in used if names[c] not in chk.counts]
    if missing:
        raise DatasetError(f"{where} refers to sequences without descriptors: {', '.join(missing[:5])}")
    limit = np.array([chk.counts.get(n, 0) for n in names], dtype=np.int64)[codes]
    bad = np.flatnonzero(idx >= limit)
    if len(bad):
        i = bad[0]
        raise DatasetError(
            f"{where} row {i + 1} refers to patch {idx[i]} of {names[codes[i]]}, which has {limit[i]} patches "
            f"(task files generated for a different dataset? regenerate them)"
        )


def check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise UnknownNameError("protocol", protocol, PROTOCOLS)


def resolve_split(split, tasks: TaskFiles | None) -> Split:
    if isinstance(split, Split):
        return split
    if tasks is None:
        raise InputError(f"split {split!r} given by name needs the task files to look it up")
    return tasks.split(str(split))


def progress_bar(iterable, progress: bool, **kw):
    return bar(iterable, enabled=progress, **kw)


# ---- stacked tables -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """Rows of a noise level's stacked table: sequence by sequence, ref then images 1..5.

    Patch ``idx`` of image ``t`` (0 = ref) of sequence ``s`` is row ``base[s] + t * count[s] + idx``.
    """

    sequences: tuple[str, ...]
    base: dict[str, int]

    @classmethod
    def of(cls, chk: Checked) -> Layout:
        base, start = {}, 0
        for seq, n in chk.counts.items():
            base[seq] = start
            start += IMAGES * n
        return cls(tuple(chk.counts), base)

    def rows(self, chk: Checked, names, codes: np.ndarray, images: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """(R,) int64 rows of patches (names[codes[r]], image images[r], idx[r])."""
        base = np.array([self.base.get(n, 0) for n in names], dtype=np.int64)
        count = np.array([chk.counts.get(n, 0) for n in names], dtype=np.int64)
        return base[codes] + images.astype(np.int64) * count[codes] + idx

    def table(self, chk: Checked, noise: str, out: np.ndarray | None = None) -> np.ndarray:
        """(sum of 6 N, D): all descriptors of one noise level (one copy; into ``out`` when given)."""
        parts = [chk.descs[s][type_name(noise, t)] for s in self.sequences for t in range(IMAGES)]
        if out is not None and out.shape == (sum(len(p) for p in parts), parts[0].shape[1]):
            if all(p.dtype == out.dtype for p in parts):
                return np.concatenate(parts, axis=0, out=out)
        return np.concatenate(parts, axis=0)


def gather(chk: Checked, names, codes, images, idx, noise: str) -> np.ndarray:
    """Descriptors of patches (names[codes[r]], image images[r] of ``noise``, idx[r]): (R, D)."""
    first = next(iter(chk.descs.values()))["ref"]
    out = np.empty((len(codes), first.shape[1]), dtype=first.dtype)
    key = codes.astype(np.int64) * IMAGES + images
    order = np.argsort(key, kind="stable")
    sk = key[order]
    starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]]) if len(sk) else np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], len(sk)]
    for s, e in zip(starts, ends):
        rows = order[s:e]
        k = int(sk[s])
        out[rows] = chk.descs[names[k // IMAGES]][type_name(noise, k % IMAGES)][idx[rows]]
    return out


# ---- memory -------------------------------------------------------------------------------------
_PAGES = threading.Lock()
_PAGES_STATE = {"depth": 0, "before": True}


@contextlib.contextmanager
def small_pages() -> Iterator[None]:
    """Within the block, numpy does not ask for transparent huge pages for its arrays (restored after).

    numpy advises huge pages for every array of 4 MiB or more; where the kernel then compacts memory on
    each fault (``defrag=madvise``, the default), a busy machine pays for it: filling a fresh 482 MiB
    table took 0.8-1.3 s of CPU that way and 0.17 s with ordinary pages. The HPatches tasks allocate
    such arrays (stacked tables, pair indices, distance products) and read them once or twice, so huge
    pages save them little. Nested and concurrent blocks share one setting; the last to leave restores it.
    """
    core = getattr(np, "_core", None) or getattr(np, "core", None)  # numpy 2 / numpy 1
    toggle = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    if toggle is None:
        yield
        return
    with _PAGES:
        if _PAGES_STATE["depth"] == 0:
            _PAGES_STATE["before"] = bool(toggle(False))
        _PAGES_STATE["depth"] += 1
    try:
        yield
    finally:
        with _PAGES:
            _PAGES_STATE["depth"] -= 1
            if _PAGES_STATE["depth"] == 0:
                toggle(_PAGES_STATE["before"])


# ---- range --------------------------------------------------------------------------------------
def power_of_two_scale(*arrays: np.ndarray) -> float:
    """``2**-e`` that brings the largest |value| of the arrays into [0.5, 1) (1.0 when all are 0).

    Multiplying by a power of two is exact in floating point (barring underflow), so distances
    scale by one common factor and every ranking is unchanged, while float32 products of squares
    no longer overflow (values near 1e30) or underflow (values near 1e-30). Refuses non-finite values.
    """
    top = 0.0
    for a in arrays:
        if a.size:  # max and min, not abs (no temporary; abs of the most negative integer overflows)
            top = max(top, abs(float(a.max())), abs(float(a.min())))
    if not np.isfinite(top):
        raise InputError("descriptors contain NaN or infinite values; only finite descriptors can be ranked")
    if top == 0.0:
        return 1.0
    return float(np.ldexp(1.0, -int(np.frexp(top)[1])))


def needs_float64_scaling(dtype: np.dtype) -> bool:
    """Whether float64 differences of this dtype can overflow or underflow (float64 and 64-bit ints).

    Values of float32 or narrower types are exact in float64 and their squared differences
    (at most about 5e77, at least about 2e-90) are normal float64 numbers.
    """
    return np.dtype(dtype).itemsize >= 8


# ---- degenerate descriptors ---------------------------------------------------------------------
def constant_descriptor(chk: Checked) -> bool:
    """Whether every patch of every sequence has the same descriptor (zero variance across patches)."""
    arrays = [a for types in chk.descs.values() for a in types.values() if len(a)]
    if not arrays:
        return False
    first = arrays[0][0]
    if any(not (a[:8] == first).all() for a in arrays):  # the usual case exits here at once
        return False
    return all((a == first).all() for a in arrays)


def degenerate_note(constant: bool, official: float | None = None, other: float | None = None) -> str:
    """The note of a score: constant descriptor, or a value that the tie rule decides.

    ``official`` is the score with ties broken as the protocol says, ``other`` with exact ties
    counted the other way; a difference of :data:`DEGENERATE_SWING` or more flags the score.
    """
    if constant:
        return "degenerate: every patch has the same descriptor, the tie rule alone gives this number"
    if official is not None and other is not None and abs(official - other) >= DEGENERATE_SWING:
        return (
            f"degenerate: exact distance ties decide this number ({100 * official:.2f} with the protocol's tie "
            f"rule, {100 * other:.2f} with ties counted the other way)"
        )
    return ""
