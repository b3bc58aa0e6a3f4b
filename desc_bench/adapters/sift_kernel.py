"""The compiled CPU loop of torch SIFT (:mod:`.sift_torch`): float32 inference in one numba loop.

Per patch, the gradients, magnitude and orientation ``q`` in bin units (0..K) of each pixel and its
two linear bin weights ``relu(1 - |q - k|)`` (exact zeros for empty bins, as upstream's masks give),
the tent row pooling into the cell rows each pixel row reaches, then the column pooling over each
cell's span: 3x less CPU time per patch than the torch ops, which are bound by the memory
traffic between ops. ``atan2`` is Cephes' float32 ``atanf`` polynomial (about 1e-7 rad) with the
quadrant rules of C's ``atan2``. Patches are split into contiguous shares run in parallel on numba's
OpenMP layer where it loads: its workers wait spinning, as torch's do, so that a call right after
other work does not wait for sleeping threads (a Python thread pool was 2.5x slower there). GNU
OpenMP aborts in a process forked after it ran, so a forked child uses the torch ops instead.
numba's OpenMP layer needs the system's GNU OpenMP (Debian: libgomp1); without it numba falls back
to its workqueue layer, about half as fast and one caller at a time (calls are then serialised).
"""

from __future__ import annotations

import functools
import math
import os
import threading
from typing import NamedTuple

import numpy as np

GRADIENT_EPS = 1e-10  # inside the magnitude's square root and added to gx in atan2 (upstream)
MIN_SHARE = 16  # patches per thread below which fewer threads run

_F = np.float32  # the loop's constants are float32, so that it stays in float32 (16 lanes with AVX-512)
_ZERO, _ONE, _EPS = _F(0.0), _F(1.0), _F(GRADIENT_EPS)
_PI, _HALF_PI, _QUARTER_PI, _TAN_PI_8 = _F(math.pi), _F(math.pi / 2), _F(math.pi / 4), _F(math.tan(math.pi / 8))
_ATAN = tuple(map(_F, (8.05374449538e-2, -1.38776856032e-1, 1.99777106478e-1, -3.33329491539e-1)))  # Cephes atanf


class KernelTables(NamedTuple):
    """The window and the tent pooling as the compiled loop reads them (float32 / int64 arrays)."""

    window: np.ndarray  # (P*P,) magnitude weighting
    row_cell: np.ndarray  # (P, R): the cell rows that pixel row y reaches (R = most per row; weight 0 pads)
    row_weight: np.ndarray  # (P, R)
    col_start: np.ndarray  # (S,): first pixel column of each cell column's span
    col_weight: np.ndarray  # (S, W): the tent weights over the span (W = widest support)

    @classmethod
    def build(cls, tent: np.ndarray, window: np.ndarray) -> KernelTables:
        """From the ``(S, P)`` 1-D tent pooling matrix and the ``(P, P)`` window."""
        cells, size = tent.shape
        reach = [np.flatnonzero(tent[:, y]) for y in range(size)]
        row_cell = np.zeros((size, max(map(len, reach))), np.int64)
        row_weight = np.zeros(row_cell.shape, np.float32)
        for y, rows in enumerate(reach):
            row_cell[y, : len(rows)], row_weight[y, : len(rows)] = rows, tent[rows, y]
        support = [np.flatnonzero(tent[c]) for c in range(cells)]
        width = max(int(s[-1] - s[0] + 1) for s in support)
        col_start = np.array([min(int(s[0]), size - width) for s in support], np.int64)
        col_weight = np.stack([tent[c, a : a + width] for c, a in enumerate(col_start)]).astype(np.float32)
        return cls(window.astype(np.float32).ravel(), row_cell, row_weight, col_start, col_weight)


_prange = range  # numba.prange once numba is imported (_kernel)


