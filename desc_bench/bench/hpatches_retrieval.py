"""HPatches patch retrieval (Balntas et al., CVPR 2017): the python and matlab protocols.

Public entry point :func:`evaluate_retrieval`, re-exported by :mod:`desc_bench.bench.hpatches_tasks`
(whose docstring states the protocols). Per query q (a ref patch) and noise level, the list is the
5 positives (patch q in images 1..5) followed by the distractors of other sequences in file order;
AP over its first k entries for each pool size k (python) or over all of it (matlab, VLFeat AP).

Only the positions of the 5 positives matter: the j-th positive (by distance, ties by image)
sits at rank j + #(pool distractors strictly closer), so the work is to count, for each query and
each of its 15 positive distances (3 noises x 5 images), the distractors below it in each pool.

Implementation: all queries against all distractors by a screen, per chunk of queries: with
hardware bfloat16 products (``screen="auto"`` where :func:`~desc_bench.bench.bf16_screen.available`)
the bfloat16 screen of :mod:`~desc_bench.bench.bf16_screen` (cache-sized tiles, chunks shared among
single-threaded workers), else one float32 GEMM per chunk (|d|^2 - 2 q.d on copies scaled by a power
of two). Either rules out every distractor farther than the query's farthest positive by more than
its proven error bound. The few left (typically well under 1 %) get their exact distance by float64
differences, computed exactly as the positives' distances (so equal vectors tie exactly), and are
counted per pool with one bincount; both screens give the same numbers. Counting ties
the other way (``<=``) costs nothing more and measures how much exact ties decide the number.
A chunk where too many distractors survive (a degenerate descriptor) is counted densely from the
float64 distance matrix of each sequence's queries instead (same numbers, slower).
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..adapters.base import Distance
from ..datasets.base import NOISE_NAMES, NOISES
from ..datasets.tasks import PatchList, TaskFiles
from ..errors import InputError
from . import bf16_screen
from .benchmarks.base import grouped_units
from .hpatches_common import (
    N_POSITIVES,
    POOL_SIZES,
    Descs,
    Score,
    check_descs,
    check_protocol,
    check_refs,
    constant_descriptor,
    degenerate_note,
    gather,
    needs_float64_scaling,
    power_of_two_scale,
    progress_bar,
    resolve_split,
    small_pages,
)
from .metrics import ap_from_ranks, pairwise_distances, rowwise_distances, worker_count

DISTRACTOR_TILE = 2048  # distractors per bfloat16 product tile (with 512 queries: 2 MiB of output)
DENSE_SHARE = 8  # a chunk is counted densely when more than 1/DENSE_SHARE of its entries survive the screen


def _sparse_counts(rows, pos, dist, thr, bounds) -> tuple[np.ndarray, np.ndarray]:
    """Counts of entries below each threshold in each pool, from the entries that can count.

    rows, pos, dist (E,): query row in the chunk, position in the query's list of distractors
    (0-based) and exact distance of each surviving entry; thr (R, J) thresholds; bounds (M,) pool
    lengths. Returns (R, J, M) counts of ``dist < thr`` and of ``dist <= thr`` within ``pos < bound``.
    """
    count, n_thr = thr.shape
    sorted_bounds = np.unique(bounds)
    n_pools = len(sorted_bounds)
    pool = np.searchsorted(sorted_bounds, pos, side="right")  # smallest (sorted) pool holding it; n_pools = none
    key = ((rows * n_thr)[:, None] + np.arange(n_thr)) * (n_pools + 1) + pool[:, None]  # (E, J)
    size = count * n_thr * (n_pools + 1)
    pick = np.searchsorted(sorted_bounds, bounds)
    out = []
    for hit in (dist[:, None] < thr[rows], dist[:, None] <= thr[rows]):
        hist = np.bincount(key[hit], minlength=size).reshape(count, n_thr, n_pools + 1)
        out.append(hist.cumsum(axis=2)[..., pick])
    return out[0], out[1]


def _dense_counts(dist: torch.Tensor, thr: torch.Tensor, bounds: Sequence[int], strict: bool) -> np.ndarray:
    """(R, J, M) counts of ``dist[q, :bounds[m]] < thr[q, j]`` (``<=`` unless strict) from a full (R, C) matrix."""
    count, n_thr = thr.shape
    sorted_bounds = torch.as_tensor(np.unique(bounds), dtype=torch.int64)
    n_pools = len(sorted_bounds)
    thr_sorted, perm = torch.sort(thr, dim=1, stable=True)
    # bucket = #thresholds <= entry (strict) or < entry: it counts for sorted threshold j iff bucket <= j
    bucket = torch.searchsorted(thr_sorted.contiguous(), dist.contiguous(), right=strict)
    pool = torch.searchsorted(sorted_bounds, torch.arange(dist.shape[1]), right=True)  # counts for pool u iff <= u
    key = (torch.arange(count)[:, None] * (n_pools + 1) + pool[None, :]) * (n_thr + 1) + bucket
    hist = torch.bincount(key.reshape(-1), minlength=count * (n_pools + 1) * (n_thr + 1))
    cum = hist.view(count, n_pools + 1, n_thr + 1).cumsum(1).cumsum(2)[:, :n_pools, :n_thr]
    out = torch.empty_like(cum)
    out.scatter_(2, perm[:, None, :].expand(-1, n_pools, -1), cum)
    pick = torch.as_tensor(np.searchsorted(sorted_bounds.numpy(), bounds))
    return out.permute(0, 2, 1)[:, :, pick].numpy()


def _ap(below: np.ndarray, pos: np.ndarray, kind: str) -> np.ndarray:
    """AP (R, noise, M) from counts below (R, noise * 5, M) and positive distances (R, noise, 5)."""
    below = below.reshape(pos.shape + below.shape[-1:])
    order = np.argsort(pos, axis=2, kind="stable")  # positives ranked by distance, ties by image
    below = np.take_along_axis(below, order[..., None], axis=2)
    ranks = np.arange(1, N_POSITIVES + 1)[None, None, :, None] + below
    return ap_from_ranks(np.moveaxis(ranks, 2, -1), N_POSITIVES, kind)


@small_pages()
def evaluate_retrieval(
    descs: Descs,
    tasks: TaskFiles,
    split,
    distance=Distance.L2,
    pool_sizes: Sequence[int] = POOL_SIZES,
    protocol: str = "python",
    progress: bool = False,
    chunk: int = 512,
    screen: str = "auto",
) -> list[Score]:
    """Patch retrieval: AP of each query's 5 positives among distractors of other sequences, per pool size."""
    check_protocol(protocol)
    split = resolve_split(split, tasks)
    pool_sizes = tuple(int(k) for k in pool_sizes)
    if protocol == "python" and (not pool_sizes or min(pool_sizes) <= N_POSITIVES):
        raise InputError(f"retrieval pool sizes must be larger than {N_POSITIVES}; got {pool_sizes}")
    queries: PatchList = tasks.queries(split.name)
    distractors: PatchList = tasks.distractors(split.name)
    sequences = sorted(set(queries.sequences) | set(distractors.sequences))
    chk = check_descs(descs, sequences, distance)
    check_refs(chk, queries.sequences, queries.seq, queries.idx, str(tasks.path("queries", split.name)))
    check_refs(chk, distractors.sequences, distractors.seq, distractors.idx, str(tasks.path("distractors", split.name)))
    l2 = chk.distance is Distance.L2  # only the order matters: compare squared L2 throughout
    zeros_q = np.zeros(len(queries), dtype=np.int64)
    q_desc = gather(chk, queries.sequences, queries.seq, zeros_q, queries.idx, "e")
    d_desc = gather(
        chk, distractors.sequences, distractors.seq, np.zeros(len(distractors), np.int64), distractors.idx, "e"
    )
    images = [
        gather(chk, queries.sequences, queries.seq, zeros_q + i, queries.idx, noise)
        for noise in NOISES
        for i in range(1, N_POSITIVES + 1)
    ]
    scale = power_of_two_scale(q_desc, d_desc, *images) if chk.distance is not Distance.HAMMING else 1.0
    exact_scale = 1.0
    if needs_float64_scaling(q_desc.dtype) and chk.distance is not Distance.HAMMING:  # no float64 overflow
        exact_scale = scale
        q_desc, d_desc = q_desc.astype(np.float64) * scale, d_desc.astype(np.float64) * scale
        images = [img.astype(np.float64) * scale for img in images]
    pos = np.stack([rowwise_distances(q_desc, img, chk.distance, squared=l2) for img in images], axis=1)
    pos = pos.reshape(len(queries), len(NOISES), N_POSITIVES)  # (Q, noise, image)
    del images

    # each query's list: distractors of other sequences, in file order
    code = {n: k for k, n in enumerate(sequences)}
    q_seq = np.array([code[n] for n in queries.sequences], dtype=np.int64)[queries.seq]
    d_seq = np.array([code[n] for n in distractors.sequences], dtype=np.int64)[distractors.seq]
    same_before = np.zeros((len(sequences), len(distractors) + 1), dtype=np.int64)  # same-sequence ones before c
    same_before[d_seq, np.arange(1, len(distractors) + 1)] = 1
    same_before = same_before.cumsum(axis=1)
    if protocol == "python":
        pool_labels = [f"pool={k}" for k in pool_sizes]
        pools = np.array([k - N_POSITIVES for k in pool_sizes], dtype=np.int64)
    else:
        pool_labels = ["pool=all"]
        pools = np.array([len(distractors)], dtype=np.int64)  # every list is shorter: the whole list
    kind = "trapezoid" if protocol == "python" else "vlfeat"

    bf16 = l2 and bf16_screen.chosen(screen)
    ratio2 = (scale / exact_scale) ** 2  # exact distances -> screen units
    if bf16:  # d^2 + E, see bf16_screen: an entry can be a distractor below the threshold iff <= T
        q_tab, d_tab, err = bf16_screen.tables(q_desc, [d_desc], scale / exact_scale)
        d_t = d_tab.T
    elif l2:  # the float32 screen: |d|^2 - 2 q.d, scaled by a power of two (exact, same ranking)
        q32 = np.multiply(q_desc, scale / exact_scale, dtype=np.float32)
        d32 = np.multiply(d_desc, scale / exact_scale, dtype=np.float32)
        d_norm = np.einsum("ij,ij->i", d32, d32, dtype=np.float64)
        q_norm = np.einsum("ij,ij->i", q32, q32, dtype=np.float64)
        d_m2 = -2 * d32  # exact
        d_norm32 = d_norm.astype(np.float32)
        eps = float(np.finfo(np.float32).eps)
        d_max = float(np.sqrt(d_norm.max())) if len(d_norm) else 0.0
        tol = 8 * (q_desc.shape[1] + 4) * eps * (np.sqrt(q_norm) + d_max) ** 2 + 1e-30
    ap = np.empty((2, len(queries), len(NOISES), len(pools)))  # (tie rule: protocol's, other) x ...
    order = np.argsort(q_seq, kind="stable")

    def survivors(r: np.ndarray, thr: np.ndarray):
        """(rows, cols, exact distances or None) of the entries that can rank above a positive (any order)."""
        if bf16:
            top = thr.max(axis=1) * ratio2
            limit = bf16_screen.floor_bits((top * (1 + 2.0**-40) + 2 * err[r]) / (1 - bf16_screen.R))
            found = []
            for c in range(0, len(distractors), DISTRACTOR_TILE):  # tiles in the core's cache
                g = torch.mm(q_tab[r], d_t[:, c : c + DISTRACTOR_TILE]).view(torch.int16).numpy()
                rows, cols = np.divmod(np.flatnonzero(g <= limit[:, None]), g.shape[1])
                found.append((rows, cols + c))
            return np.concatenate([f[0] for f in found]), np.concatenate([f[1] for f in found]), None
        if l2:
            g = q32[r] @ d_m2.T
            g += d_norm32
            limit = (thr.max(axis=1) * ratio2 - q_norm[r] + tol[r]).astype(np.float32)
            rows, cols = np.divmod(np.flatnonzero(g <= limit[:, None]), g.shape[1])  # row-major, as nonzero
            return rows, cols, None
        dist = pairwise_distances(q_desc[r], d_desc, chk.distance)
        rows, cols = np.nonzero(dist <= thr.max(axis=1)[:, None])
        return rows, cols, dist[rows, cols]

    def run(s: int) -> None:
        r = order[s : s + chunk]
        thr = pos[r].reshape(len(r), -1)  # (R, 15)
        rows, cols, exact = survivors(r, thr)
        other = d_seq[cols] != q_seq[r][rows]
        rows, cols = rows[other], cols[other]
        if len(rows) * DENSE_SHARE > len(r) * len(distractors):
            below = _dense_chunk(r, q_desc, d_desc, q_seq, d_seq, thr, pools, chk.distance)
        else:
            if l2:
                exact = rowwise_distances(q_desc[r][rows], d_desc[cols], chk.distance, squared=True)
            else:
                exact = exact[other]
            position = cols - same_before[q_seq[r][rows], cols]
            below = _sparse_counts(rows, position, exact, thr, pools)  # a pool past the list's end = the list
        for rule in (0, 1):
            ap[rule, r] = _ap(below[rule], pos[r], kind)

    starts = range(0, len(order), chunk)
    workers = min(worker_count(), len(starts)) if bf16 else 1  # single-threaded products, chunks shared
    with torch.inference_mode():
        if workers > 1:
            with ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                for done in progress_bar(pool.map(run, starts), progress, desc="retrieval", total=len(starts)):
                    del done
        else:
            for s in progress_bar(starts, progress, desc="retrieval"):
                run(s)
    return _retrieval_scores(ap, pool_labels, protocol, constant_descriptor(chk), [sequences[c] for c in q_seq])


