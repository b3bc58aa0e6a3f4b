"""Differentiable SIFT patch descriptor in torch (Mishkin's pytorch-sift; Lowe, IJCV 2004).

Shapes:
    SIFTNet(config)(patches)     (B, 1, P, P) float, values 0..255  ->  (B, 128), unit L2 norm
    adapters ``sift-torch-mp`` / ``sift-torch-vlfeat``: compute_patches (B, 1, any, any) -> (B, 128)

The computation (equal to ``ducha-aiki/pytorch-sift`` ``SIFTNet`` to float precision):

1. Gradients by central differences ``[-1, 0, 1]`` with replicated borders; magnitude
   ``sqrt(gx^2 + gy^2 + 1e-10)``, orientation ``atan2(gy, gx + 1e-10)``.
2. The magnitude is weighted by a window centred on the patch (pixel (i, j) at distance^2
   ``d2 = (i - P/2 + 0.5)^2 + (j - P/2 + 0.5)^2``): ``exp(-d2 / s2)`` with ``s2 = 0.9 (P/2)^2``
   ("hesamp", Perdoch's Hessian-affine sampler; ``sift-torch-mp`` also zeroes ``d2 >= (P/2)^2``,
   the circular mask) or ``s2 = P^2`` ("vlfeat", a plain Gaussian: ``sift-torch-vlfeat``).
3. Orientations are split linearly between the two nearest of 8 bins (bin ``k`` is centred at
   angle ``k pi/4``, angles measured by ``atan2`` with y pointing down the patch rows).
4. Each orientation map is pooled into 4x4 cells by a tent kernel: a conv with kernel size
   ``2 floor(P/5)``, stride ``P // 4`` and zero padding ``kernel // 4``.
5. L2 normalisation, clipping at 0.2, L2 normalisation; optionally RootSIFT
   (``sqrt(l1_normalise(d) + 1e-10)``, Arandjelovic & Zisserman, CVPR 2012).

Output layout is angle-major: index ``angle_bin * 16 + row * 4 + col``.

On the CPU without autograd, float32 patches go through one fused loop compiled by numba
(:mod:`.sift_kernel`, 3x less CPU time than the torch ops below), in shares on
``torch.get_num_threads()`` threads. Everything else (autograd, float64, accelerators, a process
without numba) runs the torch ops, equal to float precision (tests/adapters/test_sift_torch.py).

Implementation of the torch ops (no loop over bins, no per-bin masks). With ``q`` the orientation in bin units
(0..8, ``q = k`` at the centre of upstream's output bin ``(k + 4) mod 8``) and ``m`` the windowed
magnitude, the linear split of step 3 is written with *ramps* ``R_k = m clamp(q - k, 0, 1)``,
k = 0..7: the bin centred at ``c`` (1..7) is ``R_{c-1} - R_c`` and the bin centred at 0 (the wrap
from +pi to -pi) is ``m - R_0 + R_7``. Pooling is linear, so the ramps and ``m`` are pooled and the
bins formed afterwards by one small ``(9*16, 8*16)`` matrix (``ramp_unmixing``), already in the
angle-major output order. Each ramp map is one broadcast ``addcmul`` (``q m - k m``) and one
in-place ``clamp(0, m)``; the tent pooling is separable, ``tent @ map @ tent.T`` (two small matrix
products, 4x fewer operations than one ``(P*P, 16)`` matrix). Without autograd the maps are built
in place: the per-pixel maps 64 patches (of 65 px) at a time, the 8 ramp maps 8 patches per torch
thread at a time through one workspace that stays in the core's cache. Everything is
differentiable with respect to the input; float64 inputs are computed in float64, float16 and
bfloat16 ones in float32 (the ramp differences need it), the matrix products outside autocast.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError
from . import sift_kernel
from .base import Descriptor, InputSpec
from .sift_kernel import GRADIENT_EPS, KernelTables

ROOTSIFT_EPS = 1e-10
CPU_CHUNK_PIXELS = 64 * 65 * 65  # CPU sub-batch of the per-pixel maps: 64 patches of 65 px
RAMP_CHUNK_PIXELS = 8 * 65 * 65  # CPU sub-batch of the ramp maps, per torch thread: 8 patches (1.1 MB, in L2)


class SigmaType(str, enum.Enum):
    """Width of the Gaussian weighting window."""

    HESAMP = "hesamp"  # sigma^2 = 0.9 (P/2)^2 / 2: Perdoch's Hessian-affine sampler ("MP")
    VLFEAT = "vlfeat"  # sigma^2 = P^2 / 2


@dataclass(frozen=True)
class SIFTConfig:
    """Parameters of :class:`SIFTNet`."""

    patch_size: int = 65
    sigma_type: SigmaType = SigmaType.HESAMP
    circular: bool = True  # zero the window outside the inscribed circle
    rootsift: bool = False
    num_ang_bins: int = 8
    num_spatial_bins: int = 4
    clip: float = 0.2

    def __post_init__(self):
        object.__setattr__(self, "sigma_type", SigmaType(self.sigma_type))
        if self.patch_size < 2 * (self.num_spatial_bins + 1):
            raise InputError(
                f"SIFT patch_size must be at least {2 * (self.num_spatial_bins + 1)} px, got {self.patch_size}"
            )
        if self.num_ang_bins < 2 or self.num_ang_bins % 2 or self.num_spatial_bins < 1:
            raise InputError(
                f"SIFT needs an even number (>= 2) of orientation bins and at least 1 spatial bin, "
                f"got {self.num_ang_bins} and {self.num_spatial_bins}"
            )
        kernel, stride, pad = pooling_geometry(self.patch_size, self.num_spatial_bins)
        cells = (self.patch_size + 2 * pad - kernel) // stride + 1
        if cells != self.num_spatial_bins:
            raise InputError(
                f"SIFT pooling of a {self.patch_size} px patch gives {cells} cells per side, expected "
                f"{self.num_spatial_bins}; use another patch_size (65 and 32 are the usual ones)"
            )

    @property
    def dim(self) -> int:
        return self.num_ang_bins * self.num_spatial_bins**2


def weighting_window(patch_size: int, sigma_type: SigmaType | str, circular: bool) -> torch.Tensor:
    """The ``(P, P)`` float64 magnitude weighting (step 2 of the module docstring)."""
    half = patch_size / 2.0
    r2 = half * half
    s2 = 0.9 * r2 if SigmaType(sigma_type) is SigmaType.HESAMP else float(patch_size) ** 2
    coords = torch.arange(patch_size, dtype=torch.float64) - half + 0.5
    d2 = coords[:, None] ** 2 + coords[None, :] ** 2
    window = torch.exp(-d2 / s2)
    if circular:
        window = torch.where(d2 >= r2, torch.zeros_like(window), window)
    return window


def pooling_geometry(patch_size: int, num_spatial_bins: int) -> tuple[int, int, int]:
    """Kernel size, stride and padding of the tent pooling (step 4)."""
    kernel = 2 * int(patch_size / (num_spatial_bins + 1))
    stride = patch_size // num_spatial_bins
    return kernel, stride, kernel // 4


def tent_pooling_matrix(patch_size: int, num_spatial_bins: int) -> torch.Tensor:
    """``(num_spatial_bins, P)`` float64: the 1-D tent pooling conv written as a matrix.

    Cell ``r`` takes pixel ``y`` with weight ``t[y + pad - r*stride]`` where the tent
    ``t[i] = (h - |i + 0.5 - h|) / h`` with ``h = kernel / 2`` (zero outside the kernel).
    The 2-D pooling kernel is the outer product of two of these (each normalised by ``h``).
    """
    kernel, stride, pad = pooling_geometry(patch_size, num_spatial_bins)
    half = kernel / 2.0
    offset = torch.arange(patch_size)[None, :] + pad - stride * torch.arange(num_spatial_bins)[:, None]
    tent = (half - (offset.double() + 0.5 - half).abs()) / half
    inside = (offset >= 0) & (offset < kernel)
    return torch.where(inside, tent, torch.zeros_like(tent))


def ramp_unmixing(num_ang_bins: int, cells: int) -> torch.Tensor:
    """``((K+1) * cells, K * cells)`` float64: pooled ramps -> pooled orientation bins, output order.

    Ramp ``j`` (``k = j - 1``) is ``m * clamp(q - k, 0, 1)``; ramp 0 is ``m`` itself. The bin
    centred at ``c`` (1..K-1) is ramp ``c - 1`` minus ramp ``c``; the bin centred at 0 (the wrap
    from +pi to -pi) is ``m - ramp(k=0) + ramp(k=K-1)``. Output bin ``o`` is centred at
    ``(o + K/2) mod K`` (upstream's order: angle 0 first). Applied per spatial cell.
    """
    bins = num_ang_bins
    mix = torch.zeros(bins + 1, bins, dtype=torch.float64)
    for out in range(bins):
        centre = (out + bins // 2) % bins
        mix[centre, out] += 1.0
        mix[centre + 1, out] -= 1.0
        if centre == 0:
            mix[bins, out] += 1.0
    eye = torch.eye(cells, dtype=torch.float64)
    return (mix[:, None, :, None] * eye[None, :, None, :]).reshape((bins + 1) * cells, bins * cells)


def gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences with replicated borders: ``(B, P, P)`` -> gx, gy ``(B, P, P)``."""
    if torch.is_grad_enabled() and x.requires_grad:
        padded = F.pad(x[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
        return padded[:, 1:-1, 2:] - padded[:, 1:-1, :-2], padded[:, 2:, 1:-1] - padded[:, :-2, 1:-1]
    # Without autograd: differences of the flattened patches (contiguous), then the borders.
    count, size = x.shape[0], x.shape[-1]
    flat = x.reshape(count, size * size)
    gx, gy = torch.empty_like(flat), torch.empty_like(flat)
    torch.sub(flat[:, 2:], flat[:, :-2], out=gx[:, 1:-1])
    torch.sub(flat[:, 2 * size :], flat[:, : -2 * size], out=gy[:, size:-size])
    torch.sub(flat[:, size : 2 * size], flat[:, :size], out=gy[:, :size])
    torch.sub(flat[:, -size:], flat[:, -2 * size : -size], out=gy[:, -size:])
    gx, gy, x = gx.view(count, size, size), gy.view(count, size, size), x.view(count, size, size)
    torch.sub(x[:, :, 1], x[:, :, 0], out=gx[:, :, 0])
    torch.sub(x[:, :, -1], x[:, :, -2], out=gx[:, :, -1])
    return gx, gy


@dataclass(frozen=True)
class _Constants:
    """Per device and dtype: the precomputed tensors of :class:`SIFTNet`."""

    window: torch.Tensor  # (P, P) magnitude weighting
    tent: torch.Tensor  # (S, P) 1-D tent pooling (rows: pixel y -> cell row)
    tent_t: torch.Tensor  # (P, S) its transpose (pixel x -> cell column)
    offsets: torch.Tensor  # (1, K, 1, 1): K/2 - k for the ramps k = 0 .. K-1, in bin units
    unmixing: torch.Tensor  # ((K+1) S^2, K S^2): see ramp_unmixing

    @classmethod
    def build(cls, config: SIFTConfig, device: torch.device, dtype: torch.dtype) -> _Constants:
        bins, cells = config.num_ang_bins, config.num_spatial_bins**2
        tent = tent_pooling_matrix(config.patch_size, config.num_spatial_bins)
        window = weighting_window(config.patch_size, config.sigma_type, config.circular)
        offsets = (bins / 2.0 - torch.arange(bins, dtype=torch.float64)).view(1, -1, 1, 1)
        tensors = (window, tent, tent.t().contiguous(), offsets, ramp_unmixing(bins, cells))
        return cls(*(t.to(device=device, dtype=dtype) for t in tensors))


class SIFTNet(nn.Module):
    """SIFT descriptors of patches ``(B, 1, P, P)`` (values 0..255) -> ``(B, 128)``.

    Differentiable with respect to the patches; works on any device and float dtype (float16 and
    bfloat16 inputs are computed in float32, the result returned in the input's dtype).
    """

    def __init__(self, config: SIFTConfig | None = None, chunk_size: int | None = None, **overrides):
        super().__init__()
        self.config = dataclasses.replace(config or SIFTConfig(), **overrides)
        self.chunk_size = chunk_size  # patches per internal sub-batch; None = chosen by device
        self._constants: dict[tuple[torch.device, torch.dtype], _Constants] = {}
        self._tables: KernelTables | None = None  # of the compiled CPU loop, built on first use

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"patch_size={c.patch_size}, sigma_type={c.sigma_type.value}, circular={c.circular}, "
            f"rootsift={c.rootsift}, bins={c.num_ang_bins}x{c.num_spatial_bins}x{c.num_spatial_bins}"
        )

    def constants(self, ref: torch.Tensor) -> _Constants:
        """The precomputed tensors on ``ref``'s device and dtype (built once from float64)."""
        key = (ref.device, ref.dtype)
        if key not in self._constants:
            with torch.inference_mode(False):  # normal tensors: usable with autograd after an inference-mode call
                self._constants[key] = _Constants.build(self.config, ref.device, ref.dtype)
        return self._constants[key]

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        size = self.config.patch_size
        if patches.ndim != 4 or patches.shape[1] != 1 or tuple(patches.shape[2:]) != (size, size):
            raise InputError(f"SIFTNet expects patches of shape (B, 1, {size}, {size}), got {tuple(patches.shape)}")
        if patches.dtype in (torch.float16, torch.bfloat16):  # the ramp differences need float32
            return self.forward(patches.float()).to(patches.dtype)
        if not patches.is_floating_point():
            patches = patches.float()
        if self._compiled_path(patches):
            return self._finish(torch.from_numpy(self._kernel_histograms(patches[:, 0])).flatten(1))
        step = self.chunk_size if self.chunk_size is not None else _default_chunk(patches, CPU_CHUNK_PIXELS)
        k = self.constants(patches)
        device = patches.device.type
        autocast = torch.is_autocast_enabled(device)  # the matrix products stay in float32
        with torch.autocast(device, enabled=False) if autocast else contextlib.nullcontext():
            if torch.is_grad_enabled() and patches.requires_grad:
                pooled = torch.cat([self._pooled_maps(part[:, 0], k) for part in patches.split(step)])
            else:
                pooled = self._pooled_maps_inplace(patches[:, 0], k, step)
            return self._finish(pooled.flatten(1) @ k.unmixing)

    def _compiled_path(self, patches: torch.Tensor) -> bool:
        """Float32 on the CPU without autograd, with numba importable: the fused loop."""
        plain = patches.device.type == "cpu" and patches.dtype == torch.float32
        return plain and not (torch.is_grad_enabled() and patches.requires_grad) and sift_kernel.available()

    def _kernel_histograms(self, patches: torch.Tensor) -> np.ndarray:
        """``(B, P, P)`` float32 CPU -> the pooled orientation histograms ``(B, K, S, S)`` (output order)."""
        if self._tables is None:
            c = self.config
            window = weighting_window(c.patch_size, c.sigma_type, c.circular).numpy()
            self._tables = KernelTables.build(tent_pooling_matrix(c.patch_size, c.num_spatial_bins).numpy(), window)
        threads = torch.get_num_threads()
        return sift_kernel.histograms(patches.detach().numpy(), self._tables, self.config.num_ang_bins, threads)

    def _pooled_maps(self, patches: torch.Tensor, k: _Constants) -> torch.Tensor:
        """Differentiable: ``(B, P, P)`` -> the pooled magnitude and ramps ``(B, K+1, S^2)``."""
        gx, gy = gradients(patches)
        magnitude = (torch.sqrt(gx * gx + gy * gy + GRADIENT_EPS) * k.window).unsqueeze(1)
        scaled = torch.atan2(gy, gx + GRADIENT_EPS).unsqueeze(1) * magnitude * self._unit  # (q - K/2) m
        ramps = torch.clamp(torch.addcmul(scaled, magnitude, k.offsets), min=torch.zeros_like(k.offsets), max=magnitude)
        return torch.cat([self._pool(magnitude, k), self._pool(ramps, k)], dim=1)

    def _pooled_maps_inplace(self, patches: torch.Tensor, k: _Constants, step: int) -> torch.Tensor:
        """The values of :meth:`_pooled_maps` without autograd, with few buffers.

        The per-pixel maps (magnitude, orientation) are made ``step`` patches at a time; the K ramp
        maps (K times larger) in sub-batches of ``RAMP_CHUNK_PIXELS`` per thread through one workspace, so
        that they stay in cache between being written, clamped and pooled.
        """
        count, bins = patches.shape[0], self.config.num_ang_bins
        pooled = patches.new_empty(count, bins + 1, self.config.num_spatial_bins**2)
        inner = min(step, _default_chunk(patches, RAMP_CHUNK_PIXELS * torch.get_num_threads()))
        work = patches.new_empty(min(inner, count), bins, *patches.shape[1:])
        zero = patches.new_zeros(())
        for start in range(0, count, step):
            gx, gy = gradients(patches[start : start + step])
            magnitude = torch.addcmul(gx.new_tensor(GRADIENT_EPS), gx, gx).addcmul_(gy, gy).sqrt_().mul_(k.window)
            scaled = torch.atan2(gy, gx.add_(GRADIENT_EPS), out=gy)
            torch.addcmul(zero, scaled, magnitude, value=self._unit, out=scaled)  # (q - K/2) m
            magnitude, scaled = magnitude.unsqueeze(1), scaled.unsqueeze(1)
            pooled[start : start + len(magnitude), :1] = self._pool(magnitude, k)
            for sub in range(0, len(magnitude), inner):
                m = magnitude[sub : sub + inner]
                ramps = work[: len(m)]
                torch.addcmul(scaled[sub : sub + inner], m, k.offsets, out=ramps).clamp_(min=zero, max=m)
                pooled[start + sub : start + sub + len(m), 1:] = self._pool(ramps, k)
        return pooled

    @property
    def _unit(self) -> float:
        return self.config.num_ang_bins / (2.0 * math.pi)  # radians -> bin units

    def _pool(self, maps: torch.Tensor, k: _Constants) -> torch.Tensor:
        """Separable tent pooling (rows, then columns): ``(B, C, P, P)`` -> ``(B, C, S^2)``."""
        rows = torch.matmul(k.tent, maps)  # (B, C, S, P)
        return (rows.reshape(-1, self.config.patch_size) @ k.tent_t).reshape(*maps.shape[:2], len(k.tent) ** 2)

    def _finish(self, desc: torch.Tensor) -> torch.Tensor:
        """Normalise, clip, normalise (and RootSIFT)."""
        desc = F.normalize(desc, p=2.0, dim=1)
        desc = torch.clamp(desc, 0.0, self.config.clip)
        desc = F.normalize(desc, p=2.0, dim=1)
        if self.config.rootsift:
            desc = torch.sqrt(F.normalize(desc, p=1.0, dim=1) + ROOTSIFT_EPS)
        return desc


def _default_chunk(patches: torch.Tensor, pixels: int) -> int:
    """Patches per sub-batch: ``pixels`` on CPU (cache-resident maps), whole batches on accelerators."""
    if patches.device.type == "cpu":
        return max(1, pixels // patches.shape[-1] ** 2)
    return 1 << 62


# ---- adapters ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SIFTTorchOptions:
    """Options of the torch SIFT adapters (CLI: ``sift-torch-mp:patch_size=32:rootsift=true``)."""

    patch_size: int = 65
    rootsift: bool = False


class _SIFTTorch(Descriptor):
    """Shared body of the two torch SIFT variants; subclasses set the window."""

    dim = 128
    input = InputSpec(channels=1, patch_size=65, value_range=255.0)
    Options = SIFTTorchOptions
    batch_size = 1024  # compute_patches streams in chunks of this many patches (bounded memory)
    sigma_type: ClassVar[SigmaType] = SigmaType.HESAMP
    circular: ClassVar[bool] = True
    code_modules = (sift_kernel,)  # the compiled CPU loop's source is part of the feature key

    def setup(self) -> None:
        size = int(self.options.patch_size)
        config = SIFTConfig(
            patch_size=size, sigma_type=self.sigma_type, circular=self.circular, rootsift=bool(self.options.rootsift)
        )
        # The native size depends on an option: override the class-level spec on the instance
        # (prepare.py reads ``desc.input``), so inputs are resized to ``patch_size`` first.
        self.input = dataclasses.replace(type(self).input, patch_size=size)
        self.net = SIFTNet(config).to(self.device)

    def describe_patches(self, prepared: torch.Tensor) -> torch.Tensor:
        return self.net(prepared)

    def backend_versions(self) -> tuple[str, ...]:
        """numba's, where the compiled CPU loop may run (its last bits differ from the torch ops')."""
        return (sift_kernel.version(),) if torch.device(self.device).type == "cpu" else ()


class SIFTTorchMP(_SIFTTorch):
    """pytorch-sift with Perdoch's ("MP") circular Gaussian window."""

    name = "sift-torch-mp"
    summary = "torch SIFT (pytorch-sift), Perdoch/hesamp circular Gaussian window, differentiable"
    sigma_type = SigmaType.HESAMP
    circular = True


class SIFTTorchVLFeat(_SIFTTorch):
    """pytorch-sift with the VLFeat-like plain Gaussian window."""

    name = "sift-torch-vlfeat"
    summary = "torch SIFT (pytorch-sift), VLFeat-like Gaussian window, differentiable"
    sigma_type = SigmaType.VLFEAT
    circular = False
