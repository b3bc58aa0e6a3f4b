"""Dense SIFT of SIFT Flow, in torch: batched, CPU or CUDA, optional FP16, buffers reused per shape.

Paper: C. Liu, J. Yuen, A. Torralba, "SIFT Flow: Dense Correspondence across Scenes and its
Applications", IEEE TPAMI 33(5), 2011. Reference implementation: the C++/MEX dense SIFT
(``ImageFeature::imSIFT``, ``mexDenseSIFT``) of the SIFT Flow code, and its PyTorch port
``hmorimitsu/sift-flow-gpu`` (``SiftFlowTorch``), whose outputs the oracle tests compare against.

Shapes:
    SiftFlow(...)(images)   images (B, C, H, W) float, values 0..1 (C = 1 gray, or 3 colour)
                            -> (B, 16 * num_bins, H', W')
    boundary=True:   H' = H // step,            W' = W // step,            shift 0
    boundary=False:  H' = (H - 4*cell) // step, W' = (W - 4*cell) // step, shift 2*cell

Algorithm (per image): Sobel gradients per channel (replicate border); per pixel the channel with
the largest gradient magnitude gives the gradient; num_bins oriented energies
``max(0, cos(t_k) gx + sin(t_k) gy) ** 9 * |g|``; each energy is box-filtered into cells with the
separable 1-D filter of the C++ code (taps ``[0.25, 0, 1 x cell, 0 x (cell-1)]``, replicate
border); descriptor (i, j) concatenates the 4x4 cells at rows ``shift + step*i + cell*{-1,0,1,2}``
and columns ``shift + step*j + cell*{-1,0,1,2}`` (clamped to the image), cell-major
(``channel = (4*row + col) * num_bins + bin``), divided by ``(L2 norm + 0.01)``.

Differences from the PyTorch port, on purpose:
- The port reads the cells with ``grid_sample(mode='nearest')`` without ``align_corners``; on
  PyTorch >= 1.3 that defaults to ``align_corners=False`` and about 14 % of the samples come from a
  neighbouring pixel. This module reads the intended integer pixels (the port's behaviour with
  ``align_corners=True``, identical to the C++ indexing).
- Cells are read with strided slices of a replicate-padded buffer and the norm is computed once
  per cell, not with 16 ``grid_sample`` calls and a full 8x8 channel convolution; the numbers are
  the same to float rounding.
- Colour: the port (and the C++ code) take the gradient of the channel with the largest magnitude,
  the first one among exactly equal magnitudes. Such ties between channels with different
  gradients are not rare (37 pixels of the 48x64 oracle crop) and each changes the descriptors
  around it by up to 0.08, so the arithmetic that decides them is the port's, bit for bit: the
  Sobel taps summed in its order as element-wise operations (no convolution kernel, whose
  summation order differs between machines; see ``sobel_gradients``), magnitudes rounded as it
  rounds them, and the choice made with element-wise comparisons. The port was run on
  ``cv2.imread`` (BGR) images; ``rgb=True`` (what the ``sift-flow`` descriptor uses, the harness
  gives RGB) breaks ties in that order, blue first, so RGB input gives the port's BGR output.
- Input: the port divides the 0..255 images by 255; the public methods do the same (preparation
  divides by ``255 / value_range``), so ``compute_dense_map`` of a uint8 image equals the port.

Buffers (padded energies, cells, output) are kept per input shape, dtype and device and reused by
the next call with the same key. The returned map is a fresh tensor unless ``reuse_output=True``,
in which case (as in the port) it is overwritten by the next call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import InputError
from .base import Descriptor, InputSpec, compute_dtype

ALPHA = 9  # exponent of the oriented energy (SIFT_weightFunc.m in the C++ code)
NORM_EPS = 0.01  # descriptor = cells / (L2 norm + NORM_EPS)


def cell_filter_taps(cell_size: int) -> list[float]:
    """The 1-D cell filter of the C++ code (length ``2*cell_size + 1``, centred).

    The C++ sets ``f[0] = f[cell+1] = 0.25`` and then ``f[i+1] = 1`` for ``i = 1..cell``, which
    overwrites ``f[cell+1]``; the PyTorch port reproduces this exactly, and so do we.
    """
    taps = [0.0] * (2 * cell_size + 1)
    taps[0] = taps[cell_size + 1] = 0.25
    for i in range(1, cell_size + 1):
        taps[i + 1] = 1.0
    return taps


@dataclass(frozen=True)
class SiftFlowGeometry:
    """Where the descriptors of one input shape sit."""

    height: int  # H'
    width: int  # W'
    shift: int  # pixel of descriptor (0, 0) in the port's indexing convention
    step: int


def geometry(height: int, width: int, cell_size: int, step: int, boundary: bool) -> SiftFlowGeometry:
    shift = 0 if boundary else 2 * cell_size
    out_h = (height - 2 * shift) // step
    out_w = (width - 2 * shift) // step
    if out_h <= 0 or out_w <= 0:
        raise InputError(
            f"sift-flow: image {height}x{width} is too small for cell_size={cell_size}, step={step}, "
            f"boundary={boundary} (needs more than {2 * shift} px per side)"
        )
    return SiftFlowGeometry(out_h, out_w, shift, step)


def sobel_gradients(padded: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sobel responses ``dx, dy`` (B, C, H, W) of replicate-padded images (B, C, H+2, W+2), bit for bit.

    The port convolves with ``[[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]`` (and its transpose); its
    ``conv2d`` accumulates the six non-zero taps in row-major order, in the images' dtype (checked
    bit for bit on an AMD EPYC, where the port reproduces the oracle to 4.5e-7). Products by 1 and 2
    are exact, so the order of the additions is the only rounding; written as element-wise
    operations it is the same on every CPU and GPU, where a convolution kernel's order is not (it
    depends on the library, the CPU and the shapes: on that EPYC a grouped ``conv2d`` rounds a
    quarter of the values differently, enough to flip the channel choice at 51 pixels of the
    oracle crop).
    """
    height, width = padded.shape[-2] - 2, padded.shape[-1] - 2

    def tap(row: int, col: int) -> torch.Tensor:
        return padded[..., row : row + height, col : col + width]

    dx = torch.sub(tap(0, 2), tap(0, 0))  # ((((-a00 + a02) - 2 a10) + 2 a12) - a20) + a22
    dx.sub_(tap(1, 0), alpha=2).add_(tap(1, 2), alpha=2).sub_(tap(2, 0)).add_(tap(2, 2))
    dy = torch.neg(tap(0, 0))  # ((((-a00 - 2 a01) - a02) + a20) + 2 a21) + a22
    dy.sub_(tap(0, 1), alpha=2).sub_(tap(0, 2)).add_(tap(2, 0)).add_(tap(2, 1), alpha=2).add_(tap(2, 2))
    return dx, dy


