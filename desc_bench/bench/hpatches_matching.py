"""HPatches image matching (Balntas et al., CVPR 2017): nearest neighbours of ref patches in images 1..5.

Public entry point :func:`evaluate_matching`, re-exported by :mod:`desc_bench.bench.hpatches_tasks`
(whose docstring states the protocols). For each sequence, noise level and image i, every ref
descriptor's nearest neighbour in image i (the first one on exact ties, as numpy's argmin over
scipy's cdist in the official code); a match is right when it is the same patch; AP of the
matches ranked by -distance with numpos = N.

Implementation (L2): with hardware bfloat16 products (``screen="auto"`` where
:func:`~desc_bench.bench.bf16_screen.available`), the bfloat16 screen of
:mod:`~desc_bench.bench.bf16_screen`, one cache-sized product per chunk of ref rows and image; the
rows it leaves uncertain are decided among their candidates by exact float64 differences (rows with
more than :data:`CANDIDATES_PER_ROW` candidates by the float32 screen). Sequences are shared among
worker threads, each running single-threaded products (no thread team waiting on a busy core).
The float32 screen: one GEMM per sequence and noise level, ``[a, 1] @ [-2 b, |b|^2]^T``
for the 5 images at once (|b|^2 - 2 a.b, the row's |a|^2 does not change its argmin), on copies
scaled by a power of two (exact: no overflow or underflow, same ranking). Every row whose
runner-up lies within the float32 error bound of its best is re-decided by exact float64
differences, so the choice equals that of a difference-based computation. Both screens give the
same indices and so the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..adapters.base import Distance
from ..datasets.base import NOISE_NAMES, NOISES
from ..datasets.tasks import TaskFiles
from . import bf16_screen
from .benchmarks.base import per_unit
from .hpatches_common import (
    N_POSITIVES,
    Descs,
    Score,
    check_descs,
    check_protocol,
    constant_descriptor,
    degenerate_note,
    needs_float64_scaling,
    power_of_two_scale,
    progress_bar,
    resolve_split,
    small_pages,
)
from .metrics import average_precision, pairwise_distances, rowwise_distances, vlfeat_ap, worker_count

EPS32 = float(np.finfo(np.float32).eps)
CANDIDATES_PER_ROW = 64  # more candidates of the bfloat16 screen in one image: the row takes the float32 screen


class _Scratch:
    """One reusable float32 buffer for the GEMM outputs (no fresh pages for every product)."""

    def __init__(self) -> None:
        self.buffer = np.empty(0, dtype=np.float32)

    def get(self, rows: int, cols: int) -> np.ndarray:
        if self.buffer.size < rows * cols:
            self.buffer = np.empty(rows * cols, dtype=np.float32)
        return self.buffer[: rows * cols].reshape(rows, cols)


def nearest(
    a: np.ndarray,
    images: Sequence[np.ndarray],
    distance: Distance,
    scratch: _Scratch | None = None,
    screen: str = "auto",
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each ``b`` in ``images``: (index of the nearest row of b for each row of a, its distance).

    a (N, D), each b (M_i, D). The first index wins on exact ties. L2 screens with the bfloat16
    product of :mod:`~desc_bench.bench.bf16_screen` (``screen="bfloat16"``; ``"auto"`` where the CPU
    has it) and decides its ambiguous rows, or all rows (``"float32"``), by the scaled float32 GEMM of
    the module docstring, re-deciding near ties exactly; both give the same indices. The distances
    are those of the inputs (or of the scaled inputs for 64-bit inputs: the same ranking, no float64
    overflow).
    """
    if distance is not Distance.L2:
        out = []
        for b in images:
            nn = pairwise_distances(a, b, distance).argmin(axis=1)
            out.append((nn, rowwise_distances(a, b[nn], distance)))
        return out
    scale = power_of_two_scale(a, *images)
    wide = needs_float64_scaling(a.dtype) or any(needs_float64_scaling(b.dtype) for b in images)
    if bf16_screen.chosen(screen):
        nns = _bf16_nearest(a, images, scale, wide, scratch)
    else:
        nns = _float32_nearest(a, images, scratch or _Scratch())
    if wide:
        a, images = a.astype(np.float64) * scale, [b.astype(np.float64) * scale for b in images]
    return [(nn, rowwise_distances(a, b[nn], distance)) for nn, b in zip(nns, images)]


