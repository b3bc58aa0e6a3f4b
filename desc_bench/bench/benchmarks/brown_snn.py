"""SNN-mAP, the revisited Brown protocol: ``evaluate_mAP_snn_based`` of brown_phototour_revisited 0.3.0.

Upstream (ducha-aiki/brown_phototour_revisited, ``benchmarking.py``), for each reference image id
in sorted order, over the patches of that image in file order (a *group* of ``NN`` patches):

1. every ordered (anchor, positive) pair of two different patches of the same 3D point;
2. the anchor's hardest negative ``n``: the argmin over the group of
   ``d(a, .) + 1000 [same point] + 1000 [itself]``, computed **only when NN > 1000**, and then only
   for the first ``128 floor(NN / 128)`` anchors (batches of 128); every other anchor uses the
   group's first patch as its "negative" (``neg_idx`` starts as zeros) -- which may be the anchor
   itself or one of its positives;
3. ``correct = d(a, p) <= d(a, n)``, ``snn = min / max`` of the two (0/0 -> 1), and the group's AP is
   sklearn's ``average_precision_score(correct, 1 - snn)`` (step-wise, tied scores grouped);
4. the mean of the groups' APs.

Modes: ``published`` follows that rule as written (the README numbers come from it); ``fixed`` mines
every anchor, among the group's patches of *other* 3D points only (exact exclusion instead of the
+1000 offsets, which only excludes when distances stay under 1000). An anchor with no negative in
its group (never in the real data) counts as correct with snn 0.

Backends, as upstream computes distances (the ``backend`` argument of the package):
- ``numpy``: hardest negatives by scipy ``cdist`` (float64; ``hamming`` = fraction of differing
  entries, here of the unpacked bits); pair distances by sklearn ``paired_distances`` (float32 when
  the descriptors are float32, else float64: ``sqrt(einsum(diff, diff))``).
- ``pytorch``: descriptors as float32; ``torch.cdist`` per batch of 128 anchors for the mining and
  ``torch.nn.functional.pairwise_distance`` (which adds eps = 1e-6 to each difference) for the pairs.
  Upstream's pytorch path is broken for Hamming (``p=0`` with that eps counts every coordinate, and
  the negatives use ``p=2``): refused here.

This implementation is vectorised: pairs and APs of all groups at once (numpy), hard negatives per
group with float32 matrix products in chunks (candidates within rounding of the nearest are
recomputed in float64, so exact ties go to the first index as scipy's argmin).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import InputError
from .brown_mining import BATCH, mine_group, mine_torch

MODES = ("published", "fixed")
BACKENDS = ("numpy", "pytorch")
DISTANCES = ("l2", "hamming")
MINED_ABOVE = 1000  # upstream mines hard negatives only in groups of more than this many patches
# (and there only anchors in full batches of BATCH = 128: the rest are not mined)
_PAIR_CHUNK = 1 << 16


@dataclass(frozen=True)
class SnnResult:
    """``value`` the mean AP; ``images`` ``(G,)`` image ids and ``aps`` ``(G,)`` their APs (sorted by id)."""

    value: float
    images: np.ndarray
    aps: np.ndarray
    pairs: int  # (anchor, positive) pairs scored
    unmined: int  # anchors (with a positive) that used the group's first patch (published mode)
    skipped: int  # groups without any (anchor, positive) pair (left out of the mean)


# ------------------------------------------------------------------------------------ input


def _prepare(descriptors, distance: str, backend: str) -> np.ndarray:
    """The vectors distances are computed on: float (L2) or 0/1 bits as float64 (Hamming)."""
    x = np.asarray(descriptors)
    if x.ndim != 2 or len(x) == 0:
        raise InputError(f"SNN-mAP needs (N, dim) descriptors; got shape {x.shape}")
    if distance == "hamming":
        if x.dtype != np.uint8:
            raise InputError(f"Hamming SNN-mAP takes packed uint8 descriptors; got {x.dtype}")
        return np.unpackbits(x, axis=1, bitorder="little").astype(np.float64)
    if not np.issubdtype(x.dtype, np.number):
        raise InputError(f"SNN-mAP needs numeric descriptors; got {x.dtype}")
    if not np.isfinite(x).all():
        raise InputError("descriptors contain NaN or infinite values")
    if backend == "pytorch":
        return np.ascontiguousarray(x, dtype=np.float32)
    return np.ascontiguousarray(x, dtype=np.float32 if x.dtype == np.float32 else np.float64)


def _check(distance: str, mode: str, backend: str) -> None:
    for name, value, valid in (
        ("mode", mode, MODES),
        ("backend", backend, BACKENDS),
        ("distance", distance, DISTANCES),
    ):
        if value not in valid:
            raise InputError(f"SNN-mAP {name} {value!r} is not one of {', '.join(valid)}")
    if distance == "hamming" and backend == "pytorch":
        raise InputError(
            "the pytorch backend of brown_phototour_revisited computes Hamming distances wrongly (p=0 with eps, p=2 "
            "for negatives); use backend=numpy"
        )


# ------------------------------------------------------------------------------------ pairs


def positive_pairs(points: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every ordered (anchor, positive) of different patches with the same point and image: ``(T,)`` each."""
    n = len(points)
    order = np.lexsort((np.arange(n), points, images))
    key_p, key_i = points[order], images[order]
    starts = np.flatnonzero(np.r_[True, (key_p[1:] != key_p[:-1]) | (key_i[1:] != key_i[:-1])])
    sizes = np.diff(np.r_[starts, n])
    member_size = np.repeat(sizes, sizes)
    member_start = np.repeat(starts, sizes)
    local = np.arange(n) - member_start
    reps = member_size - 1
    anchors = np.repeat(order, reps)
    t = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
    anchor_local = np.repeat(local, reps)
    positive_local = t + (t >= anchor_local)
    positives = order[np.repeat(member_start, reps) + positive_local]
    return anchors, positives


