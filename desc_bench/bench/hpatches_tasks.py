"""The three HPatches patch tasks: verification, matching and retrieval (Balntas et al., CVPR 2017).

Inputs:
    descs   mapping sequence -> {patch type ("ref", "e1".."e5", "h1".."h5", "t1".."t5") -> (N, D) array},
            float32 (or any float/integer dtype), or uint8 packed bits for Hamming; N is the sequence's
            patch count and must be the same for all 16 types.
    tasks   :class:`~desc_bench.datasets.tasks.TaskFiles` (verification pairs, retrieval queries and
            distractors of the split).
    split   :class:`~desc_bench.datasets.base.Split` (or a split name found in ``tasks``).

Output: a list of :class:`Score` rows; values are fractions in 0..1 (the papers print 100x).

Protocols (see METRICS.md section 1):
    ``python`` (default): the official python code. Verification: [negatives; positives], score = -d,
        stable sort (ties count against the descriptor), balanced ROC AUC over all pairs, imbalanced
        AP (trapezoid) over all negatives and the first 20 % of positives; intra and inter negatives.
        Matching: nearest neighbour of each ref descriptor in image i, AP (trapezoid) with
        numpos = N; mean over (sequence, image) pairs; i/v breakdown by sequence prefix.
        Retrieval: per query the 5 positives (same patch, images 1..5) followed by the distractors of
        other sequences in file order; AP (trapezoid) over the first k entries for each pool size k.
        A pool larger than the list (5 + distractors of other sequences) is the whole list, exactly as
        the official slicing ``D[0:k]`` behaves; so with 20,000 distractors the 20,000 pool holds
        5 positives + 19,995 distractors, and a small dataset's large pools all equal its largest.
    ``matlab``: the MATLAB code used for the paper's figures. Squared L2, VLFeat AP (mean precision
        at each positive), [positives; negatives] (ties count for the descriptor), imbalanced
        = first floor(0.2 x #negatives) positives + all negatives; retrieval ranks all distractors
        (same-sequence ones ignored), variant "pool=all". Not comparable with ``python`` numbers.

Score rows:
    verification  metric "ap" (imbalanced) / "auc" (balanced); variant "intra" / "inter" / "mean";
                  noise easy/hard/tough/mean. Headline: ap, noise mean, variant mean (mean of 6).
    matching      metric "map"; subset all / i / v; variant "". Headline: noise mean, subset all.
    retrieval     metric "map"; variant "pool=K" and "pool=mean" (mean over the pool sizes).
                  Headline: noise mean, variant "pool=mean" (python) or "pool=all" (matlab).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..adapters.base import Distance
from ..datasets.base import NOISE_NAMES, NOISES, PATCH_TYPES, Split
from ..datasets.tasks import PairList, PatchList, TaskFiles
from ..errors import DatasetError, InputError, UnknownNameError
from .metrics import (
    ap_from_ranks,
    average_precision,
    pairwise_distances,
    roc_auc,
    rowwise_distances,
    vlfeat_ap,
)

TASKS = ("verification", "matching", "retrieval")
PROTOCOLS = ("python", "matlab")
POOL_SIZES = (100, 500, 1000, 5000, 10000, 15000, 20000)
N_POSITIVES = 5  # retrieval: images 1..5 of the query's sequence
IMBALANCED_RATIO = 0.2

Descs = Mapping[str, Mapping[str, np.ndarray]]


@dataclass(frozen=True)
class Score:
    """One number of the HPatches tasks. ``value`` is a fraction (0..1)."""

    task: str  # verification | matching | retrieval
    metric: str  # ap | auc | map
    noise: str  # easy | hard | tough | mean
    subset: str  # all | i | v
    variant: str  # intra | inter | mean (verification); pool=K | pool=mean | pool=all (retrieval); ""
    value: float


# (metric, noise, subset, variants) of the single number usually quoted for each task
HEADLINES = {
    "verification": ("ap", "mean", "all", ("mean",)),
    "matching": ("map", "mean", "all", ("",)),
    "retrieval": ("map", "mean", "all", ("pool=mean", "pool=all")),
}


def is_headline(task: str, metric: str, noise: str, subset: str, variant: str) -> bool:
    """Whether a score is the single number usually quoted for its task."""
    if task not in HEADLINES:
        return False
    want_metric, want_noise, want_subset, variants = HEADLINES[task]
    return (metric, noise, subset) == (want_metric, want_noise, want_subset) and variant in variants


def headline(scores: Sequence[Score], task: str) -> Score:
    """The single number usually quoted for a task (see the module docstring)."""
    if task not in HEADLINES:
        raise UnknownNameError("task", task, TASKS)
    for s in scores:
        if s.task == task and is_headline(s.task, s.metric, s.noise, s.subset, s.variant):
            return s
    raise InputError(f"no headline {task} score among the {len(scores)} scores given")


# ---- inputs -------------------------------------------------------------------------------------
def _type_name(noise: str, image: int) -> str:
    return "ref" if image == 0 else f"{noise}{image}"


@dataclass(frozen=True)
class _Checked:
    descs: dict[str, dict[str, np.ndarray]]
    counts: dict[str, int]
    distance: Distance


def _check_descs(descs: Descs, sequences: Sequence[str], distance) -> _Checked:
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
    return _Checked(out, counts, distance)


def _check_refs(chk: _Checked, names: tuple[str, ...], codes: np.ndarray, idx: np.ndarray, where: str) -> None:
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


def _gather(chk: _Checked, names, codes, images, idx, noise: str) -> np.ndarray:
    """Descriptors of patches (names[codes[r]], image images[r] of ``noise``, idx[r]): (R, D)."""
    first = next(iter(chk.descs.values()))["ref"]
    out = np.empty((len(codes), first.shape[1]), dtype=first.dtype)
    key = codes.astype(np.int64) * 6 + images
    order = np.argsort(key, kind="stable")
    sk = key[order]
    starts = np.flatnonzero(np.r_[True, sk[1:] != sk[:-1]]) if len(sk) else np.zeros(0, dtype=np.int64)
    ends = np.r_[starts[1:], len(sk)]
    for s, e in zip(starts, ends):
        rows = order[s:e]
        k = int(sk[s])
        out[rows] = chk.descs[names[k // 6]][_type_name(noise, k % 6)][idx[rows]]
    return out


def _squared(chk: _Checked, protocol: str) -> bool:
    return protocol == "matlab" and chk.distance is Distance.L2


def _check_protocol(protocol: str) -> None:
    if protocol not in PROTOCOLS:
        raise UnknownNameError("protocol", protocol, PROTOCOLS)


def _resolve_split(split, tasks: TaskFiles | None) -> Split:
    if isinstance(split, Split):
        return split
    if tasks is None:
        raise InputError(f"split {split!r} given by name needs the task files to look it up")
    return tasks.split(str(split))


def _bar(iterable, progress: bool, **kw):
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not progress, leave=False, **kw)


# ---- verification -------------------------------------------------------------------------------
def _pair_distances(chk: _Checked, pairs: PairList, noise: str, squared: bool, chunk: int = 1 << 17) -> np.ndarray:
    out = np.empty(len(pairs), dtype=np.float64)
    for s in range(0, len(pairs), chunk):
        sl = slice(s, s + chunk)
        a = _gather(chk, pairs.sequences, pairs.s1[sl], pairs.t1[sl], pairs.idx1[sl], noise)
        b = _gather(chk, pairs.sequences, pairs.s2[sl], pairs.t2[sl], pairs.idx2[sl], noise)
        out[sl] = rowwise_distances(a, b, chk.distance, squared=squared)
    return out


def evaluate_verification(
    descs: Descs, tasks: TaskFiles, split, distance=Distance.L2, protocol: str = "python", progress: bool = False
) -> list[Score]:
    """Patch verification: imbalanced AP and balanced ROC AUC, intra and inter negatives, per noise."""
    _check_protocol(protocol)
    split = _resolve_split(split, tasks)
    lists = {kind: tasks.pairs(kind, split.name) for kind in ("pos", "neg_intra", "neg_inter")}
    sequences = sorted({n for p in lists.values() for n in p.sequences})
    chk = _check_descs(descs, sequences, distance)
    for kind, p in lists.items():
        where = str(tasks.path(kind, split.name))
        _check_refs(chk, p.sequences, p.s1, p.idx1, where)
        _check_refs(chk, p.sequences, p.s2, p.idx2, where)
    squared = _squared(chk, protocol)
    raw: dict[tuple[str, str, str], float] = {}
    steps = [(n, kind) for n in NOISES for kind in ("pos", "neg_intra", "neg_inter")]
    dists = {}
    for noise, kind in _bar(steps, progress, desc="verification distances"):
        dists[noise, kind] = _pair_distances(chk, lists[kind], noise, squared)
    for noise in NOISES:
        d_pos = dists[noise, "pos"]
        for variant in ("intra", "inter"):
            d_neg = dists[noise, f"neg_{variant}"]
            ones, zeros = np.ones(len(d_pos), dtype=bool), np.zeros(len(d_neg), dtype=bool)
            if protocol == "python":
                d = np.concatenate((d_neg, d_pos))
                labels = np.concatenate((zeros, ones))
                n_imb = len(d_pos) + int(len(d_pos) * IMBALANCED_RATIO)  # official: first 1.2M of [neg; pos]
                raw[noise, variant, "auc"] = roc_auc(-d, labels)
                raw[noise, variant, "ap"] = average_precision(-d[:n_imb], labels[:n_imb])
            else:
                d = np.concatenate((d_pos, d_neg))
                labels = np.concatenate((ones, zeros))
                raw[noise, variant, "auc"] = roc_auc(-d, labels)
                n_pos = int(np.floor(len(d_neg) * IMBALANCED_RATIO))
                d_imb = np.concatenate((d_pos[:n_pos], d_neg))
                l_imb = np.concatenate((ones[:n_pos], zeros))
                raw[noise, variant, "ap"] = vlfeat_ap(-d_imb, l_imb)
    scores = []
    for metric in ("ap", "auc"):
        for noise in NOISES + ("mean",):
            for variant in ("intra", "inter", "mean"):
                ns = NOISES if noise == "mean" else (noise,)
                vs = ("intra", "inter") if variant == "mean" else (variant,)
                value = float(np.mean([raw[n, v, metric] for n in ns for v in vs]))
                scores.append(Score("verification", metric, NOISE_NAMES.get(noise, noise), "all", variant, value))
    return scores


# ---- matching -----------------------------------------------------------------------------------
def _nearest(a: np.ndarray, b: np.ndarray, distance: Distance) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest row of ``b`` for each row of ``a`` (first on exact ties) and its distance.

    L2 searches with a float32 GEMM (|b|^2 - 2ab), then re-decides every row whose runner-up lies
    within the float32 error bound by exact float64 differences, so the choice equals that of a
    direct difference-based computation (as scipy's cdist in the official code).
    """
    if distance is not Distance.L2:
        d = pairwise_distances(a, b, distance)
        nn = d.argmin(axis=1)
        return nn, rowwise_distances(a, b[nn], distance)
    a32 = np.ascontiguousarray(a, dtype=np.float32)
    b32 = np.ascontiguousarray(b, dtype=np.float32)
    bn = np.einsum("ij,ij->i", b32, b32, dtype=np.float64)
    an = np.sqrt(np.einsum("ij,ij->i", a32, a32, dtype=np.float64))
    g = a32 @ (-2 * b32).T  # scaling by 2 is exact
    g += bn.astype(np.float32)[None, :]
    nn = g.argmin(axis=1)
    best = g[np.arange(len(g)), nn]
    eps = float(np.finfo(np.float32).eps)
    bmax = float(np.sqrt(bn.max())) if len(bn) else 0.0
    tol = (4 * (a.shape[1] + 4) * eps) * (2 * an * bmax + bmax**2 + 1e-30)
    near_np = g <= (best + tol).astype(np.float32)[:, None]
    ambiguous = np.flatnonzero(np.count_nonzero(near_np, axis=1) > 1)
    if len(ambiguous):
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        for r in ambiguous:
            cols = np.flatnonzero(near_np[r])
            diff = b64[cols] - a64[r]
            nn[r] = cols[np.argmin(np.einsum("ij,ij->i", diff, diff))]
    return nn, rowwise_distances(a, b[nn], distance)