def strongest_channel(
    dx: torch.Tensor, dy: torch.Tensor, reverse: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per pixel, the gradient of the channel with the largest magnitude: ``(mag, gx, gy)``, each (B, 1, H, W).

    Magnitudes are ``sqrt(dx*dx + dy*dy)`` rounded as the port rounds them; among channels of
    exactly equal magnitude the first wins (the port's ``torch.max``), or with ``reverse`` the last
    (RGB input: the port, run on ``cv2.imread`` BGR images, prefers blue, then green, then red).
    The choice is made with element-wise comparisons, independent of any reduction kernel.
    """
    sq = dx * dx
    sq.add_(dy * dy)  # not addcmul: a fused multiply-add would round differently from the port
    mags = sq.sqrt_()
    order = list(range(dx.shape[1]))
    if reverse:
        order.reverse()
    first = order[0]
    mag, gx, gy = (t[:, first : first + 1] for t in (mags, dx, dy))
    for c in order[1:]:
        candidate = mags[:, c : c + 1]
        better = candidate > mag  # strictly: ties keep the earlier channel
        mag = torch.where(better, candidate, mag)
        gx = torch.where(better, dx[:, c : c + 1], gx)
        gy = torch.where(better, dy[:, c : c + 1], gy)
    return mag, gx, gy


def _fill_replicate(buf: torch.Tensor, top: int, bottom: int, left: int, right: int) -> None:
    """Fill the border of ``buf`` (..., H+top+bottom, W+left+right) from its filled interior."""
    rows = buf.shape[-2] - top - bottom
    if top:
        buf[..., :top, :] = buf[..., top : top + 1, :]
    if bottom:
        buf[..., top + rows :, :] = buf[..., top + rows - 1 : top + rows, :]
    cols = buf.shape[-1] - left - right
    if left:
        buf[..., :left] = buf[..., left : left + 1]
    if right:
        buf[..., left + cols :] = buf[..., left + cols - 1 : left + cols]


class SiftFlow:
    """Dense SIFT Flow descriptors of a batch of same-shape images (the port's ``SiftFlowTorch``).

    ``SiftFlow(cell_size=2, step=1, boundary=True)(images)`` with images ``(B, C, H, W)`` float in
    0..1 on any device; computes in the images' dtype (float32, or float16 for FP16). Channels are
    taken in the order given, as the port takes them; ``rgb=True`` for RGB images breaks exact
    colour ties as the port does on the same image in BGR order.
    """

    def __init__(
        self,
        cell_size: int = 2,
        step: int = 1,
        boundary: bool = True,
        num_bins: int = 8,
        reuse_output: bool = False,
        rgb: bool = False,
    ):
        for key, value in (("cell_size", cell_size), ("step", step), ("num_bins", num_bins)):
            if int(value) != value or value < 1:
                raise InputError(f"sift-flow: {key} must be a positive integer, got {value!r}")
        self.cell_size, self.step, self.boundary = int(cell_size), int(step), bool(boundary)
        self.num_bins = int(num_bins)
        self.reuse_output = reuse_output
        self.rgb = bool(rgb)  # colour ties broken as the port on BGR images (see strongest_channel)
        self.dim = 16 * self.num_bins
        self._taps = cell_filter_taps(self.cell_size)
        self._key: tuple | None = None
        self._buffers: dict[str, torch.Tensor] = {}

    # ---- buffers ---------------------------------------------------------------------------
    def _workspace(self, images: torch.Tensor, geo: SiftFlowGeometry) -> dict[str, torch.Tensor]:
        key = (tuple(images.shape), images.dtype, images.device)
        if key != self._key:
            self._buffers = {}  # free the old ones before allocating
            with torch.inference_mode(False):  # normal tensors: reusable in and out of inference mode
                self._buffers = self._allocate(images, geo)
            self._key = key
        return self._buffers

    def _allocate(self, images: torch.Tensor, geo: SiftFlowGeometry) -> dict[str, torch.Tensor]:
        batch, _, height, width = images.shape
        c, r, nb = self.cell_size, self.cell_size, self.num_bins
        new = lambda *shape: torch.empty(shape, dtype=images.dtype, device=images.device)  # noqa: E731
        angles = torch.arange(nb, dtype=torch.float64) * (2 * math.pi / nb)
        return {
            "cos": angles.cos().to(images.dtype).to(images.device).view(1, nb, 1, 1),
            "sin": angles.sin().to(images.dtype).to(images.device).view(1, nb, 1, 1),
            # energies, padded by r left/right for the horizontal filter
            "bands": new(batch, nb, height, width + 2 * r),
            # horizontal result, padded by r top/bottom for the vertical filter
            "rows": new(batch, nb, height + 2 * r, width),
            # cells, padded by c top/left and 2c bottom/right for the 4x4 cell reads
            "cells": new(batch, nb, height + 3 * c, width + 3 * c),
            "sq": new(batch, 1, height + 3 * c, width + 3 * c),
            "norm": new(batch, 1, geo.height, geo.width),
        }

    # ---- computation -------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            raise InputError(f"sift-flow: expected images (B, C, H, W), got {getattr(images, 'shape', type(images))}")
        if not images.is_floating_point():
            raise InputError(f"sift-flow: expected float images in 0..1, got {images.dtype}")
        batch, _, height, width = images.shape
        geo = geometry(height, width, self.cell_size, self.step, self.boundary)
        ws = self._workspace(images, geo)
        eps = 1e-3 if images.dtype == torch.float16 else 1e-10  # as the port
        c = r = self.cell_size

        # Gradients: Sobel per channel, replicate border; keep the channel of largest magnitude.
        dx, dy = sobel_gradients(F.pad(images, (1, 1, 1, 1), mode="replicate"))
        mag, gx, gy = strongest_channel(dx, dy, reverse=self.rgb)
        denom = mag + eps
        gx = gx / denom
        gy = gy / denom

        # Oriented energies, written into the interior of the horizontally padded buffer.
        bands = ws["bands"]
        inner = bands[..., r : r + width]
        torch.mul(ws["cos"], gx, out=inner)
        inner.addcmul_(ws["sin"], gy).clamp_min_(0)
        inner.pow_(ALPHA).mul_(mag)
        _fill_replicate(bands, 0, 0, r, r)

        # Separable cell filter (cross-correlation with the C++ taps).
        rows = ws["rows"]
        self._filter(bands, rows[..., r : r + height, :], axis=-1, size=width)
        _fill_replicate(rows, r, r, 0, 0)
        cells = ws["cells"]
        self._filter(rows, cells[..., c : c + height, c : c + width], axis=-2, size=height)
        _fill_replicate(cells, c, 2 * c, c, 2 * c)

        # 4x4 cells per descriptor, read as strided views; norm from per-cell squared sums.
        torch.sum(cells * cells, dim=1, keepdim=True, out=ws["sq"])
        views = [
            (self._cell_view(cells, geo, i, j), self._cell_view(ws["sq"], geo, i, j))
            for i in range(4)
            for j in range(4)
        ]
        norm = ws["norm"]
        norm.copy_(views[0][1])
        for _, sq in views[1:]:
            norm.add_(sq)
        norm.sqrt_().add_(NORM_EPS)

        shape = (batch, self.dim, geo.height, geo.width)
        if out is None:
            if self.reuse_output:
                if "out" not in ws or ws["out"].shape != shape:
                    with torch.inference_mode(False):  # a normal tensor, like the other buffers
                        ws["out"] = torch.empty(shape, dtype=images.dtype, device=images.device)
                out = ws["out"]
            else:
                out = torch.empty(shape, dtype=images.dtype, device=images.device)
        elif tuple(out.shape) != shape or out.dtype != images.dtype:
            raise InputError(f"sift-flow: out must be {shape} {images.dtype}, got {tuple(out.shape)} {out.dtype}")
        nb = self.num_bins
        for idx, (cell, _) in enumerate(views):
            torch.div(cell, norm, out=out[:, idx * nb : (idx + 1) * nb])
        return out

    def _filter(self, src: torch.Tensor, dst: torch.Tensor, axis: int, size: int) -> None:
        """dst = sum_k taps[k] * src[k : k + size] along ``axis`` (src is padded by r each side)."""
        first = True
        for k, tap in enumerate(self._taps):
            if tap == 0.0:
                continue
            part = src.narrow(axis, k, size)
            if first:
                torch.mul(part, tap, out=dst) if tap != 1.0 else dst.copy_(part)
                first = False
            elif tap == 1.0:
                dst.add_(part)
            else:
                dst.add_(part, alpha=tap)

    def _cell_view(self, buf: torch.Tensor, geo: SiftFlowGeometry, i: int, j: int) -> torch.Tensor:
        """Cell (i, j) of every descriptor: rows shift + step*y + cell*(i-1) (buffer padded by cell)."""
        c, s = self.cell_size, self.step
        top, left = geo.shift + i * c, geo.shift + j * c
        return buf[..., top : top + s * (geo.height - 1) + 1 : s, left : left + s * (geo.width - 1) + 1 : s]


@dataclass(frozen=True)
class SiftFlowOptions:
    """Options of ``sift-flow`` (CLI: ``sift-flow:cell_size=3:step=2:boundary=false``)."""

    cell_size: int = 2  # the PyTorch port's default (the MATLAB wrapper's is 3)
    step: int = 1
    boundary: bool = True  # False: no descriptors within 2*cell_size px of the border
    color: bool = True  # True: RGB input, max-magnitude channel; False: gray input
    fp16: bool = False  # compute in float16 (CUDA; on CPU it runs but is slow)


class SiftFlowDescriptor(Descriptor):
    """``sift-flow``: the dense SIFT of SIFT Flow (128-d, L2)."""

    name = "sift-flow"
    dim = 128
    input = InputSpec(channels=3, value_range=1.0)
    Options = SiftFlowOptions
    batch_size = 64  # patches per dense pass in compute_patches (a 65x65 map is 2.2 MB each)
    summary = "dense SIFT of SIFT Flow (Liu et al. 2011), torch port, 128-d"
    supports_fp16 = True  # option fp16=true, or float16 autocast (`desc-bench time --fp16`)

    def setup(self) -> None:
        opts = self.options
        # The harness samples the map right after dense_map returns, so the output buffer is reused
        # (a fresh 1024x436 map costs ~0.2 s of page faults on CPU).
        self.sift = SiftFlow(opts.cell_size, opts.step, opts.boundary, num_bins=8, reuse_output=True, rgb=True)
        if not opts.color:
            self.input = InputSpec(channels=1, value_range=1.0)
        shift = 0 if opts.boundary else 2 * opts.cell_size
        # Map cell (i, j) is described at the centre of its 4x4 cells (shift + step*j + cell/2).
        self.dense_stride = float(opts.step)
        self.dense_offset = shift + opts.cell_size / 2.0
        self.dtype = torch.float16 if opts.fp16 else torch.float32

    def dense_map(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) 0..1 -> (B, 128, H', W'); a reused buffer, overwritten by the next call."""
        return self.sift(images.to(self.device, compute_dtype(self.device, self.dtype)))
