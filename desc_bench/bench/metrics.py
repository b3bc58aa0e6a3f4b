"""Ranking metrics and descriptor distances (pure numpy/torch), as the HPatches benchmarks define them.

Reference: Balntas et al., "HPatches: A benchmark and evaluation of handcrafted and learned local
descriptors", CVPR 2017, and the official evaluation code (hpatches-benchmark, python/utils/metrics.py
for the ``python`` protocol, VLFeat ``vl_pr``/``vl_roc`` for the ``matlab`` protocol).

Conventions (shapes):
    scores  (N,) float  higher = more likely positive (the benchmarks use score = -distance)
    labels  (N,) bool or 0/1 ints
    tpfp    entries are sorted by decreasing score with a *stable* sort (ties keep array order);
            entries with score -inf are never retrieved (dropped from the tail);
            ``numpos`` declares more positives than the labels hold (the missing ones are never
            retrieved), which is how matching counts rows whose nearest neighbour is wrong.
    average_precision   trapezoid rule over (recall, precision) with precision(0) = 1, as numpy's trapz
                        in the official python code.
    vlfeat_ap           mean of the precision at each retrieved positive (VLFeat vl_pr ``info.ap``).
    roc_auc             trapezoid rule over (fpr, tpr).

Distances: ``pairwise_distances(a, b, distance)`` -> (N, M) float64 and ``rowwise_distances(a, b,
distance)`` -> (N,) float64 for :class:`~desc_bench.adapters.base.Distance` L2, L1 and HAMMING
(HAMMING on uint8 arrays of packed bits: the number of differing bits). L2 pairwise distances use the
float64 expansion |a|^2 + |b|^2 - 2ab, which is exact for integer-valued descriptors (so ties are
kept) and within 1e-12 relative otherwise.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from ..adapters.base import Distance
from ..errors import InputError

SMALL = 1e-10  # the official code's guard against 0/0

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy >= 2 renamed trapz


@dataclass(frozen=True)
class TpFp:
    """Cumulative true/false positives along the ranked list, with the leading zero.

    ``tp``/``fp`` have length K + 1 where K is the number of retrieved entries (score > -inf);
    ``p``/``n`` are the numbers of positives (``numpos`` when given) and negatives; ``order`` is the
    ranked list of retrieved entries as indices into the inputs.
    """

    tp: np.ndarray
    fp: np.ndarray
    p: int
    n: int
    order: np.ndarray


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if scores.shape != labels.shape:
        raise InputError(f"scores and labels must have the same length; got {scores.shape[0]} and {labels.shape[0]}")
    if labels.dtype != np.bool_:
        if labels.size and not np.isin(labels, (0, 1)).all():
            raise InputError("labels must be booleans or 0/1 values")
        labels = labels.astype(bool)
    if np.isnan(scores).any():
        raise InputError("scores contain NaN")
    return scores, labels


def tpfp(scores, labels, numpos: int | None = None) -> TpFp:
    """Rank by decreasing score (stable) and accumulate true and false positives."""
    scores, labels = _check(scores, labels)
    p = int(labels.sum())
    n = int(labels.size - p)
    if numpos is not None:
        if numpos < p:
            raise InputError(f"numpos={numpos} is smaller than the {p} positives in labels")
        p = int(numpos)  # the extra positives have score -inf: never retrieved
    order = np.argsort(-scores, kind="stable")
    kept = int(np.count_nonzero(scores > -np.inf))  # -inf sorts last: drop the tail
    order = order[:kept]
    ranked = labels[order]
    tp = np.concatenate(([0], np.cumsum(ranked, dtype=np.int64)))
    fp = np.concatenate(([0], np.cumsum(~ranked, dtype=np.int64)))
    return TpFp(tp, fp, p, n, order)


def precision_recall(scores, labels, numpos: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall along the ranked list (length K + 1, starting at recall 0, precision 1)."""
    c = tpfp(scores, labels, numpos)
    recall = c.tp / max(c.p, SMALL)
    precision = np.maximum(c.tp, SMALL) / np.maximum(c.tp + c.fp, SMALL)
    return precision, recall


def average_precision(scores, labels, numpos: int | None = None) -> float:
    """AP as the official python HPatches code computes it: trapezoid over (recall, precision)."""
    precision, recall = precision_recall(scores, labels, numpos)
    return float(_trapezoid(precision, recall))