def evaluate_matching(
    descs: Descs,
    split,
    distance=Distance.L2,
    protocol: str = "python",
    progress: bool = False,
    tasks: TaskFiles | None = None,
) -> list[Score]:
    """Image matching: per sequence, noise and image i = 1..5, AP of nearest-neighbour matches ref -> image i."""
    _check_protocol(protocol)
    split = _resolve_split(split, tasks)
    chk = _check_descs(descs, split.test, distance)
    per_seq: dict[tuple[str, str], float] = {}  # (sequence, noise) -> mean AP over the 5 images
    for seq in _bar(split.test, progress, desc="matching"):
        ref = chk.descs[seq]["ref"]
        truth = np.arange(len(ref))
        for noise in NOISES:
            aps = []
            for i in range(1, 6):
                nn, dist = _nearest(ref, chk.descs[seq][f"{noise}{i}"], chk.distance)
                correct = nn == truth
                if protocol == "python":
                    aps.append(average_precision(-dist, correct, numpos=len(ref)))
                else:
                    aps.append(vlfeat_ap(-dist, correct, numpos=len(ref)))
            per_seq[seq, noise] = float(np.mean(aps))
    subsets = {"all": list(split.test)}
    for prefix in ("i", "v"):
        members = [s for s in split.test if s.startswith(prefix + "_")]
        if members:
            subsets[prefix] = members
    scores = []
    for subset, members in subsets.items():
        values = {n: float(np.mean([per_seq[s, n] for s in members])) for n in NOISES}
        for n in NOISES:
            scores.append(Score("matching", "map", NOISE_NAMES[n], subset, "", values[n]))
        scores.append(Score("matching", "map", "mean", subset, "", float(np.mean(list(values.values())))))
    return scores