# ------------------------------------------------------------------------------------ mining


def _pair_distances(x: np.ndarray, a: np.ndarray, b: np.ndarray, distance: str, backend: str) -> np.ndarray:
    out = np.empty(len(a), dtype=np.float64 if distance == "hamming" else x.dtype)
    for s in range(0, len(a), _PAIR_CHUNK):
        xa, xb = np.take(x, a[s : s + _PAIR_CHUNK], axis=0), np.take(x, b[s : s + _PAIR_CHUNK], axis=0)
        if distance == "hamming":  # scipy.spatial.distance.hamming: mean of (u != v)
            out[s : s + _PAIR_CHUNK] = np.count_nonzero(xa != xb, axis=1) / x.shape[1]
        elif backend == "pytorch":
            out[s : s + _PAIR_CHUNK] = F.pairwise_distance(torch.from_numpy(xa), torch.from_numpy(xb), p=2).numpy()
        else:  # sklearn paired_euclidean_distances = row_norms(X - Y) = sqrt(einsum(diff, diff)), same dtype
            diff = xa - xb
            out[s : s + _PAIR_CHUNK] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


# ------------------------------------------------------------------------------------ AP


def grouped_average_precision(groups: np.ndarray, scores: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """sklearn's ``average_precision_score(labels, scores)`` for each group ``0..count-1`` at once.

    Step-wise AP: sum over distinct score thresholds (descending) of (recall step) x precision, with
    tied scores one threshold; 0 for a group without a positive label (as sklearn, with its warning).
    """
    order = np.lexsort((-scores.astype(np.float64), groups))
    g, s, y = groups[order], scores[order], labels[order].astype(np.float64)
    n = len(g)
    group_start = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if n else np.zeros(0, np.int64)
    starts_per_item = np.repeat(group_start, np.diff(np.r_[group_start, n]))
    cum = np.cumsum(y)
    before = np.where(group_start > 0, cum[np.maximum(group_start - 1, 0)], 0.0)
    tp = cum - np.repeat(before, np.diff(np.r_[group_start, n]))
    rank = np.arange(n) - starts_per_item + 1
    last = np.r_[(g[1:] != g[:-1]) | (s[1:] != s[:-1]), True] if n else np.zeros(0, bool)
    tp_end, rank_end, g_end = tp[last], rank[last], g[last]
    prev = np.r_[0.0, tp_end[:-1]]
    prev[np.r_[True, g_end[1:] != g_end[:-1]]] = 0.0
    total = np.zeros(count)
    np.add.at(total, g, y)
    ap = np.zeros(count)
    np.add.at(ap, g_end, (tp_end - prev) * (tp_end / rank_end))
    return np.divide(ap, total, out=np.zeros(count), where=total > 0)


# ------------------------------------------------------------------------------------ protocol


def snn_map(
    descriptors, point_ids, image_ids, *, mode: str = "published", backend: str = "numpy", distance: str = "l2"
) -> SnnResult:
    """SNN-mAP of ``descriptors`` ``(N, dim)`` (float for L2, packed uint8 for Hamming) over the groups
    of ``image_ids`` ``(N,)``, positives from ``point_ids`` ``(N,)``; see the module docstring."""
    _check(distance, mode, backend)
    x = _prepare(descriptors, distance, backend)
    points, images = np.asarray(point_ids).ravel(), np.asarray(image_ids).ravel()
    if len(points) != len(x) or len(images) != len(x):
        raise InputError(f"{len(x)} descriptors but {len(points)} point ids and {len(images)} image ids")
    anchors, positives = positive_pairs(points, images)
    unique, group_of = np.unique(images, return_inverse=True)
    negatives = np.full(len(x), -1, np.int64)
    needs = np.zeros(len(x), bool)
    needs[anchors] = True
    order = np.argsort(group_of, kind="stable")
    bounds = np.r_[0, np.cumsum(np.bincount(group_of, minlength=len(unique)))]
    local_index = np.empty(len(x), np.int64)  # position of each patch in its group (file order)
    local_index[order] = np.arange(len(x)) - bounds[group_of[order]]
    pair_group, pair_anchor, pair_positive = group_of[anchors], local_index[anchors], local_index[positives]
    by_group = np.lexsort((pair_anchor, pair_group))
    pair_group, pair_anchor, pair_positive = pair_group[by_group], pair_anchor[by_group], pair_positive[by_group]
    pair_bounds = np.searchsorted(pair_group, np.arange(len(unique) + 1))
    unmined = 0
    x32 = torch.from_numpy(np.asarray(x, np.float32)) if backend == "pytorch" else None
    for gi in range(len(unique)):
        members = order[bounds[gi] : bounds[gi + 1]]  # group's patches in file order
        nn = len(members)
        if not needs[members].any():
            continue
        if mode == "published":
            mined_until = BATCH * (nn // BATCH) if nn > MINED_ABOVE else 0
        else:
            mined_until = nn
        local = np.zeros(nn, np.int64)  # upstream: neg_idx = zeros -> the group's first patch
        rows = np.flatnonzero(needs[members][:mined_until])
        unmined += int(needs[members][mined_until:].sum())
        if len(rows):
            labels = points[members]
            if backend == "pytorch":
                mined = mine_torch(x32[torch.from_numpy(members)], labels, mined_until, mode == "fixed")[rows]
            else:
                span = slice(pair_bounds[gi], pair_bounds[gi + 1])
                group_pairs = (pair_anchor[span], pair_positive[span])
                mined = mine_group(x[members], labels, rows, group_pairs, distance == "hamming", mode == "fixed")
            local[rows] = mined
        negatives[members] = np.where(local >= 0, members[np.maximum(local, 0)], -1)
    neg = negatives[anchors]
    pos_d = _pair_distances(x, anchors, positives, distance, backend)
    has_neg = neg >= 0
    neg_d = np.full(len(anchors), np.inf, dtype=pos_d.dtype)
    neg_d[has_neg] = _pair_distances(x, anchors[has_neg], neg[has_neg], distance, backend)
    correct = pos_d <= neg_d
    with np.errstate(invalid="ignore", divide="ignore"):
        snn = np.minimum(pos_d, neg_d) / np.maximum(pos_d, neg_d)
    snn[np.isnan(snn)] = 1.0
    snn[~has_neg] = 0.0
    scores = 1 - snn
    groups = group_of[anchors]
    aps = grouped_average_precision(groups, scores, correct, len(unique))
    scored = np.bincount(groups, minlength=len(unique)) > 0
    if not scored.any():
        raise InputError("SNN-mAP: no group holds two patches of one 3D point; nothing to score")
    return SnnResult(
        value=float(np.mean(aps[scored])),
        images=unique[scored],
        aps=aps[scored],
        pairs=len(anchors),
        unmined=unmined,
        skipped=int((~scored).sum()),
    )