def vlfeat_ap(scores, labels, numpos: int | None = None) -> float:
    """AP as VLFeat ``vl_pr`` (MATLAB protocol): sum of precision at each retrieved positive / #positives."""
    c = tpfp(scores, labels, numpos)
    if c.p == 0:
        return 0.0
    precision = np.maximum(c.tp, SMALL) / np.maximum(c.tp + c.fp, SMALL)
    at_pos = np.flatnonzero(np.diff(c.tp)) + 1
    return float(precision[at_pos].sum() / c.p)


def roc_auc(scores, labels) -> float:
    """Area under the ROC curve: trapezoid over (fpr, tpr), stable ranking (ties keep array order)."""
    c = tpfp(scores, labels)
    tpr = c.tp / max(c.p, SMALL)
    fpr = c.fp / max(c.n, SMALL)
    return float(_trapezoid(tpr, fpr))


def ap_from_ranks(ranks: np.ndarray, numpos: int, kind: str = "trapezoid") -> np.ndarray:
    """AP of many ranked lists from the 1-based positions of their retrieved positives.

    ``ranks`` is ``(..., m)``, increasing along the last axis (the j-th retrieved positive sits at
    position ``ranks[..., j]``); ``numpos`` >= m is the number of positives. Equals
    :func:`average_precision` (``kind="trapezoid"``) or :func:`vlfeat_ap` (``kind="vlfeat"``) of
    the corresponding lists; only positions of positives matter for either.
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    j = np.arange(1, ranks.shape[-1] + 1, dtype=np.float64)
    prec_at = j / ranks
    if kind == "vlfeat":
        return prec_at.sum(-1) / numpos
    if kind != "trapezoid":
        raise InputError(f"unknown AP kind {kind!r}; valid: trapezoid, vlfeat")
    prec_before = np.maximum(j - 1, SMALL) / np.maximum(ranks - 1, SMALL)
    return ((prec_before + prec_at) / 2).sum(-1) / numpos


# ---- two label blocks ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Block:
    """Scores of one label (all negatives or all positives), sorted increasing, -inf dropped.

    ``values`` (K,) float64 holds the retrieved scores (score > -inf); ``total`` counts them all.
    Built by :func:`block`; the ranking functions below take one block of each label.
    """

    values: np.ndarray
    total: int


def block(scores) -> Block:
    """Sort one label's scores for :func:`block_ap` and :func:`block_auc` (order within a label is irrelevant)."""
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if np.isnan(scores).any():
        raise InputError("scores contain NaN")
    values = np.sort(scores)
    return Block(values[np.searchsorted(values, -np.inf, side="right") :], int(scores.size))


def merged_ranks(neg: Block, pos: Block, negatives_first: bool = True) -> np.ndarray:
    """1-based ranks of the retrieved positives in the list [negatives; positives] ranked by score (stable).

    With ``negatives_first=False`` the list is [positives; negatives]. The two sorted blocks are
    merged by a stable sort of their concatenation (two sorted runs: a linear merge), so an exact
    tie between the labels goes to the block that comes first.
    """
    first, second = (neg, pos) if negatives_first else (pos, neg)
    key = np.concatenate((-first.values[::-1], -second.values[::-1]))  # increasing = best first
    order = np.argsort(key, kind="stable")
    is_pos = order >= len(first.values) if negatives_first else order < len(first.values)
    return np.flatnonzero(is_pos) + 1


def block_ap(neg: Block, pos: Block, negatives_first: bool = True, kind: str = "trapezoid") -> float:
    """AP of the list [negatives; positives] (``negatives_first``) or [positives; negatives].

    Equals :func:`average_precision` (``kind="trapezoid"``) or :func:`vlfeat_ap` (``"vlfeat"``) of
    the concatenated list with its labels: with a stable sort, an exact tie between the two labels
    goes to the block that comes first, and ties within a block do not change tp/fp. Sorting each
    block on its own and merging them avoids a stable sort of the whole list.
    """
    if pos.total == 0:
        return 0.0
    return float(ap_from_ranks(merged_ranks(neg, pos, negatives_first), pos.total, kind))