# ---- retrieval ----------------------------------------------------------------------------------
def _count_below(dist: torch.Tensor, thr: torch.Tensor, bounds: Sequence[int]) -> torch.Tensor:
    """For rows q, thresholds j and prefixes [0, bounds[m]): #(dist[q, :bounds[m]] < thr[q, j]). -> (Q, J, M)."""
    rows, n_thr = thr.shape
    thr_sorted, perm = torch.sort(thr, dim=1, stable=True)
    # bucket of each entry = #thresholds <= entry; the entry is below threshold j (sorted) iff bucket <= j
    bucket = torch.searchsorted(thr_sorted.contiguous(), dist.contiguous(), right=True)
    bucket += torch.arange(rows, dtype=bucket.dtype)[:, None] * (n_thr + 1)
    out, hist, start = [], torch.zeros(rows * (n_thr + 1), dtype=torch.int64), 0
    for stop in bounds:
        if stop > start:
            hist = hist + torch.bincount(bucket[:, start:stop].reshape(-1), minlength=rows * (n_thr + 1))
            start = stop
        below_sorted = hist.view(rows, n_thr + 1).cumsum(dim=1)[:, :n_thr]
        below = torch.empty_like(below_sorted)
        below.scatter_(1, perm, below_sorted)
        out.append(below)
    return torch.stack(out, dim=-1)