def _bf16_nearest(a, images, scale: float, wide: bool, scratch: _Scratch | None) -> list[np.ndarray]:
    """Exact L2 nearest neighbours (first on ties) by the bfloat16 screen, candidates decided in float64.

    Rows with more than :data:`CANDIDATES_PER_ROW` candidates in an image (near-constant
    descriptors) go through the float32 screen instead, which leaves far fewer.
    """
    offsets = np.cumsum([0] + [len(b) for b in images])
    nns, candidates = bf16_screen.screen(*bf16_screen.tables(a, images, scale), offsets)
    if wide:  # exact decisions on scaled float64 copies, as the distances
        a, images = a.astype(np.float64) * scale, [b.astype(np.float64) * scale for b in images]
    crowded = np.zeros(len(a), dtype=bool)
    for nn, b, (rows, cols) in zip(nns, images, candidates):
        if not len(rows):
            continue
        count = np.bincount(rows, minlength=len(a))
        crowded |= count > CANDIDATES_PER_ROW
        keep = ~crowded[rows]
        rows, cols = rows[keep], cols[keep]
        if len(rows):
            d = rowwise_distances(a[rows], b[cols], Distance.L2, squared=True)
            order = np.lexsort((cols, d, rows))  # by row, then distance, then column: first = the choice
            first = np.flatnonzero(np.r_[True, rows[order][1:] != rows[order][:-1]])
            nn[rows[order][first]] = cols[order][first]
    if crowded.any():
        sel = np.flatnonzero(crowded)
        for nn, sure in zip(nns, _float32_nearest(a[sel], images, scratch or _Scratch())):
            nn[sel] = sure
    return nns


def _float32_nearest(a: np.ndarray, images: Sequence[np.ndarray], scratch: _Scratch) -> list[np.ndarray]:
    """Exact L2 nearest neighbours (first on ties) by the scaled float32 GEMM and float64 re-decisions."""
    n, dim = a.shape
    scale = power_of_two_scale(a, *images)
    a_aug = np.ones((n, dim + 1), dtype=np.float32)
    np.multiply(a, scale, out=a_aug[:, :dim], casting="unsafe")
    a_norm = np.sqrt(np.einsum("ij,ij->i", a_aug[:, :dim], a_aug[:, :dim], dtype=np.float64))
    offsets = np.cumsum([0] + [len(b) for b in images])
    b_aug = np.empty((offsets[-1], dim + 1), dtype=np.float32)
    for b, start in zip(images, offsets):
        np.multiply(b, scale, out=b_aug[start : start + len(b), :dim], casting="unsafe")
    b_norm = np.einsum("ij,ij->i", b_aug[:, :dim], b_aug[:, :dim], dtype=np.float64)
    b_aug[:, :dim] *= -2  # exact
    b_aug[:, dim] = b_norm
    g = np.matmul(a_aug, b_aug.T, out=scratch.get(n, offsets[-1]))  # |b|^2 - 2 a.b
    if needs_float64_scaling(a.dtype) or any(needs_float64_scaling(b.dtype) for b in images):
        a, images = a.astype(np.float64) * scale, [b.astype(np.float64) * scale for b in images]
    equal = len(set(offsets[1:] - offsets[:-1])) == 1
    if equal:  # equal sizes: (N, images, M), contiguous reductions
        g3 = g.reshape(n, len(images), -1)
        nn_all = g3.argmin(axis=2)
        best_all = np.take_along_axis(g3, nn_all[:, :, None], axis=2)[:, :, 0]
        np.put_along_axis(g3, nn_all[:, :, None], np.inf, axis=2)  # the runner-up decides whether it is certain
        runner_all = g3.min(axis=2) if g3.shape[2] > 1 else np.full_like(best_all, np.inf)
    rows = np.arange(n)
    out = []
    for k, (b, start, stop) in enumerate(zip(images, offsets[:-1], offsets[1:])):
        block = g[:, start:stop]
        if equal:
            nn, best, runner = nn_all[:, k], best_all[:, k], runner_all[:, k]
        else:
            nn = block.argmin(axis=1)
            best = block[rows, nn]
            block[rows, nn] = np.inf
            runner = block.min(axis=1) if stop - start > 1 else np.full_like(best, np.inf)
        b_max = float(np.sqrt(b_norm[start:stop].max())) if stop > start else 0.0
        tol = ((4 * (dim + 5) * EPS32) * (2 * a_norm * b_max + b_max**2 + 1e-30)).astype(np.float32)
        limit = best + tol
        ambiguous = np.flatnonzero(runner <= limit)
        if len(ambiguous):
            nn[ambiguous] = _exact_choice(a, b, block, nn, limit, ambiguous)
        out.append(nn)
    return out