def block_auc(neg: Block, pos: Block, negatives_first: bool = True) -> float:
    """ROC AUC of the list [negatives; positives] (or [positives; negatives]): equals :func:`roc_auc`.

    The trapezoid over (fpr, tpr) of a ranked list is the sum, over retrieved negatives, of the
    positives ranked above each one, divided by #positives x #negatives; the sum is computed
    exactly in integers as, over retrieved positives, the retrieved negatives ranked below each one.
    """
    ranks = merged_ranks(neg, pos, negatives_first)
    neg_above = ranks - np.arange(1, len(ranks) + 1)
    below = int((len(neg.values) - neg_above).sum(dtype=np.int64))
    return float(below / max(pos.total, SMALL) / max(neg.total, SMALL))


# ---- distances ----------------------------------------------------------------------------------
def _as_distance(distance) -> Distance:
    try:
        return Distance(distance)
    except ValueError:
        raise InputError(f"unknown distance {distance!r}; valid: {', '.join(d.value for d in Distance)}") from None


def _check_pair(a: np.ndarray, b: np.ndarray, distance: Distance) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InputError(f"descriptor arrays must be (N, D) and (M, D); got {a.shape} and {b.shape}")
    if distance is Distance.HAMMING and (a.dtype != np.uint8 or b.dtype != np.uint8):
        raise InputError(f"Hamming distance needs uint8 packed bits; got {a.dtype} and {b.dtype}")
    return a, b


_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return _POPCOUNT[x]


def _signs(bits: np.ndarray) -> np.ndarray:
    """uint8 packed bits (N, B) -> float32 (N, 8B) of +-1."""
    return np.unpackbits(bits, axis=1).astype(np.float32) * 2 - 1


def pairwise_distances(a, b, distance=Distance.L2, squared: bool = False) -> np.ndarray:
    """All distances between rows of ``a`` (N, D) and ``b`` (M, D): (N, M) float64.

    ``squared`` returns squared L2 (the MATLAB protocol's distance; ignored for L1 and Hamming).
    """
    distance = _as_distance(distance)
    a, b = _check_pair(a, b, distance)
    if distance is Distance.HAMMING:
        nbits = 8 * a.shape[1]
        dot = _signs(a) @ _signs(b).T  # exact integers in float32 (|value| <= nbits < 2**24)
        return (nbits - dot.astype(np.float64)) / 2
    if distance is Distance.L1:
        ta = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
        tb = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float64))
        return torch.cdist(ta, tb, p=1).numpy()
    a64 = np.asarray(a, dtype=np.float64)
    b64 = np.asarray(b, dtype=np.float64)
    d2 = np.einsum("ij,ij->i", a64, a64)[:, None] + np.einsum("ij,ij->i", b64, b64)[None, :]
    d2 -= 2 * (a64 @ b64.T)
    np.maximum(d2, 0, out=d2)
    return d2 if squared else np.sqrt(d2, out=d2)


def rowwise_distances(a, b, distance=Distance.L2, squared: bool = False, chunk: int = 65536) -> np.ndarray:
    """Distances between corresponding rows of ``a`` and ``b`` (N, D): (N,) float64 (differences in float64)."""
    distance = _as_distance(distance)
    a, b = _check_pair(a, b, distance)
    if a.shape[0] != b.shape[0]:
        raise InputError(f"rowwise distances need the same number of rows; got {a.shape[0]} and {b.shape[0]}")
    out = np.empty(a.shape[0], dtype=np.float64)
    for s in range(0, a.shape[0], chunk):
        x, y = a[s : s + chunk], b[s : s + chunk]
        if distance is Distance.HAMMING:
            out[s : s + chunk] = _popcount(np.bitwise_xor(x, y)).sum(axis=1, dtype=np.int64)
            continue
        diff = np.subtract(x, y, dtype=np.float64)  # one pass: conversion and difference
        if distance is Distance.L1:
            out[s : s + chunk] = np.abs(diff).sum(axis=1)
        else:
            out[s : s + chunk] = _rowdot(diff)
    if distance is Distance.L2 and not squared:
        np.sqrt(out, out=out)
    return out


def _rowdot(x: np.ndarray) -> np.ndarray:
    """Sum of squares of each row (float64)."""
    if hasattr(np, "vecdot"):  # numpy >= 2: a SIMD dot per row
        return np.vecdot(x, x)
    return np.einsum("ij,ij->i", x, x)