def evaluate_retrieval(
    descs: Descs,
    tasks: TaskFiles,
    split,
    distance=Distance.L2,
    pool_sizes: Sequence[int] = POOL_SIZES,
    protocol: str = "python",
    progress: bool = False,
    chunk: int = 256,
) -> list[Score]:
    """Patch retrieval: AP of each query's 5 positives among distractors of other sequences, per pool size."""
    _check_protocol(protocol)
    split = _resolve_split(split, tasks)
    pool_sizes = tuple(int(k) for k in pool_sizes)
    if protocol == "python" and (not pool_sizes or min(pool_sizes) <= N_POSITIVES):
        raise InputError(f"retrieval pool sizes must be larger than {N_POSITIVES}; got {pool_sizes}")
    queries: PatchList = tasks.queries(split.name)
    distractors: PatchList = tasks.distractors(split.name)
    sequences = sorted(set(queries.sequences) | set(distractors.sequences))
    chk = _check_descs(descs, sequences, distance)
    _check_refs(chk, queries.sequences, queries.seq, queries.idx, str(tasks.path("queries", split.name)))
    _check_refs(
        chk, distractors.sequences, distractors.seq, distractors.idx, str(tasks.path("distractors", split.name))
    )
    squared = chk.distance is Distance.L2  # only the order matters: compare squared L2 throughout
    zeros_q = np.zeros(len(queries), dtype=np.int64)
    q_desc = _gather(chk, queries.sequences, queries.seq, zeros_q, queries.idx, "e")
    d_desc = _gather(
        chk, distractors.sequences, distractors.seq, np.zeros(len(distractors), np.int64), distractors.idx, "e"
    )
    pos = np.empty((len(queries), len(NOISES), N_POSITIVES))  # (Q, noise, image) distances
    for n, noise in enumerate(NOISES):
        for i in range(1, N_POSITIVES + 1):
            img = _gather(chk, queries.sequences, queries.seq, zeros_q + i, queries.idx, noise)
            pos[:, n, i - 1] = rowwise_distances(q_desc, img, chk.distance, squared=squared)
    d_names = distractors.names()
    q_names = queries.names()
    labels = [f"pool={k}" for k in pool_sizes] if protocol == "python" else ["pool=all"]
    ap = np.empty((len(queries), len(NOISES), len(labels)))
    kind = "trapezoid" if protocol == "python" else "vlfeat"
    groups = sorted(set(q_names))
    with torch.inference_mode():
        for seq in _bar(groups, progress, desc="retrieval"):
            rows = np.flatnonzero(q_names == seq)
            cols = np.flatnonzero(d_names != seq)  # distractors of other sequences, in file order
            if protocol == "python":
                bounds = [min(k - N_POSITIVES, len(cols)) for k in pool_sizes]
            else:
                bounds = [len(cols)]
            others = d_desc[cols]
            for s in range(0, len(rows), chunk):
                r = rows[s : s + chunk]
                dist = torch.from_numpy(pairwise_distances(q_desc[r], others, chk.distance, squared=squared))
                p = pos[r]  # (R, 3, 5)
                below = _count_below(dist, torch.from_numpy(p.reshape(len(r), -1)), bounds).numpy()
                below = below.reshape(len(r), len(NOISES), N_POSITIVES, len(bounds))
                order = np.argsort(p, axis=2, kind="stable")  # positives ranked by distance, ties by image
                below = np.take_along_axis(below, order[..., None], axis=2)
                ranks = np.arange(1, N_POSITIVES + 1)[None, None, :, None] + below  # (R, 3, 5, M)
                ap[r] = ap_from_ranks(np.moveaxis(ranks, 2, -1), N_POSITIVES, kind)
    scores = []
    per = ap.mean(axis=0)  # (noise, pool)
    for m, label in enumerate(labels):
        for n, noise in enumerate(NOISES):
            scores.append(Score("retrieval", "map", NOISE_NAMES[noise], "all", label, float(per[n, m])))
        scores.append(Score("retrieval", "map", "mean", "all", label, float(per[:, m].mean())))
    if protocol == "python":
        for n, noise in enumerate(NOISES):
            scores.append(Score("retrieval", "map", NOISE_NAMES[noise], "all", "pool=mean", float(per[n].mean())))
        scores.append(Score("retrieval", "map", "mean", "all", "pool=mean", float(per.mean())))
    return scores


# ---- all ----------------------------------------------------------------------------------------
def evaluate_all(
    descs: Descs,
    tasks: TaskFiles,
    split,
    distance=Distance.L2,
    which: Sequence[str] = TASKS,
    protocol: str = "python",
    progress: bool = True,
    pool_sizes: Sequence[int] = POOL_SIZES,
) -> list[Score]:
    """Run the chosen tasks (verification, matching, retrieval) and return all their scores."""
    _check_protocol(protocol)
    for task in which:
        if task not in TASKS:
            raise UnknownNameError("task", task, TASKS)
    split = _resolve_split(split, tasks)
    scores: list[Score] = []
    if "verification" in which:
        scores += evaluate_verification(descs, tasks, split, distance, protocol=protocol, progress=progress)
    if "matching" in which:
        scores += evaluate_matching(descs, split, distance, protocol=protocol, progress=progress)
    if "retrieval" in which:
        scores += evaluate_retrieval(descs, tasks, split, distance, pool_sizes, protocol=protocol, progress=progress)
    return scores
