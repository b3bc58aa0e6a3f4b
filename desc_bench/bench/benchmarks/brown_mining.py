"""Hard-negative mining of the SNN-mAP protocol (:mod:`desc_bench.bench.benchmarks.brown_snn`).

For each anchor of a group (the patches of one reference image), the nearest patch of another 3D
point, with brown_phototour_revisited's semantics: ``numpy`` (scipy ``cdist`` in float64, argmin =
first index on ties) or ``pytorch`` (float32 ``torch.cdist`` per batch of 128, :func:`mine_torch`).

The numpy semantics are reproduced exactly and fast: squared distances by float32 matrix products,
each block of the group's distance matrix computed once and used for both its rows and its columns
(:func:`mine_group`); rows whose two nearest candidates lie within float32 rounding of each other
are redone by :func:`mine_rows`, which recomputes the candidates as scipy rounds them.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial.distance import cdist

PENALTY = 1000.0  # upstream's offsets: cdist + 1000 * same point + 1000 * itself
BATCH = 128  # upstream's mining batch (pytorch semantics)
CHUNK_ELEMENTS = 1 << 23  # distance-matrix entries per chunk (32 MB in float32)
BLOCK = 1024  # side of the blocks of the symmetric pass


def _tolerance(hamming: bool, dim: int, norms_rows: np.ndarray, norm_max: float) -> np.ndarray:
    """Per row, a bound on the float32 error of its squared distances: relative to |a|^2 + max |x|^2,
    or 0.5 for Hamming counts on bits (exact integers in float32, so 0.5 keeps only exact ties)."""
    if hamming:
        return np.full(len(norms_rows), 0.5)
    return 2e-6 * dim * (norms_rows + norm_max)


def _exact_row(x: np.ndarray, a: int, labels: np.ndarray, hamming: bool, exact_mask: bool) -> np.ndarray:
    """One anchor's masked distances to its group, exactly as upstream (scipy ``cdist``, float64)."""
    row = cdist(x[a : a + 1], x, metric="hamming" if hamming else "euclidean")[0]  # scipy's own rounding
    same = labels == labels[a]
    if exact_mask:
        row[same] = np.inf
        return row
    row = row + PENALTY * same  # upstream: cdist + 1000 * pos_mask + 1000 * eye
    row[a] += PENALTY
    return row


def _scipy_euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise L2 distances rounded as scipy's ``cdist`` rounds them (float64, summed in order)."""
    diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    total = np.zeros(len(diff))
    for k in range(diff.shape[1]):
        total += diff[:, k] * diff[:, k]
    return np.sqrt(total)