def _dense_chunk(r, q_desc, d_desc, q_seq, d_seq, thr, pools, distance) -> tuple[np.ndarray, np.ndarray]:
    """Counts (both tie rules) for the queries ``r`` from full float64 distance matrices, sequence by sequence."""
    out = [np.empty((len(r), thr.shape[1], len(pools)), dtype=np.int64) for _ in range(2)]
    seqs = q_seq[r]
    for seq in np.unique(seqs):
        sel = np.flatnonzero(seqs == seq)
        others = d_desc[d_seq != seq]
        dist = torch.from_numpy(pairwise_distances(q_desc[r[sel]], others, distance, squared=True))
        t = torch.from_numpy(thr[sel])
        for rule, strict in ((0, True), (1, False)):
            out[rule][sel] = _dense_counts(dist, t, pools, strict)
    return out[0], out[1]


def _retrieval_scores(
    ap: np.ndarray, labels: list[str], protocol: str, constant: bool, query_sequences: list[str] | None = None
) -> list[Score]:
    """Score rows from AP (rule, Q, noise, pool): means over queries, then noises and pools.

    With ``query_sequences`` (each query's sequence) every score carries its per-sequence units
    (mean AP of the sequence's queries, weighted by their count): queries of one sequence are not
    independent, so intervals resample sequences.
    """
    per = ap.mean(axis=1)  # (rule, noise, pool)
    cells = []
    for m, label in enumerate(labels):
        for n, noise in enumerate(NOISES):
            cells.append((NOISE_NAMES[noise], label, per[:, n, m], ap[0, :, n, m]))
        cells.append(("mean", label, per[:, :, m].mean(axis=1), ap[0, :, :, m].mean(axis=1)))
    if protocol == "python":
        for n, noise in enumerate(NOISES):
            cells.append((NOISE_NAMES[noise], "pool=mean", per[:, n].mean(axis=1), ap[0, :, n].mean(axis=1)))
        cells.append(("mean", "pool=mean", per.mean(axis=(1, 2)), ap[0].mean(axis=(1, 2))))
    return [
        Score(
            "retrieval",
            "map",
            noise,
            "all",
            label,
            float(v[0]),
            degenerate_note(constant, float(v[0]), float(v[1])),
            grouped_units("sequence", query_sequences, per_query) if query_sequences else None,
        )
        for noise, label, v, per_query in cells
    ]