def _exact_choice(a, b, block, nn, limit, ambiguous) -> np.ndarray:
    """The nearest row of b (first on exact ties) for rows ``ambiguous`` of a, among the near columns."""
    near = block[ambiguous] <= limit[ambiguous, None]
    near[np.arange(len(ambiguous)), nn[ambiguous]] = True
    which, cols = np.nonzero(near)  # row-major: grouped by row, columns increasing
    d = rowwise_distances(a[ambiguous[which]], b[cols], Distance.L2, squared=True)
    order = np.lexsort((cols, d, which))  # by row, then distance, then column: first = the choice
    first = np.flatnonzero(np.r_[True, which[order][1:] != which[order][:-1]])
    return cols[order][first]


def _match_sequence(chk, seq: str, ap, screen: str) -> dict[str, float]:
    """noise -> mean AP over images 1..5 of the sequence's nearest-neighbour matches ref -> image i."""
    ref = chk.descs[seq]["ref"]
    truth = np.arange(len(ref))
    scratch = _Scratch()
    out = {}
    for noise in NOISES:
        images = [chk.descs[seq][f"{noise}{i}"] for i in range(1, N_POSITIVES + 1)]
        found = nearest(ref, images, chk.distance, scratch, screen)
        out[noise] = float(np.mean([ap(-dist, nn == truth, numpos=len(ref)) for nn, dist in found]))
    return out


@small_pages()
def evaluate_matching(
    descs: Descs,
    split,
    distance=Distance.L2,
    protocol: str = "python",
    progress: bool = False,
    tasks: TaskFiles | None = None,
    screen: str = "auto",
) -> list[Score]:
    """Image matching: per sequence, noise and image i = 1..5, AP of nearest-neighbour matches ref -> image i."""
    check_protocol(protocol)
    split = resolve_split(split, tasks)
    chk = check_descs(descs, split.test, distance)
    ap = average_precision if protocol == "python" else vlfeat_ap
    # the bfloat16 screen runs one single-threaded product per worker, sequences shared among them
    # (no thread team to wait for); the float32 screen keeps BLAS's own threads
    workers = worker_count() if chk.distance is Distance.L2 and bf16_screen.chosen(screen) else 1
    per_seq: dict[tuple[str, str], float] = {}  # (sequence, noise) -> mean AP over the 5 images
    pool = ThreadPoolExecutor(workers, initializer=torch.set_num_threads, initargs=(1,)) if workers > 1 else None
    try:
        found = (pool.map if pool else map)(lambda seq: _match_sequence(chk, seq, ap, screen), split.test)
        for seq, values in zip(split.test, progress_bar(found, progress, desc="matching", total=len(split.test))):
            per_seq.update({(seq, noise): v for noise, v in values.items()})
    finally:
        if pool:
            pool.shutdown(cancel_futures=True)
    subsets = {"all": list(split.test)}
    for prefix in ("i", "v"):
        members = [s for s in split.test if s.startswith(prefix + "_")]
        if members:
            subsets[prefix] = members
    note = degenerate_note(constant_descriptor(chk))
    scores = []
    for subset, members in subsets.items():
        values = {n: float(np.mean([per_seq[s, n] for s in members])) for n in NOISES}
        for n in NOISES:
            units = per_unit("sequence", {s: per_seq[s, n] for s in members})
            scores.append(Score("matching", "map", NOISE_NAMES[n], subset, "", values[n], note, units))
        units = per_unit("sequence", {s: float(np.mean([per_seq[s, n] for n in NOISES])) for s in members})
        scores.append(Score("matching", "map", "mean", subset, "", float(np.mean(list(values.values()))), note, units))
    return scores
