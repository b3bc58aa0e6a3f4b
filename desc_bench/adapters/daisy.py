"""DAISY, in torch (``daisy-torch``, matches scikit-image) and OpenCV's (``daisy-opencv``).

Paper: E. Tola, V. Lepetit, P. Fua, "DAISY: An Efficient Dense Descriptor Applied to Wide-Baseline
Stereo", IEEE TPAMI 32(5), 2010. ``daisy-torch`` computes what ``skimage.feature.daisy`` computes
(same parameters, same grid), batched, on CPU or CUDA; ``daisy-opencv`` wraps
``cv2.xfeatures2d.DAISY`` at keypoints (the DAISY that MSNet used).

Shapes:
    Daisy(...)(images)   images (B, 1, H, W) float, values 0..1  ->  (B, D, P, Q)
        D = (rings * histograms + 1) * orientations     (200 with the defaults)
        P = ceil((H - 2*radius) / step), Q = ceil((W - 2*radius) / step)
        map cell (i, j) is the descriptor centred at pixel (radius + step*j, radius + step*i)
    channel layout as scikit-image: the centre histogram, then ring-major, histogram, orientation.
    Daisy(...).centre(images)  ->  (B, D): the descriptor at pixel ((H-1)//2, (W-1)//2), computed
        only where it is sampled (the patch path of ``daisy-torch``; about 12x cheaper than the map).

Algorithm (scikit-image's): forward-difference gradients (zero in the last column / row);
orientation maps ``exp(kappa * cos(angle - o_k)) * |g|`` with ``kappa = orientations / pi`` and
``o_k = 2 pi k / orientations - pi``; Gaussian smoothing per ring with ``sigma_i = radius (i+1) /
(2 rings)`` (the centre uses sigma_0), kernel radius ``int(4 sigma + 0.5)``, symmetric ('reflect')
border, as ``scipy.ndimage.gaussian_filter``; histogram j of ring i is read at offset
``(round(r_i sin t_j), round(r_i cos t_j))`` with ``r_i = radius (i+1) / rings``,
``t_j = 2 pi j / histograms``; normalisation 'l1', 'l2', 'daisy' (per histogram L2) or 'off',
after adding 1e-10.

The GPU port ``hmorimitsu/daisy-gpu`` differs from scikit-image (mean cosine 0.96): it indexes
its Gaussian channels with ``j*len(sigmas)+i`` instead of ``i*orientations+j`` and truncates the
sigmas and kernel radii to integers. This module implements the intended, scikit-image behaviour
(agreement within 4e-3 on the oracle).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DescriptorOutputError, InputError
from .base import Descriptor, Frames, InputSpec, compute_dtype

NORMALIZATIONS = ("l1", "l2", "daisy", "off")


def gaussian_taps(sigma: float, truncate: float = 4.0) -> np.ndarray:
    """scipy.ndimage's 1-D Gaussian: radius ``int(truncate*sigma + 0.5)``, weights sum to one."""
    radius = int(truncate * float(sigma) + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    return taps / taps.sum()


def symmetric_index(size: int, pad: int) -> torch.Tensor:
    """Indices of a length-``size`` axis padded by ``pad`` with scipy's 'reflect' (d c b a | a b c d)."""
    index = np.arange(-pad, size + pad) % (2 * size)
    index = np.where(index >= size, 2 * size - 1 - index, index)
    return torch.from_numpy(index)


def symmetric_pad_last(x: torch.Tensor, pad: int, extra: int = 0) -> torch.Tensor:
    """Pad the last axis by ``pad`` each side, scipy 'reflect' (edge repeated), then ``extra`` zeros.

    Returns a new contiguous tensor ``(..., size + 2*pad + extra)``; ``x`` may be a strided view.
    """
    size = x.shape[-1]
    out = x.new_empty(*x.shape[:-1], size + 2 * pad + extra)
    if pad <= size:
        out[..., pad : pad + size] = x
        if pad:
            out[..., :pad] = out[..., pad : 2 * pad].flip(-1)
            out[..., pad + size : 2 * pad + size] = out[..., size : pad + size].flip(-1)
    else:
        out[..., : 2 * pad + size] = x.index_select(-1, symmetric_index(size, pad).to(x.device))
    if extra:
        out[..., 2 * pad + size :] = 0
    return out


BLOCK = 64  # outputs per block of the banded matrix products


def banded_matrix(taps: np.ndarray, block: int) -> torch.Tensor:
    """(block + K - 1, block) matrix M with M[i + k, i] = taps[k]: windows @ M correlates with taps."""
    size = len(taps)
    matrix = np.zeros((block + size - 1, block))
    index = np.arange(block)
    for k, tap in enumerate(taps):
        matrix[index + k, index] = tap
    return torch.from_numpy(matrix)


def correlate_last(x: torch.Tensor, matrix: torch.Tensor, length: int) -> torch.Tensor:
    """Valid 1-D correlation along the last axis with the taps of ``matrix`` (see banded_matrix).

    ``x`` is ``(..., L)`` with ``L >= blocks*block + K - 1`` (``blocks = ceil(length / block)``);
    returns a ``(..., length)`` view.
    """
    span, block = matrix.shape
    blocks = -(-length // block)
    windows = x.unfold(-1, span, block)[..., :blocks, :].reshape(-1, span)
    return (windows @ matrix).view(*x.shape[:-1], blocks * block)[..., :length]


def block_extra(length: int, block: int) -> int:
    """Zeros to append so that ``ceil(length / block)`` blocks of outputs can be read."""
    return -(-length // block) * block - length


@dataclass(frozen=True)
class DaisyLayout:
    """Resolved parameters: the sigma per ring (centre first) and each histogram's pixel offset."""

    radius: int
    step: int
    orientations: int
    sigmas: tuple[float, ...]  # rings + 1 values: centre, ring 1, ..., ring R
    offsets: tuple[tuple[int, int, int], ...]  # (ring 1..R, dy, dx) per ring histogram, in order

    @property
    def dim(self) -> int:
        return (len(self.offsets) + 1) * self.orientations


def layout(radius: int = 15, rings: int = 3, histograms: int = 8, orientations: int = 8, step: int = 4) -> DaisyLayout:
    """scikit-image's default rules: ``sigma_i = radius (i+1) / (2 rings)``, ``r_i = radius (i+1) / rings``."""
    for key, value in (
        ("radius", radius),
        ("rings", rings),
        ("histograms", histograms),
        ("orientations", orientations),
        ("step", step),
    ):
        if int(value) != value or value < 1:
            raise InputError(f"daisy: {key} must be a positive integer, got {value!r}")
    radius, rings, histograms = int(radius), int(rings), int(histograms)
    sigmas = tuple(radius * (i + 1) / float(2 * rings) for i in range(rings))
    ring_radii = tuple(radius * (i + 1) / float(rings) for i in range(rings))
    offsets = []
    for i in range(rings):
        for j in range(histograms):
            theta = 2 * math.pi * j / histograms
            # Python's round (half to even), as scikit-image
            offsets.append(
                (i + 1, int(round(ring_radii[i] * math.sin(theta))), int(round(ring_radii[i] * math.cos(theta))))
            )
    return DaisyLayout(radius, int(step), int(orientations), (sigmas[0],) + sigmas, tuple(offsets))


class Daisy:
    """Dense DAISY of a batch of gray images, as ``skimage.feature.daisy`` computes it.

    ``Daisy(step=4, radius=15, rings=3, histograms=8, orientations=8, normalization='l1')(images)``
    with images ``(B, 1, H, W)`` float in 0..1; returns ``(B, D, P, Q)`` in the images' dtype.
    """

    def __init__(
        self,
        step: int = 4,
        radius: int = 15,
        rings: int = 3,
        histograms: int = 8,
        orientations: int = 8,
        normalization: str = "l1",
    ):
        if normalization not in NORMALIZATIONS:
            raise InputError(f"daisy: normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
        self.layout = layout(radius, rings, histograms, orientations, step)
        self.normalization = normalization
        self.dim = self.layout.dim
        self._taps = {s: gaussian_taps(s) for s in sorted(set(self.layout.sigmas))}

    def output_shape(self, height: int, width: int) -> tuple[int, int]:
        r, s = self.layout.radius, self.layout.step
        if height <= 2 * r or width <= 2 * r:
            raise InputError(
                f"daisy: image {height}x{width} is too small for radius {r} (needs more than {2 * r} px per side)"
            )
        return (height - 2 * r + s - 1) // s, (width - 2 * r + s - 1) // s

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 1:
            raise InputError(f"daisy: expected gray images (B, 1, H, W), got {getattr(images, 'shape', type(images))}")
        if not images.is_floating_point():
            raise InputError(f"daisy: expected float images in 0..1, got {images.dtype}")
        lay = self.layout
        batch, _, height, width = images.shape
        out_h, out_w = self.output_shape(height, width)
        hist = self._orientation_maps(images[:, 0])  # (B, O, H, W)

        smooth = {s: self._gaussian(hist, s) for s in self._taps}
        r, st = lay.radius, lay.step
        span_h, span_w = st * (out_h - 1) + 1, st * (out_w - 1) + 1
        out = hist.new_empty(batch, self.dim, out_h, out_w)
        o = lay.orientations
        out[:, :o] = smooth[lay.sigmas[0]][..., r : r + span_h : st, r : r + span_w : st]
        for k, (ring, dy, dx) in enumerate(lay.offsets, start=1):
            src = smooth[lay.sigmas[ring]]
            out[:, k * o : (k + 1) * o] = src[..., r + dy : r + dy + span_h : st, r + dx : r + dx + span_w : st]
        return self._normalise(out)

    def _orientation_maps(self, image: torch.Tensor) -> torch.Tensor:
        """(B, H, W) -> (B, O, H, W): exp(kappa cos(angle - o_k)) |g|, forward differences."""
        dx = F.pad(image[..., :, 1:] - image[..., :, :-1], (0, 1))
        dy = F.pad(image[..., 1:, :] - image[..., :-1, :], (0, 0, 0, 1))
        mag = torch.sqrt(dx * dx + dy * dy)
        # cos(angle - o) = (dx cos o + dy sin o) / |g|; where |g| = 0 the map is 0 anyway.
        safe = torch.where(mag > 0, mag, torch.ones_like(mag))
        ux, uy = (dx / safe).unsqueeze(1), (dy / safe).unsqueeze(1)
        o = self.layout.orientations
        angles = torch.tensor([2 * k * math.pi / o - math.pi for k in range(o)], dtype=torch.float64)
        cos = angles.cos().to(image).view(1, o, 1, 1)
        sin = angles.sin().to(image).view(1, o, 1, 1)
        hist = cos * ux
        hist.addcmul_(sin, uy).mul_(o / math.pi).exp_().mul_(mag.unsqueeze(1))
        return hist

    def _gaussian(self, hist: torch.Tensor, sigma: float) -> torch.Tensor:
        """Separable Gaussian with scipy's taps and symmetric border, per orientation map.

        Each 1-D pass is a banded (Toeplitz) matrix product over blocks of BLOCK outputs along the
        last axis: one GEMM instead of a depthwise convolution (an order of magnitude slower on
        CPU). The vertical pass runs on the transposed maps; the result is a transposed view.
        """
        taps = self._taps[sigma]
        pad = (len(taps) - 1) // 2
        matrix = banded_matrix(taps, BLOCK).to(hist)
        height, width = hist.shape[-2:]
        rows = correlate_last(symmetric_pad_last(hist, pad, block_extra(width, BLOCK)), matrix, width)
        cols = symmetric_pad_last(rows.transpose(-1, -2), pad, block_extra(height, BLOCK))
        return correlate_last(cols, matrix, height).transpose(-1, -2)

    def centre(self, images: torch.Tensor) -> torch.Tensor:
        """The descriptor at pixel ``((H-1)//2, (W-1)//2)`` of each image: ``(B, 1, H, W)`` -> ``(B, D)``.

        Equals the dense map at that pixel (``step=1``), computed only where it is sampled: each
        Gaussian pass is a linear operator, so the smoothed value at a point is one row of the
        vertical operator times the orientation map times one row of the horizontal operator.
        This is what describing a patch needs, at a fraction of the dense cost.
        """
        lay = self.layout
        batch, _, height, width = images.shape
        self.output_shape(height, width)  # size check
        cy, cx = (height - 1) // 2, (width - 1) // 2
        hist = self._orientation_maps(images[:, 0])  # (B, O, H, W)
        points = [(lay.sigmas[0], 0, 0)] + [(lay.sigmas[ring], dy, dx) for ring, dy, dx in lay.offsets]
        out = hist.new_empty(batch, len(points), lay.orientations)
        for sigma in dict.fromkeys(p[0] for p in points):
            index = [k for k, p in enumerate(points) if p[0] == sigma]
            rows = self._operator(sigma, height, hist)[[cy + points[k][1] for k in index]]  # (K, H)
            cols = self._operator(sigma, width, hist)[[cx + points[k][2] for k in index]]  # (K, W)
            vertical = torch.einsum("ky,boyx->bokx", rows, hist)
            out[:, index] = torch.einsum("bokx,kx->bko", vertical, cols)
        return self._normalise(out.reshape(batch, -1, 1, 1))[:, :, 0, 0]

    def _operator(self, sigma: float, size: int, like: torch.Tensor) -> torch.Tensor:
        """(size, size) matrix of the 1-D Gaussian pass with scipy's symmetric border: out = M @ x."""
        key = (sigma, size, like.device, like.dtype)
        cache = self.__dict__.setdefault("_operators", {})
        if key not in cache:
            taps = self._taps[sigma]
            pad = (len(taps) - 1) // 2
            with torch.inference_mode(False):  # a normal tensor: usable with autograd after an inference-mode call
                basis = torch.eye(size, dtype=torch.float64)
                responses = correlate_last(
                    symmetric_pad_last(basis, pad, block_extra(size, BLOCK)), banded_matrix(taps, BLOCK), size
                )  # row i: the pass applied to e_i
                cache[key] = responses.t().contiguous().to(like.device, like.dtype)
        return cache[key]

    def _normalise(self, descs: torch.Tensor) -> torch.Tensor:
        """Normalise in float32 at least (in float16 the ``+ 1e-10`` underflows and a flat patch, all
        zero histograms, would divide 0 by 0), then return in the input's dtype."""
        if self.normalization == "off":
            return descs
        dtype = descs.dtype
        descs = descs.to(torch.promote_types(dtype, torch.float32)) + 1e-10
        if self.normalization == "l1":
            out = descs / descs.sum(dim=1, keepdim=True)
        elif self.normalization == "l2":
            out = descs / descs.norm(dim=1, keepdim=True)
        else:
            batch, dim, h, w = descs.shape
            parts = descs.view(batch, dim // self.layout.orientations, self.layout.orientations, h, w)
            out = (parts / parts.norm(dim=2, keepdim=True)).view(batch, dim, h, w)
        return out.to(dtype)


@dataclass(frozen=True)
class DaisyOptions:
    """Options of ``daisy-torch`` (CLI: ``daisy-torch:step=1:normalization=l2``); scikit-image's defaults."""

    step: int = 4
    radius: int = 15
    rings: int = 3
    histograms: int = 8
    orientations: int = 8
    normalization: str = "l1"
    fp16: bool = False


class DaisyTorch(Descriptor):
    """``daisy-torch``: scikit-image's DAISY in torch (200-d with the defaults, L2)."""

    name = "daisy-torch"
    dim = 200
    input = InputSpec(channels=1, value_range=1.0)
    Options = DaisyOptions
    batch_size = 256  # patches per pass in compute_patches
    summary = "DAISY (Tola et al. 2010) in torch, matching skimage.feature.daisy, 200-d"
    supports_fp16 = True  # option fp16=true, or float16 autocast (`desc-bench time --fp16`)

    def setup(self) -> None:
        opts = self.options
        self.daisy = Daisy(opts.step, opts.radius, opts.rings, opts.histograms, opts.orientations, opts.normalization)
        self.dim = self.daisy.dim
        self.dense_stride = float(opts.step)
        self.dense_offset = float(opts.radius)
        self.dtype = torch.float16 if opts.fp16 else torch.float32

    def dense_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.daisy(images.to(self.device, compute_dtype(self.device, self.dtype)))

    def describe_patches(self, prepared: torch.Tensor) -> torch.Tensor:
        """The DAISY descriptor at the patch centre (pixel ``(P-1)//2``), computed directly."""
        return self.daisy.centre(prepared.to(self.device, compute_dtype(self.device, self.dtype))).float()


OPENCV_NORMS = {"none": 100, "partial": 101, "full": 102, "sift": 103}  # cv2.xfeatures2d.DAISY_NRM_*


@dataclass(frozen=True)
class DaisyOpenCVOptions:
    """Options of ``daisy-opencv`` (OpenCV's ``DAISY_create`` arguments and defaults)."""

    radius: float = 15.0
    q_radius: int = 3
    q_theta: int = 8
    q_hist: int = 8
    norm: str = "none"  # none | partial | full | sift
    interpolation: bool = True
    use_orientation: bool = False


class DaisyOpenCV(Descriptor):
    """``daisy-opencv``: ``cv2.xfeatures2d.DAISY`` computed at keypoints (200-d with the defaults)."""

    name = "daisy-opencv"
    dim = 200
    input = InputSpec(channels=1)
    Options = DaisyOpenCVOptions
    summary = "OpenCV's DAISY (xfeatures2d), at keypoints, 200-d"

    @classmethod
    def availability(cls) -> str | None:
        if not hasattr(cv2, "xfeatures2d") or not hasattr(cv2.xfeatures2d, "DAISY_create"):
            return "needs OpenCV's contrib modules: pip install opencv-contrib-python-headless"
        return None

    def setup(self) -> None:
        opts = self.options
        if opts.norm not in OPENCV_NORMS:
            raise InputError(f"daisy-opencv: norm must be one of {', '.join(OPENCV_NORMS)}, got {opts.norm!r}")
        self.dim = (opts.q_radius * opts.q_theta + 1) * opts.q_hist
        self.extractor = cv2.xfeatures2d.DAISY_create(
            radius=float(opts.radius),
            q_radius=opts.q_radius,
            q_theta=opts.q_theta,
            q_hist=opts.q_hist,
            norm=OPENCV_NORMS[opts.norm],
            interpolation=opts.interpolation,
            use_orientation=opts.use_orientation,
        )

    def _compute(self, gray: np.ndarray, xy: np.ndarray, sizes: np.ndarray, angles: np.ndarray) -> np.ndarray:
        keypoints = [cv2.KeyPoint(float(x), float(y), float(s), float(a)) for (x, y), s, a in zip(xy, sizes, angles)]
        kept, descs = self.extractor.compute(np.ascontiguousarray(gray), keypoints)
        if descs is None or len(kept) != len(keypoints):
            raise DescriptorOutputError(
                f"daisy-opencv: OpenCV kept {0 if descs is None else len(kept)} of {len(keypoints)} keypoints"
            )
        return descs

    def describe_keypoints(self, image: np.ndarray, frames: Frames) -> torch.Tensor:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise InputError(
                f"daisy-opencv: expected a uint8 (H, W) or (H, W, 3) image, got {image.dtype} {image.shape}"
            )
        gray = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
        if len(frames) == 0:
            return torch.zeros(0, self.dim, device=self.device)
        sizes = frames.scale if frames.scale is not None else np.ones(len(frames))
        angles = frames.angle if frames.angle is not None else np.zeros(len(frames))
        height, width = gray.shape
        xy = frames.xy
        # OpenCV describes keypoints with 0 <= x < W, 0 <= y < H in place (as upstream, so the
        # oracle holds) and raises cv2.error for the others. Those are described in an image padded
        # by reflection with shifted coordinates, as opencv_learned does; the pad leaves 3 radii
        # around every such keypoint, enough that its descriptor does not depend on the pad.
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)
        descs = np.empty((len(xy), self.dim), dtype=np.float32)
        if inside.any():
            descs[inside] = self._compute(gray, xy[inside], sizes[inside], angles[inside])
        if not inside.all():
            out = ~inside
            beyond = max(float(-xy[out].min()), float(xy[out, 0].max()) - width, float(xy[out, 1].max()) - height, 0.0)
            pad = int(math.ceil(3 * self.options.radius + beyond)) + 8
            padded = cv2.copyMakeBorder(np.ascontiguousarray(gray), pad, pad, pad, pad, cv2.BORDER_REFLECT_101)
            descs[out] = self._compute(padded, xy[out] + pad, sizes[out], angles[out])
        return torch.from_numpy(descs).to(self.device)
