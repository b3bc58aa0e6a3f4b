"""HPatches image matching (Balntas et al., CVPR 2017): nearest neighbours of ref patches in images 1..5.

Public entry point :func:`evaluate_matching`, re-exported by :mod:`desc_bench.bench.hpatches_tasks`
(whose docstring states the protocols). For each sequence, noise level and image i, every ref
descriptor's nearest neighbour in image i (the first one on exact ties, as numpy's argmin over
scipy's cdist in the official code); a match is right when it is the same patch; AP of the
matches ranked by -distance with numpos = N.

Implementation (L2): one float32 GEMM per sequence and noise level, ``[a, 1] @ [-2 b, |b|^2]^T``
for the 5 images at once (|b|^2 - 2 a.b, the row's |a|^2 does not change its argmin), on copies
scaled by a power of two (exact: no overflow or underflow, same ranking). Every row whose
runner-up lies within the float32 error bound of its best is re-decided by exact float64
differences, so the choice equals that of a difference-based computation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..adapters.base import Distance
from ..datasets.base import NOISE_NAMES, NOISES
from ..datasets.tasks import TaskFiles
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
)
from .metrics import average_precision, pairwise_distances, rowwise_distances, vlfeat_ap

EPS32 = float(np.finfo(np.float32).eps)


class _Scratch:
    """One reusable float32 buffer for the GEMM outputs (no fresh pages for every product)."""

    def __init__(self) -> None:
        self.buffer = np.empty(0, dtype=np.float32)

    def get(self, rows: int, cols: int) -> np.ndarray:
        if self.buffer.size < rows * cols:
            self.buffer = np.empty(rows * cols, dtype=np.float32)
        return self.buffer[: rows * cols].reshape(rows, cols)


def nearest(
    a: np.ndarray, images: Sequence[np.ndarray], distance: Distance, scratch: _Scratch | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each ``b`` in ``images``: (index of the nearest row of b for each row of a, its distance).

    a (N, D), each b (M_i, D). The first index wins on exact ties. L2 runs the scaled float32 GEMM
    of the module docstring and re-decides near ties exactly; the distances are those of the
    inputs (or of the scaled inputs for 64-bit inputs: the same ranking, no float64 overflow).
    """
    if distance is not Distance.L2:
        out = []
        for b in images:
            nn = pairwise_distances(a, b, distance).argmin(axis=1)
            out.append((nn, rowwise_distances(a, b[nn], distance)))
        return out
    scratch = scratch or _Scratch()
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
    if len(set(offsets[1:] - offsets[:-1])) == 1:  # equal sizes: (N, images, M), contiguous reductions
        g3 = g.reshape(n, len(images), -1)
        nn_all = g3.argmin(axis=2)
        best_all = np.take_along_axis(g3, nn_all[:, :, None], axis=2)[:, :, 0]
        np.put_along_axis(g3, nn_all[:, :, None], np.inf, axis=2)  # the runner-up decides whether it is certain
        runner_all = g3.min(axis=2) if g3.shape[2] > 1 else np.full_like(best_all, np.inf)
    rows = np.arange(n)
    out = []
    for k, (b, start, stop) in enumerate(zip(images, offsets[:-1], offsets[1:])):
        block = g[:, start:stop]
        if len(set(offsets[1:] - offsets[:-1])) == 1:
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
        out.append((nn, rowwise_distances(a, b[nn], distance)))
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


def evaluate_matching(
    descs: Descs,
    split,
    distance=Distance.L2,
    protocol: str = "python",
    progress: bool = False,
    tasks: TaskFiles | None = None,
) -> list[Score]:
    """Image matching: per sequence, noise and image i = 1..5, AP of nearest-neighbour matches ref -> image i."""
    check_protocol(protocol)
    split = resolve_split(split, tasks)
    chk = check_descs(descs, split.test, distance)
    per_seq: dict[tuple[str, str], float] = {}  # (sequence, noise) -> mean AP over the 5 images
    scratch = _Scratch()
    ap = average_precision if protocol == "python" else vlfeat_ap
    for seq in progress_bar(split.test, progress, desc="matching"):
        ref = chk.descs[seq]["ref"]
        truth = np.arange(len(ref))
        for noise in NOISES:
            images = [chk.descs[seq][f"{noise}{i}"] for i in range(1, N_POSITIVES + 1)]
            found = nearest(ref, images, chk.distance, scratch)
            per_seq[seq, noise] = float(np.mean([ap(-dist, nn == truth, numpos=len(ref)) for nn, dist in found]))
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