def mine_rows(
    x: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    pairs: tuple[np.ndarray, np.ndarray],
    hamming: bool,
    fixed: bool,
) -> np.ndarray:
    """Hardest negatives (group-local index, -1 if none) of anchors ``rows`` (sorted) of group ``x``
    ``(NN, D)``; ``pairs`` the group's local (anchor, positive) indices sorted by anchor.

    The nearest patch of another 3D point by float32 matrix products in chunks (the anchor and its
    positives masked); where the second nearest lies within float32 rounding of the nearest, the
    candidates are recomputed as scipy computes them (float64, summed in order: bit for bit), and
    exact ties go to the first index, as argmin. Hamming counts on bits are exact integers. Under
    the published rule that nearest negative is upstream's argmin whenever it is closer than the
    1000 offset; rows where it is not (huge distances, or no negative at all) are recomputed
    literally with scipy.
    """
    xt = torch.from_numpy(np.asarray(x, dtype=np.float32))
    norms = (xt * xt).sum(1)
    norms_np = norms.numpy()
    norm_max = float(norms_np.max()) if len(x) else 0.0
    pair_anchor, pair_positive = pairs
    out = np.empty(len(rows), np.int64)
    step = max(1, CHUNK_ELEMENTS // len(x))
    inf = float("inf")
    for s in range(0, len(rows), step):
        r = rows[s : s + step]
        # |x|^2 - 2 a.x: the squared distances less |a|^2, a constant per row (added back to the minima)
        sq = torch.addmm(norms[None], torch.from_numpy(np.take(xt.numpy(), r, axis=0)), xt.T, alpha=-2.0)
        lo, hi = np.searchsorted(pair_anchor, [r[0], r[-1] + 1])
        at = np.searchsorted(r, pair_anchor[lo:hi])  # rows of these pairs' anchors (when in r)
        mine = r[np.minimum(at, len(r) - 1)] == pair_anchor[lo:hi]
        masked_rows = np.r_[np.arange(len(r)), at[mine]]
        masked_cols = np.r_[r, pair_positive[lo:hi][mine]]
        sq.view(-1).index_fill_(0, torch.from_numpy(masked_rows * len(x) + masked_cols), inf)  # itself, positives
        k = min(2, len(x))
        values, index = torch.topk(sq, k, dim=1, largest=False)
        values = values.numpy()
        best, nearest = index[:, 0].numpy().copy(), values[:, 0] + norms_np[r]
        if k == 2:
            tol = _tolerance(hamming, x.shape[1], norms_np[r], norm_max)
            several = np.flatnonzero((values[:, 1] <= values[:, 0] + tol) & np.isfinite(nearest))
            if len(several):  # near or exact ties: recompute the candidates exactly
                bound = torch.from_numpy(values[several, 0] + tol[several])[:, None]
                close = sq.index_select(0, torch.from_numpy(several)) <= bound
                rr, cc = close.nonzero(as_tuple=True)
                rr, cc = several[rr.numpy()], cc.numpy()
                if hamming:
                    exact = sq.view(-1)[torch.from_numpy(rr * len(x) + cc)].numpy()  # exact integers (less |a|^2)
                else:
                    exact = _scipy_euclidean(x[r[rr]], x[cc])
                order = np.lexsort((cc, exact, rr))  # per row: smallest distance, then first index
                first = np.r_[True, rr[order][1:] != rr[order][:-1]]
                best[rr[order][first]] = cc[order][first]
        none = ~np.isfinite(nearest)
        if fixed:
            best[none] = -1  # no negative in the group
        else:
            # Hamming fractions are at most 1: only a row without negatives can differ from upstream
            beyond = np.zeros_like(none) if hamming else nearest >= (0.999 * PENALTY) ** 2
            for c in np.flatnonzero(none | beyond):
                best[c] = int(np.argmin(_exact_row(x, int(r[c]), labels, hamming, fixed)))
        out[s : s + step] = best
    return out


def mine_torch(x32: torch.Tensor, labels: np.ndarray, mined_until: int, exact_mask: bool) -> np.ndarray:
    """Upstream's pytorch path, batch by batch of 128 anchors: float32 ``torch.cdist`` + offsets."""
    n = len(x32)
    out = np.zeros(n, np.int64)
    labels_t = torch.from_numpy(labels)
    for st in range(0, mined_until, BATCH):
        fin = min(n, st + BATCH)
        d = torch.cdist(x32[st:fin], x32, p=2)
        same = labels_t[st:fin, None] == labels_t[None]
        eye = torch.zeros_like(same)
        eye[torch.arange(fin - st), torch.arange(st, fin)] = True
        if exact_mask:
            dm = d.masked_fill(same, float("inf"))
            best = torch.min(dm, 1)[1].numpy().copy()
            best[~torch.isfinite(dm.min(1).values).numpy()] = -1
        else:
            dm = d + PENALTY * same.to(dtype=x32.dtype) + PENALTY * eye.float()
            best = torch.min(dm, 1)[1].numpy()
        out[st:fin] = best
    return out


# ------------------------------------------------------------------------------------ distances


def mine_group(
    x: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    pairs: tuple[np.ndarray, np.ndarray],
    hamming: bool,
    fixed: bool,
) -> np.ndarray:
    """The hardest negatives of anchors ``rows`` of one group (see :func:`mine_rows`)."""
    return mine_rows(x, labels, rows, pairs, hamming, fixed)