def _histograms(patches, window, row_cell, row_weight, col_start, col_weight, out, parts):  # pragma: no cover
    """Compiled by numba: ``patches (B, P, P)`` float32 -> ``out (B, K, S, S)`` pooled histograms, in
    ``parts`` contiguous shares run in parallel."""
    count, size, bins, cells = patches.shape[0], patches.shape[1], out.shape[1], out.shape[2]
    n, top, unit = size * size, _F(bins - 1), _F(bins) / (_F(2.0) * _PI)
    for part in _prange(parts):
        gx, gy = np.empty((size, size), np.float32), np.empty((size, size), np.float32)
        mag, q = np.empty(n, np.float32), np.empty(n, np.float32)
        weighted = np.empty((bins, size), np.float32)
        rows = np.empty((bins, cells, size), np.float32)
        for b in range(count * part // parts, count * (part + 1) // parts):
            img = patches[b]
            for y in range(size):  # central differences, replicated borders
                for x in range(1, size - 1):
                    gx[y, x] = img[y, x + 1] - img[y, x - 1]
                gx[y, 0], gx[y, size - 1] = img[y, 1] - img[y, 0], img[y, size - 1] - img[y, size - 2]
                up, down = max(y - 1, 0), min(y + 1, size - 1)
                for x in range(size):
                    gy[y, x] = img[down, x] - img[up, x]
            fx, fy = gx.reshape(n), gy.reshape(n)
            for i in range(n):  # magnitude and orientation q = K (atan2(gy, gx + eps) + pi) / (2 pi)
                vx, vy = fx[i] + _EPS, fy[i]
                mag[i] = np.sqrt(fx[i] * fx[i] + vy * vy + _EPS) * window[i]
                ax, ay = abs(vx), abs(vy)
                big, small = max(ax, ay), min(ax, ay)
                a = small / big if big > _ZERO else _ZERO
                reduced = a > _TAN_PI_8
                t = (a - _ONE) / (a + _ONE) if reduced else a
                z = t * t
                r = (((_ATAN[0] * z + _ATAN[1]) * z + _ATAN[2]) * z + _ATAN[3]) * z * t + t
                r = r + _QUARTER_PI if reduced else r
                r = _HALF_PI - r if ay > ax else r
                r = _PI - r if vx < _ZERO else r
                r = -r if vy < _ZERO else r
                q[i] = (r + _PI) * unit
            rows[:] = _ZERO
            for y in range(size):  # bin weights of the row, then the tent row pooling
                base = y * size
                for x in range(size):  # the bin centred at 0 also takes the wrap from +pi (q near K)
                    qx = q[base + x]
                    weighted[0, x] = (max(_ZERO, _ONE - abs(qx)) + max(_ZERO, qx - top)) * mag[base + x]
                for k in range(1, bins):
                    for x in range(size):
                        weighted[k, x] = max(_ZERO, _ONE - abs(q[base + x] - _F(k))) * mag[base + x]
                for j in range(row_cell.shape[1]):
                    cell, w = row_cell[y, j], row_weight[y, j]
                    if w != _ZERO:
                        for k in range(bins):
                            for x in range(size):
                                rows[k, cell, x] += w * weighted[k, x]
            for k in range(bins):  # column pooling; output bin (k + K/2) mod K (upstream's order)
                o = (k + bins // 2) % bins
                for cy in range(cells):
                    for cx in range(cells):
                        total = _ZERO
                        for i in range(col_weight.shape[1]):
                            total += rows[k, cy, col_start[cx] + i] * col_weight[cx, i]
                        out[b, o, cy, cx] = total


@functools.cache
def _compiled():
    """:func:`_histograms` compiled (cached on disk by numba where it can write) with the number of
    threads set, or None without numba."""
    global _prange
    try:
        import numba
    except ImportError:
        return None
    if "NUMBA_THREADING_LAYER" not in os.environ and "NUMBA_THREADING_LAYER_PRIORITY" not in os.environ:
        # process-wide, before numba's first parallel launch: OpenMP first (tbb is numba's default first)
        numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]
    _prange = numba.prange
    options = {"nogil": True, "error_model": "numpy", "fastmath": {"contract", "reassoc", "nsz"}}
    try:
        compiled = numba.njit(parallel=True, cache=True, **options)(_histograms)
    except RuntimeError:  # no writable cache folder ("no locator available"): compile in memory
        compiled = numba.njit(parallel=True, **options)(_histograms)
    lock = threading.Lock()
    serial = []  # holds True once the layer is known to be numba's workqueue, which takes one caller at a time

    def run(patches, window, row_cell, row_weight, col_start, col_weight, out, parts):
        numba.set_num_threads(min(parts, numba.config.NUMBA_NUM_THREADS))  # this thread's setting
        if serial == [False]:
            compiled(patches, window, row_cell, row_weight, col_start, col_weight, out, parts)
            return
        with lock:  # the first call (the layer starts), and every call on the workqueue layer
            compiled(patches, window, row_cell, row_weight, col_start, col_weight, out, parts)
            serial[:] = [numba.threading_layer() == "workqueue"]

    return run


_forked: list[bool] = []  # non-empty in a process forked after the loop was compiled


def _mark_fork() -> None:
    if _compiled.cache_info().currsize:
        _forked.append(True)


os.register_at_fork(after_in_child=_mark_fork)


def available() -> bool:
    """Whether the compiled loop can run here (numba installed, not a child forked after it ran)."""
    return not _forked and _compiled() is not None


def version() -> str:
    """numba's version, for the feature key (the loop's last bits differ from the torch ops')."""
    if _compiled() is None:
        return "numba absent"
    import numba

    return f"numba {numba.__version__}"


def histograms(patches: np.ndarray, tables: KernelTables, bins: int, threads: int) -> np.ndarray:
    """``(B, P, P)`` float32 -> the pooled orientation histograms ``(B, K, S, S)`` (upstream's bin order)."""
    x = np.ascontiguousarray(patches, dtype=np.float32)
    cells = len(tables.col_start)
    out = np.empty((len(x), bins, cells, cells), np.float32)
    _compiled()(x, *tables, out, max(1, min(threads, len(x) // MIN_SHARE)))
    return out