def _row_kernel(a: np.ndarray, b: np.ndarray, work: np.ndarray, distance: Distance) -> np.ndarray:
    """Distances between rows of a and b (k, D) using the preallocated ``work`` (k, D) buffer."""
    if distance is Distance.HAMMING:
        np.bitwise_xor(a, b, out=work)
        return _popcount(work).sum(axis=1, dtype=np.int64)
    np.subtract(a, b, out=work, dtype=np.float64)  # computed in float64: exact for float32 inputs
    if distance is Distance.L1:
        return np.abs(work, out=work).sum(axis=1)
    return _rowdot(work)


def worker_count() -> int:
    """Threads for the numpy loops here: torch's intra-op thread count (honours OMP_NUM_THREADS), at most 4."""
    return max(1, min(4, torch.get_num_threads()))


def gathered_distances(
    table: np.ndarray,
    left: np.ndarray,
    rights: list[np.ndarray],
    distance=Distance.L2,
    squared: bool = False,
    order: np.ndarray | None = None,
    chunk: int = 256,
    workers: int | None = None,
) -> list[np.ndarray]:
    """Distances between rows ``table[left[i]]`` and ``table[right[i]]``, for each array in ``rights``.

    table (T, D); left and each right (M,) row indices; returns one (M,) float64 array per right,
    equal to :func:`rowwise_distances` of the gathered rows. ``order`` (a permutation of 0..M-1)
    is the visiting order, e.g. by left row so that those reads are sequential; a chunk's left rows
    are gathered once for all the rights. A chunk's rows and float64 differences stay in the core's
    cache (256 rows of 128 values: 0.5 MiB; 2048 rows took 1.5x as long). Chunks are shared among
    ``workers`` threads (numpy releases the GIL), each with its own buffers; the values do not depend
    on the split.
    """
    distance = _as_distance(distance)
    table = np.asarray(table)
    m, dim = len(left), table.shape[1]
    if order is not None:  # visit in this order: contiguous slices of permuted indices
        left, rights = left[order], [r[order] for r in rights]
    found = [np.empty(m, dtype=np.float64) for _ in rights]
    work_dtype = np.uint8 if distance is Distance.HAMMING else np.float64
    if distance is Distance.HAMMING and table.dtype != np.uint8:
        raise InputError(f"Hamming distance needs uint8 packed bits; got {table.dtype}")

    inside = all(not len(i) or (i.min() >= 0 and i.max() < len(table)) for i in [left, *rights])
    mode = "clip" if inside else "raise"  # clip skips the per-index check (and is faster) once all are valid

    def run(start: int, stop: int) -> None:
        a = np.empty((chunk, dim), dtype=table.dtype)
        b = np.empty_like(a)
        if distance is Distance.HAMMING:
            work = np.empty((chunk, dim), dtype=work_dtype)
        else:  # float64 copies: the left rows converted once for all the rights
            a64 = a if table.dtype == np.float64 else np.empty((chunk, dim), dtype=np.float64)
            b64 = b if table.dtype == np.float64 else np.empty((chunk, dim), dtype=np.float64)
        for s in range(start, stop, chunk):
            k = min(stop, s + chunk) - s
            np.take(table, left[s : s + k], axis=0, out=a[:k], mode=mode)
            if distance is not Distance.HAMMING and a64 is not a:
                np.copyto(a64[:k], a[:k])
            for right, out in zip(rights, found):
                np.take(table, right[s : s + k], axis=0, out=b[:k], mode=mode)
                if distance is Distance.HAMMING:
                    out[s : s + k] = _row_kernel(a[:k], b[:k], work[:k], distance)
                    continue
                if b64 is not b:
                    np.copyto(b64[:k], b[:k])
                diff = np.subtract(a64[:k], b64[:k], out=b64[:k])  # float64: as _row_kernel, exact for float32
                out[s : s + k] = np.abs(diff, out=diff).sum(axis=1) if distance is Distance.L1 else _rowdot(diff)

    workers = worker_count() if workers is None else max(1, int(workers))
    per = -(-m // (workers * chunk)) * chunk  # whole chunks per worker
    spans = [(s, min(m, s + per)) for s in range(0, m, per)] if m else []
    if len(spans) <= 1:
        for span in spans:
            run(*span)
    else:
        with ThreadPoolExecutor(len(spans)) as pool:
            for done in [pool.submit(run, *span) for span in spans]:
                done.result()
    if distance is Distance.L2 and not squared:
        for out in found:
            np.sqrt(out, out=out)
    if order is None:
        return found
    outs = [np.empty(m, dtype=np.float64) for _ in rights]
    for out, values in zip(outs, found):
        out[order] = values
    return outs
