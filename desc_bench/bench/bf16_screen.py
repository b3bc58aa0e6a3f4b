"""Screens by bfloat16 distance products with a proven error bound (hardware bfloat16, AMX tiles).

Squared L2 distances ``|a|^2 + |b|^2 - 2 a.b`` between the rows of ``a`` (N, D) and ``b`` (M, D) as one
bfloat16 matrix product with float32 accumulation (a core's AMX tiles run it 4-10x faster than a
float32 GEMM): ``[a, hi, lo, 1, 1, 0..] @ [-2 b, 1, 1, hi', lo', 0..]^T``, where ``hi + lo`` is
``|a|^2 + c`` and ``hi' + lo'`` is ``|b|^2``, each split into two bfloat16 numbers, padded with zero
columns to a multiple of 32. The inputs are copies scaled by a power of two (exact: the largest
|value| in [0.5, 1), the ranking unchanged).

Error bound. With u = 2^-8 (bfloat16 rounding), every entry before its rounding to bfloat16 lies
within ``E = 4.5 u |a| b_max + 6 u^2 (|a| + b_max)^2 + 2^-110`` of the exact ``d^2 + c``: rounding a
and b to bfloat16 moves ``2 a.b`` by at most ``(4 u + 2 u^2) |a| |b|``; the two-part norms are off by
``u^2`` of themselves, and by ``(D + 1) 2^-24`` as float32 sums; the float32 accumulation of the
exact products adds at most ``K 2^-24`` of their absolute sum; flushed subnormals less than
``2^-110`` (the constants leave room for conversions that round twice). The offset ``c = E`` of each
row keeps every entry non-negative, so the bfloat16 bit patterns, read as int16, order the entries
as their values do: int16 argmin, min and comparisons on half the bytes of float32, without a
conversion (a negative entry is detected, and its row decided exactly). The rounding of an output
x to bfloat16 moves it by at most ``R |x|``, R = u / (1 - u).

Nearest neighbours (:func:`screen`): a row's screened choice is certain when its runner-up, lowered
by all of that, still exceeds the best raised by all of it; otherwise every column whose lowered
value does not exceed the best's raised value is a candidate, and the caller decides among the
candidates exactly (float64 differences: :mod:`~desc_bench.bench.hpatches_matching`). So the choice
equals that of exact arithmetic, the first index on exact ties. Thresholds (retrieval): an entry
whose exact d^2 is at most t has a value at most ``(t + 2 E) / (1 - R)``, compared as bits
(:func:`floor_bits`).

:func:`available` says whether this CPU multiplies bfloat16 matrices in hardware (AMX tiles, through
oneDNN) and whether torch's product passes a self-check of the bound (accumulation in float32);
elsewhere ``screen="auto"`` means the float32 screens. Either screen gives the same numbers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from ..errors import InputError

U = 2.0**-8  # unit roundoff of bfloat16 (8 significant bits, round to nearest even)
INF_BITS = 0x7F80  # +inf in bfloat16: above every finite non-negative entry as int16
CHUNK_ENTRIES = 1 << 20  # entries of one product chunk (2 MiB of bfloat16: in the core's cache for the reductions)


def error_bound(a_norm: np.ndarray, b_max: float) -> np.ndarray:
    """(N,) bound on |screen entry - (d^2 + c)| before the output rounding (see the module docstring)."""
    return 4.5 * U * a_norm * b_max + 6 * U * U * (a_norm + b_max) ** 2 + 2.0**-110


def _split(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """float64 (N,) -> two bfloat16 (N,) whose sum is x within about u^2 of x."""
    hi = torch.from_numpy(x).to(torch.bfloat16)
    lo = torch.from_numpy(x - hi.double().numpy()).to(torch.bfloat16)
    return hi, lo


def tables(a: np.ndarray, images: Sequence[np.ndarray], scale: float) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Screen operands of the rows of ``a`` (N, D) and of the images (M_k, D), all times ``scale``.

    Returns A (N, K), B (sum M_k, K) bfloat16 (the images one after another) and E (N,) float64:
    ``A @ B.T`` approximates ``d^2 + E`` (row offset E, see the module docstring). K is D + 4 rounded
    up to a multiple of 32 (zero columns: the tiles' width, at which the product runs fastest).
    Squared norms are float32 sums (relative error below ``(D + 1) 2^-24``, within the bound's u^2 term).
    """
    n, dim = a.shape
    width = -(-(dim + 4) // 32) * 32
    total = sum(len(b) for b in images)
    work = np.empty((max([n] + [len(b) for b in images]), dim), dtype=np.float32)
    np.multiply(a, scale, out=work[:n], casting="unsafe")  # computed in the input's precision, then rounded
    a_sq = np.einsum("ij,ij->i", work[:n], work[:n]).astype(np.float64)
    a_tab = torch.empty((n, width), dtype=torch.bfloat16)
    a_tab[:, :dim] = torch.from_numpy(work[:n])
    b_tab = torch.empty((total, width), dtype=torch.bfloat16)
    b_sq = np.empty(total, dtype=np.float64)
    start = 0
    for b in images:
        m = len(b)
        np.multiply(b, -2 * scale, out=work[:m], casting="unsafe")  # -2 b, exact
        b_sq[start : start + m] = np.einsum("ij,ij->i", work[:m], work[:m]) / 4
        b_tab[start : start + m, :dim] = torch.from_numpy(work[:m])
        start += m
    err = error_bound(np.sqrt(a_sq) * (1 + 2.0**-16), float(np.sqrt(b_sq.max()) * (1 + 2.0**-16)) if total else 0.0)
    a_tab[:, dim], a_tab[:, dim + 1] = _split(a_sq + err)
    a_tab[:, dim + 2 : dim + 4] = 1
    a_tab[:, dim + 4 :] = 0
    b_tab[:, dim : dim + 2] = 1
    b_tab[:, dim + 2], b_tab[:, dim + 3] = _split(b_sq)
    b_tab[:, dim + 4 :] = 0
    return a_tab, b_tab, err


def _as_float(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (int16) -> float64 values."""
    return (bits.view(np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)


R = U / (1 - U)  # an entry's value before the output rounding lies within R |entry| of the entry


def screen(
    a_tab: torch.Tensor, b_tab: torch.Tensor, err: np.ndarray, offsets: Sequence[int]
) -> tuple[list[np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """Screened nearest neighbours: per image, (N,) int64 indices and the candidates of uncertain rows.

    ``b_tab`` holds the images' rows one after another, image k in rows ``offsets[k]:offsets[k + 1]``.
    A row's index is its exact nearest neighbour (first on ties) unless the row appears in the
    image's candidates ``(rows, cols)`` (row-major, columns increasing): then the nearest
    neighbour is the exact choice among its candidate columns (they hold every column whose
    exact distance can be the smallest).
    """
    n = a_tab.shape[0]
    nns = [np.zeros(n, dtype=np.int64) for _ in offsets[:-1]]
    cands: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in offsets[:-1]]
    widest = max(np.diff(offsets), default=0)
    rows = max(16, CHUNK_ENTRIES // max(widest, 1))
    buffer = torch.empty(min(rows, n) * widest, dtype=torch.bfloat16)
    for k, (start, stop) in enumerate(zip(offsets[:-1], offsets[1:])):
        if stop == start:
            continue
        b_t = b_tab[start:stop].T
        for s in range(0, n, rows):  # one image at a time: contiguous rows for the reductions
            e = min(n, s + rows)
            out = buffer[: (e - s) * (stop - start)].view(e - s, stop - start)
            block = torch.mm(a_tab[s:e], b_t, out=out).view(torch.int16).numpy()
            nn = block.argmin(axis=1)
            nns[k][s:e] = nn
            if stop - start == 1:
                continue
            here = np.arange(e - s)
            best = block[here, nn]
            block[here, nn] = INF_BITS  # the runner-up decides whether the choice is certain
            runner = _as_float(block.min(axis=1))
            # every entry x has its exact d^2 + c within [x - R|x| - E, x + R|x| + E]; entries >= 0 here
            bound = err[s:e]
            top = _as_float(best) * (1 + R) + bound
            unsure = np.flatnonzero((best < 0) | (runner * (1 - R) - bound <= top))
            if len(unsure):
                block[unsure, nn[unsure]] = best[unsure]
                value = _as_float(block[unsure])
                high = (value + R * np.abs(value)).min(axis=1) + bound[unsure]
                near = value - R * np.abs(value) - bound[unsure, None] <= high[:, None]
                r, c = np.nonzero(near)
                cands[k].append((unsure[r] + s, c))
    joined = []
    for parts in cands:
        if parts:
            joined.append((np.concatenate([r for r, _ in parts]), np.concatenate([c for _, c in parts])))
        else:
            joined.append((np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)))
    return nns, joined


SCREENS = ("auto", "bfloat16", "float32")


def chosen(screen: str) -> bool:
    """Whether ``screen`` ("auto", "bfloat16" or "float32") means the bfloat16 screen here."""
    if screen not in SCREENS:
        raise InputError(f"unknown screen {screen!r}; valid: {', '.join(SCREENS)}")
    return screen == "bfloat16" or (screen == "auto" and available())


def floor_bits(x: np.ndarray) -> np.ndarray:
    """int16 bit patterns of the largest bfloat16 values <= x (x >= 0 float64; inf and overflow -> max finite)."""
    x32 = np.minimum(x, float(np.finfo(np.float32).max)).astype(np.float32)
    x32 = np.where(x32.astype(np.float64) > x, np.nextafter(x32, np.float32(0)), x32)
    bits = (x32.view(np.uint32) >> 16).astype(np.int32)  # truncation: toward zero, so <= x
    return np.minimum(bits, INF_BITS - 1).astype(np.int16)


@functools.cache
def available() -> bool:
    """Whether bfloat16 products run in hardware here and satisfy the bound (checked once per process)."""
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        if amx is None or not amx() or not torch.backends.mkldnn.is_available():
            return False
        return self_check()
    except Exception:  # an unusual build: use the float32 screen
        return False


def self_check(seed: int = 0) -> bool:
    """Whether torch's bfloat16 product of screen tables stays within the bound (float32 accumulation).

    A sum of one large and many small terms is exact in float32 and lost by bfloat16 partial sums;
    random rows check the bound entry by entry.
    """
    dim = 128
    probe_a = torch.ones((1, dim), dtype=torch.bfloat16)
    probe_b = torch.full((1, dim), 2.0**-9, dtype=torch.bfloat16)
    probe_b[0, 0] = 1.0
    got = float(torch.mm(probe_a, probe_b.T)[0, 0])
    if got != float(torch.tensor(1 + (dim - 1) * 2.0**-9).to(torch.bfloat16)):
        return False
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((64, dim)).astype(np.float32)
    b = np.concatenate([a[:32] + 1e-3 * rng.standard_normal((32, dim)), rng.standard_normal((200, dim))])
    b = b.astype(np.float32)
    scale = float(2.0 ** -np.ceil(np.log2(max(np.abs(a).max(), np.abs(b).max()) * 1.01)))
    a_tab, b_tab, err = tables(a, [b[:100], b[100:]], scale)
    a, b = a.astype(np.float64) * scale, b.astype(np.float64) * scale
    value = torch.mm(a_tab, b_tab.T).double().numpy()
    exact = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2) + err[:, None]
    return bool((np.abs(value - exact) <= err[:, None] + R * np.abs(value)).all())
