"""HPatches task files: reading them, and the official deterministic generator.

Files in a tasks folder (Balntas et al., CVPR 2017; hpatches-benchmark ``tasks/``):
    verif_{pos,neg_intra,neg_inter}_split-X.csv   header ``s1,t1,idx1,s2,t2,idx2``: sequence name,
        image (0 = ref, k = image k of the current noise level), 0-based patch index; one pair a row
        (1,000,000 rows officially).
    retr_{queries,distractors}_split-X.csv        header ``s,idx``: ref patches (10,000 queries,
        20,000 distractors officially).
    splits/splits.json                            split name -> {name, test, train}.

:class:`TaskFiles` reads them lazily into :class:`PairList` / :class:`PatchList` (sequence codes into
a names table, int arrays) and raises :class:`~desc_bench.errors.DatasetError` naming the file when one
is missing or malformed.

:func:`generate_task_files` is the official generator (python/utils/tasks.py ``gen_verif`` and
``gen_retrieval``, ``np.random.seed(42)``), re-implemented so that it draws the same numbers from
numpy's legacy ``RandomState`` in the same order:
    verification  s = choice(test, N); for each s two distinct patches ``choice(arange(n_s), 2,
        replace=False)``; then for each pair two distinct images ``choice(arange(5), 2, replace=False)``
        (so t is in 0..4); positives (s, t1, i1) ~ (s, t2, i1); intra negatives (s, t1, i1) ~ (s, t2, i2);
        inter negatives (s, t1, i1) ~ (s', t2, randint(n_s')) with s' = choice(test, N).
    retrieval     4 x n_queries candidate queries (choice(test), randint(n_s)), then 10 x n_distractors
        candidate distractors; candidates whose ref patch has std <= 10 are dropped (the official
        filter, which needs the patches: pass ``patch_filter``); duplicates dropped (first kept); the
        first n_queries are the queries; distractors equal to a query are removed; the first
        n_distractors remain.
With the real patch counts and the std filter this reproduces the official retrieval files (checked
in tests/datasets/test_tasks.py against the published files); the verification files are not in the
public snapshot, and the same algorithm generates them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DatasetError, UnknownNameError
from ..io.atomic import atomic_path, write_text
from .base import Split, read_splits, split_named

PAIR_KINDS = ("pos", "neg_intra", "neg_inter")
PAIR_COLUMNS = ("s1", "t1", "idx1", "s2", "t2", "idx2")
PATCH_COLUMNS = ("s", "idx")
STD_THRESHOLD = 10.0  # official: a candidate ref patch is kept when np.std(patch) > 10

# (sequence, patch indices) -> boolean mask of the candidates to keep
PatchFilter = Callable[[str, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class PatchList:
    """Ref patches ``(sequences[seq[i]], idx[i])``: retrieval queries or distractors. seq, idx: (M,) int."""

    sequences: tuple[str, ...]
    seq: np.ndarray
    idx: np.ndarray

    def __len__(self) -> int:
        return len(self.seq)

    def names(self) -> np.ndarray:
        return np.asarray(self.sequences, dtype=object)[self.seq]


@dataclass(frozen=True)
class PairList:
    """Verification pairs ``(s1, t1, idx1) ~ (s2, t2, idx2)``; s are codes into ``sequences``. All (M,) int."""

    sequences: tuple[str, ...]
    s1: np.ndarray
    t1: np.ndarray
    idx1: np.ndarray
    s2: np.ndarray
    t2: np.ndarray
    idx2: np.ndarray

    def __len__(self) -> int:
        return len(self.s1)


def _csv_name(kind: str, split: str) -> str:
    if kind in PAIR_KINDS:
        return f"verif_{kind}_split-{split}.csv"
    if kind in ("queries", "distractors"):
        return f"retr_{kind}_split-{split}.csv"
    raise UnknownNameError("task file kind", kind, list(PAIR_KINDS) + ["queries", "distractors"])


_REGENERATE = (
    "regenerate the task files with desc_bench.datasets.tasks.generate_task_files "
    "(or `desc-bench data download hpatches`)"
)


def _read_table(path: Path, columns: tuple[str, ...], name_columns: tuple[str, ...]) -> pd.DataFrame:
    """Read one task file; refuses a missing, empty (header only) or malformed file, naming it."""
    if not path.is_file():
        raise DatasetError(f"missing task file {path}; {_REGENERATE}")
    try:
        frame = pd.read_csv(path, dtype={c: str for c in name_columns}, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DatasetError(f"empty task file {path} (no header, no rows); {_REGENERATE}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetError(f"malformed task file {path}: {exc}") from None
    if tuple(frame.columns) != columns:
        raise DatasetError(
            f"malformed task file {path}: expected header {','.join(columns)}, found {','.join(map(str, frame.columns))}"  # noqa: E501
        )
    if frame.empty:
        # an empty distractor list scores retrieval 100 %, an empty positive list verification 0 %
        raise DatasetError(f"task file {path} has a header but no rows, so its task cannot be scored; {_REGENERATE}")
    for c in columns:
        if c in name_columns:
            if (frame[c] == "").any():
                row = int(np.flatnonzero((frame[c] == "").to_numpy())[0]) + 2
                raise DatasetError(f"malformed task file {path}: empty sequence name in column {c!r} (line {row})")
            continue
        values = pd.to_numeric(frame[c], errors="coerce")
        bad = values.isna() | (values < 0) | (values != np.floor(values))
        if c.startswith("t"):
            bad |= values > 5
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            limit = "an integer in 0..5" if c.startswith("t") else "a non-negative integer"
            raise DatasetError(
                f"malformed task file {path}: column {c!r} must be {limit}; line {row + 2} has {frame[c].iloc[row]!r}"
            )
        frame[c] = values.astype(np.int64)
    return frame


def _codes(names: Iterable[np.ndarray]) -> tuple[tuple[str, ...], list[np.ndarray]]:
    names = list(names)
    table, inverse = np.unique(np.concatenate(names), return_inverse=True)
    out, start = [], 0
    for n in names:
        out.append(inverse[start : start + len(n)].astype(np.int32))
        start += len(n)
    return tuple(str(s) for s in table), out


def read_pairs(path: Path) -> PairList:
    frame = _read_table(path, PAIR_COLUMNS, ("s1", "s2"))
    sequences, (s1, s2) = _codes([frame["s1"].to_numpy(), frame["s2"].to_numpy()])
    return PairList(
        sequences,
        s1,
        frame["t1"].to_numpy().astype(np.int8),
        frame["idx1"].to_numpy(),
        s2,
        frame["t2"].to_numpy().astype(np.int8),
        frame["idx2"].to_numpy(),
    )


def read_patches(path: Path) -> PatchList:
    frame = _read_table(path, PATCH_COLUMNS, ("s",))
    sequences, (seq,) = _codes([frame["s"].to_numpy()])
    return PatchList(sequences, seq, frame["idx"].to_numpy())


@dataclass(frozen=True)
class TaskFiles:
    """The task files of one tasks folder; each file is read on first use and kept."""

    tasks_dir: Path
    _cache: dict = field(default_factory=dict, compare=False, repr=False, hash=False)

    def __post_init__(self):
        object.__setattr__(self, "tasks_dir", Path(self.tasks_dir))

    def path(self, kind: str, split: str) -> Path:
        return self.tasks_dir / _csv_name(kind, split)

    def has(self, kind: str, split: str) -> bool:
        return self.path(kind, split).is_file()

    def _get(self, kind: str, split: str, reader):
        key = (kind, split)
        if key not in self._cache:
            self._cache[key] = reader(self.path(kind, split))
        return self._cache[key]

    def pairs(self, kind: str, split: str) -> PairList:
        """Verification pairs; kind is pos, neg_intra or neg_inter."""
        if kind not in PAIR_KINDS:
            raise UnknownNameError("verification pair kind", kind, PAIR_KINDS)
        return self._get(kind, split, read_pairs)

    def queries(self, split: str) -> PatchList:
        return self._get("queries", split, read_patches)

    def distractors(self, split: str) -> PatchList:
        return self._get("distractors", split, read_patches)

    def splits(self) -> dict[str, Split]:
        return read_splits(self.tasks_dir / "splits" / "splits.json")

    def split(self, name: str) -> Split:
        return split_named(self.splits(), name)


# ---- writing ------------------------------------------------------------------------------------
def _write_csv(path: Path, columns: dict[str, np.ndarray]) -> None:
    frame = pd.DataFrame(columns)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, lineterminator="\n")


def write_pairs(path: Path, pairs: PairList) -> None:
    names = np.asarray(pairs.sequences, dtype=object)
    _write_csv(
        path,
        {
            "s1": names[pairs.s1],
            "t1": pairs.t1.astype(np.int64),
            "idx1": pairs.idx1,
            "s2": names[pairs.s2],
            "t2": pairs.t2.astype(np.int64),
            "idx2": pairs.idx2,
        },
    )


def write_patches(path: Path, patches: PatchList) -> None:
    _write_csv(path, {"s": patches.names(), "idx": patches.idx})


def write_splits(tasks_dir: Path, splits: dict[str, Split]) -> Path:
    """Write ``<tasks_dir>/splits/splits.json`` (keys in the given order; the order of ``test`` matters)."""
    data = {}
    for key, s in splits.items():
        data[key] = {"name": s.name, "test": list(s.test)}
        if s.train:
            data[key]["train"] = list(s.train)
    return write_text(Path(tasks_dir) / "splits" / "splits.json", json.dumps(data, indent=1) + "\n")


# ---- the official generator ----------------------------------------------------------------------
def _counts_of(test: tuple[str, ...], patch_counts: dict[str, int]) -> np.ndarray:
    missing = [s for s in test if s not in patch_counts]
    if missing:
        raise DatasetError(f"no patch count for test sequences {', '.join(missing)}")
    counts = np.array([int(patch_counts[s]) for s in test], dtype=np.int64)
    if (counts < 2).any():
        raise DatasetError("every test sequence needs at least 2 patches to draw verification pairs")
    return counts


def generate_verification(
    test: tuple[str, ...],
    patch_counts: dict[str, int],
    n_pairs: int = 1_000_000,
    seed: int = 42,
    progress: bool = False,
) -> dict[str, PairList]:
    """The three verification pair lists (pos, neg_intra, neg_inter) of one split, as the official gen_verif."""
    from ..io.progress import bar

    test = tuple(test)
    counts = _counts_of(test, patch_counts)
    rs = np.random.RandomState(seed)
    s = rs.choice(len(test), n_pairs)  # same draws as choice(test, n): randint(0, len(test), n)
    n_s = counts[s]
    # choice(n, 2, replace=False) is permutation(n)[:2], i.e. shuffle(arange(n))[:2]: the same draws
    # from a shuffle of a reused buffer, without choice's per-call overhead
    idx = np.empty((n_pairs, 2), dtype=np.int64)
    order = np.arange(int(counts.max()), dtype=np.int64)
    work = np.empty_like(order)
    for i in bar(range(n_pairs), desc="verification pairs", unit="pair", enabled=progress, mininterval=1):
        view = work[: n_s[i]]
        view[:] = order[: n_s[i]]
        rs.shuffle(view)
        idx[i] = view[:2]
    types = np.empty((n_pairs, 2), dtype=np.int8)
    five, images = np.empty(5, dtype=np.int64), np.arange(5, dtype=np.int64)
    for i in bar(range(n_pairs), desc="verification images", unit="pair", enabled=progress, mininterval=1):
        five[:] = images
        rs.shuffle(five)
        types[i] = five[:2]
    s_inter = rs.choice(len(test), n_pairs)
    idx_inter = rs.randint(counts[s_inter]) if n_pairs else np.zeros(0, dtype=np.int64)  # = [randint(n) for n]
    s = s.astype(np.int32)
    t1, t2 = types[:, 0].copy(), types[:, 1].copy()
    return {
        "pos": PairList(test, s, t1, idx[:, 0], s, t2, idx[:, 0]),
        "neg_intra": PairList(test, s, t1, idx[:, 0], s, t2, idx[:, 1]),
        "neg_inter": PairList(test, s, t1, idx[:, 0], s_inter.astype(np.int32), t2, idx_inter.astype(np.int64)),
    }


def _apply_filter(test, seq: np.ndarray, idx: np.ndarray, patch_filter: PatchFilter | None) -> np.ndarray:
    if patch_filter is None:
        return np.ones(len(seq), dtype=bool)
    keep = np.zeros(len(seq), dtype=bool)
    for code in np.unique(seq):
        rows = np.flatnonzero(seq == code)
        mask = np.asarray(patch_filter(test[code], idx[rows]), dtype=bool)
        if mask.shape != rows.shape:
            raise DatasetError(f"patch_filter returned shape {mask.shape} for {len(rows)} patches of {test[code]}")
        keep[rows] = mask
    return keep


def _first_unique(seq: np.ndarray, idx: np.ndarray, stride: int) -> np.ndarray:
    key = seq.astype(np.int64) * stride + idx
    _, first = np.unique(key, return_index=True)
    return np.sort(first)


def generate_retrieval(
    test: tuple[str, ...],
    patch_counts: dict[str, int],
    n_queries: int = 10_000,
    n_distractors: int = 20_000,
    seed: int = 42,
    patch_filter: PatchFilter | None = None,
) -> tuple[PatchList, PatchList]:
    """Retrieval queries and distractors of one split, as the official gen_retrieval.

    ``patch_filter(sequence, idx) -> bool mask`` drops candidates; the official files use
    :func:`std_filter` (std of the ref patch > 10). Without it every candidate is kept, and the files
    differ from the official ones wherever the official filter dropped a candidate. Fewer rows than
    asked are written when the split has too few distinct patches.
    """
    test = tuple(test)
    counts = _counts_of(test, patch_counts)
    rs = np.random.RandomState(seed)
    q_seq = rs.choice(len(test), int(n_queries * 4))
    q_idx = rs.randint(counts[q_seq]) if len(q_seq) else np.zeros(0, dtype=np.int64)
    d_seq = rs.choice(len(test), int(n_distractors * 10))
    d_idx = rs.randint(counts[d_seq]) if len(d_seq) else np.zeros(0, dtype=np.int64)
    keep = _apply_filter(test, q_seq, q_idx, patch_filter)
    q_seq, q_idx = q_seq[keep], q_idx[keep]
    keep = _apply_filter(test, d_seq, d_idx, patch_filter)
    d_seq, d_idx = d_seq[keep], d_idx[keep]
    stride = int(counts.max()) + 1
    first = _first_unique(q_seq, q_idx, stride)[:n_queries]
    q_seq, q_idx = q_seq[first], q_idx[first]
    first = _first_unique(d_seq, d_idx, stride)
    d_seq, d_idx = d_seq[first], d_idx[first]
    is_query = np.isin(d_seq.astype(np.int64) * stride + d_idx, q_seq.astype(np.int64) * stride + q_idx)
    d_seq, d_idx = d_seq[~is_query][:n_distractors], d_idx[~is_query][:n_distractors]
    return (
        PatchList(test, q_seq.astype(np.int32), q_idx.astype(np.int64)),
        PatchList(test, d_seq.astype(np.int32), d_idx.astype(np.int64)),
    )


def std_filter(ref_patches: Callable[[str], np.ndarray], threshold: float = STD_THRESHOLD) -> PatchFilter:
    """The official candidate filter: keep a ref patch when ``np.std(patch) > threshold``.

    ``ref_patches(sequence)`` returns that sequence's ref patches ``(N, 65, 65)`` (e.g.
    ``lambda s: read_patch_file(root / s / "ref.png")``); each sequence is read once.
    """
    cache: dict[str, np.ndarray] = {}

    def keep(sequence: str, idx: np.ndarray) -> np.ndarray:
        if sequence not in cache:
            patches = np.asarray(ref_patches(sequence))
            cache[sequence] = patches.reshape(len(patches), -1).std(axis=1) > threshold
        return cache[sequence][idx]

    return keep


def generate_task_files(
    tasks_dir: Path,
    splits: dict[str, Split],
    patch_counts: dict[str, int],
    *,
    n_pairs: int = 1_000_000,
    n_queries: int = 10_000,
    n_distractors: int = 20_000,
    seed: int = 42,
    split_names: Iterable[str] | None = None,
    progress: bool = True,
    patch_filter: PatchFilter | None = None,
    kinds: tuple[str, ...] = ("verification", "retrieval"),
) -> None:
    """Write the verification and retrieval task files of the chosen splits (default: all) atomically.

    Each split restarts from ``seed`` as the official generator does. ``patch_filter`` is the
    retrieval candidate filter (see :func:`std_filter`); ``kinds`` limits what is written.
    """
    tasks_dir = Path(tasks_dir)
    names = list(splits) if split_names is None else list(split_names)
    for name in names:
        split_named(splits, name)
    bad = set(kinds) - {"verification", "retrieval"}
    if bad:
        raise UnknownNameError("task kind", sorted(bad)[0], ["verification", "retrieval"])
    for name in names:
        test = splits[name].test
        if "verification" in kinds:
            for kind, pairs in generate_verification(test, patch_counts, n_pairs, seed, progress).items():
                write_pairs(tasks_dir / _csv_name(kind, name), pairs)
        if "retrieval" in kinds:
            queries, distractors = generate_retrieval(test, patch_counts, n_queries, n_distractors, seed, patch_filter)
            write_patches(tasks_dir / _csv_name("queries", name), queries)
            write_patches(tasks_dir / _csv_name("distractors", name), distractors)
