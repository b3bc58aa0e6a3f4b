"""VLFeat's SIFT descriptor of a whole patch, as the HPatches baseline computes it (through libvl).

Patches ``(B, 1, P, P)`` 0..255 -> ``(B, 128)`` float32 holding VLFeat's uint8 values (0..255).

Source followed: ``hpatches/hpatches-benchmark`` @ e0c993c, ``matlab/+desc/+feats/sift.m`` (the
MATLAB baseline behind the published "VLFeat-SIFT" HPatches rows; its ``matlab/data/vlfeat.url``
fetches VLFeat 0.9.20, and ``vl/sift.c``, ``vl_siftdescriptor.c`` and ``vl_grad.m`` are unchanged from
2013 to 0.9.21 in vlfeat/vlfeat's history)::

    frm = [(P/2 + 0.5) * ones(2, 1) ; P/2 ; 0] ;          % 1-based centre, scale P/2, angle 0
    [Ix, Iy] = vl_grad(single(patch)) ;                    % no smoothing of the 0..255 patch
    grd = shiftdim(cat(3, sqrt(Ix.^2 + Iy.^2), atan2(Iy, Ix)), 2) ;
    d = vl_siftdescriptor(grd, frm, 'magnif', 0.5) ;       % uint8 (no 'FloatDescriptors')

So it is ``vl_siftdescriptor`` (the raw descriptor on the patch gradient), not ``vl_sift`` with a
frame (which would first build a smoothed scale space): centre ``((P-1)/2, (P-1)/2)`` in 0-based
pixels, scale ``sigma = P/2``, magnification 0.5, so each of the 4x4 spatial bins is
``0.5 * P/2`` px wide and the 4 bins span the patch; VLFeat's Gaussian window (``windowSize`` 2
bins, i.e. sigma ``P/2`` px) and its default ``norm_thresh`` 0 are kept.

What the MATLAB code does, step by step, and how it is reproduced here:

1. ``vl_grad`` (``toolbox/misc/vl_grad.m``): central differences ``0.5 (I[+1] - I[-1])`` inside,
   forward/backward differences on the first/last row and column; magnitude and ``atan2`` in
   single precision (numpy float32 here; MATLAB's single ``atan2`` may round an angle 1 ulp
   differently: not checked, MATLAB is not available to this project).
2. The MEX ``toolbox/sift/vl_siftdescriptor.c`` works on MATLAB's column-major (transposed) image:
   it replaces each angle by ``float(pi/2 - angle)``, swaps the frame's x and y, uses
   ``angle0 = pi/2 - 0``, calls ``vl_sift_calc_raw_descriptor`` with width = rows, height = columns,
   then ``transpose_descriptor`` and stores ``(uint8) min(512 d, 255)``. The same transposed buffer,
   call and post-processing are made here, so the C library computes exactly what the MEX computes.
3. Output layout (VLFeat's): index ``row_bin * 32 + col_bin * 8 + angle_bin``, angle bin ``t``
   centred at ``t pi/4`` with angles measured by ``atan2(gy, gx)``, y pointing down the rows.
   (``sift-torch-vlfeat`` orders the same bins angle-major: ``angle_bin * 16 + row_bin * 4 + col_bin``;
   :data:`TORCH_TO_VLFEAT` reorders it.)

Options: ``float_descriptors=true`` returns ``512 d`` as float (the MEX's 'FloatDescriptors').

Binding: a small ctypes binding to the shared library ``libvl`` of the Debian/Ubuntu package
``libvlfeat1`` (VLFeat 0.9.21), chosen over cyvlfeat because it needs no compiler, Cython or
``libvlfeat-dev`` headers at install time (CI installs one apt package) and reaches the exported
``vl_sift_calc_raw_descriptor`` that ``vl_siftdescriptor`` calls. The magnification setter is an
inline header function, so the ``VlSiftFilt`` struct of ``vl/sift.h`` is mirrored and its layout is
checked against the defaults ``vl_sift_new`` writes before use. ``DESC_BENCH_VLFEAT_LIB`` may name
another ``libvl.so`` (e.g. from a VLFeat binary release).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch

from ..errors import DescBenchError
from .base import Descriptor, InputSpec

LIBRARY_ENV = "DESC_BENCH_VLFEAT_LIB"
INSTALL_HINT = (
    "needs VLFeat's C library libvl: install it with `apt-get install libvlfeat1` (Debian/Ubuntu), "
    f"or set {LIBRARY_ENV} to the path of a libvl.so"
)
MAGNIF = 0.5  # hpatches-benchmark matlab/+desc/+feats/sift.m: vl_siftdescriptor(..., 'magnif', 0.5)
NBO, NBP = 8, 4  # orientation and spatial bins of VLFeat's SIFT (vl/sift.c)


class VLFeatUnavailableError(DescBenchError):
    """libvl cannot be loaded, or is not the VLFeat it is expected to be."""


class _Keypoint(ctypes.Structure):
    _fields_ = [(n, ctypes.c_int) for n in ("o", "ix", "iy", "is_")] + [
        (n, ctypes.c_float) for n in ("x", "y", "s", "sigma")
    ]


class _SiftFilt(ctypes.Structure):
    """``VlSiftFilt`` of VLFeat 0.9.21 ``vl/sift.h`` (field for field)."""

    _fields_ = [
        *[(n, ctypes.c_double) for n in ("sigman", "sigma0", "sigmak", "dsigma0")],
        *[(n, ctypes.c_int) for n in ("width", "height", "O", "S", "o_min", "s_min", "s_max", "o_cur")],
        *[(n, ctypes.POINTER(ctypes.c_float)) for n in ("temp", "octave", "dog")],
        ("octave_width", ctypes.c_int),
        ("octave_height", ctypes.c_int),
        ("gaussFilter", ctypes.POINTER(ctypes.c_float)),
        ("gaussFilterSigma", ctypes.c_double),
        ("gaussFilterWidth", ctypes.c_size_t),  # vl_size
        ("keys", ctypes.POINTER(_Keypoint)),
        ("nkeys", ctypes.c_int),
        ("keys_res", ctypes.c_int),
        *[(n, ctypes.c_double) for n in ("peak_thresh", "edge_thresh", "norm_thresh", "magnif", "windowSize")],
        ("grad", ctypes.POINTER(ctypes.c_float)),
        ("grad_o", ctypes.c_int),
    ]


@dataclass(frozen=True)
class LibVL:
    """The loaded library: its path, version and the two functions used."""

    path: str
    version: str
    cdll: ctypes.CDLL

    def new_filter(self, width: int, height: int) -> ctypes._Pointer:
        """``vl_sift_new(width, height, -1, -1, 0)`` as the MEX makes it; caller frees with ``vl_sift_delete``."""
        filt = self.cdll.vl_sift_new(width, height, -1, -1, 0)
        if not filt:
            raise VLFeatUnavailableError(f"vl_sift_new({width}, {height}) of {self.path} returned NULL (out of memory)")
        f = filt.contents
        # The struct mirror must match this build: vl_sift_new's documented defaults (vl/sift.c).
        seen = (f.width, f.height, f.S, f.o_min, f.sigman, f.edge_thresh, f.norm_thresh, f.magnif, f.windowSize)
        if seen != (width, height, -1, 0, 0.5, 10.0, 0.0, 3.0, 2.0) or f.grad_o != -1:
            self.cdll.vl_sift_delete(filt)
            raise VLFeatUnavailableError(
                f"{self.path} (VLFeat {self.version}) has a VlSiftFilt layout other than VLFeat 0.9.21's; "
                "install libvlfeat1 0.9.21 (`apt-get install libvlfeat1`)"
            )
        return filt


@cache
def _system_library() -> str | None:
    return ctypes.util.find_library("vl")  # runs ldconfig: once per process


def _find_library() -> str | None:
    return os.environ.get(LIBRARY_ENV) or _system_library()


@cache
def _load(path: str | None) -> LibVL:
    if not path:
        raise VLFeatUnavailableError(INSTALL_HINT)
    try:
        cdll = ctypes.CDLL(path)
        version_string = cdll.vl_get_version_string
        cdll.vl_sift_new.restype = ctypes.POINTER(_SiftFilt)
        cdll.vl_sift_new.argtypes = [ctypes.c_int] * 5
        cdll.vl_sift_delete.restype = None
        cdll.vl_sift_delete.argtypes = [ctypes.POINTER(_SiftFilt)]
        raw = cdll.vl_sift_calc_raw_descriptor
    except (OSError, AttributeError) as exc:
        raise VLFeatUnavailableError(f"cannot use {path} as VLFeat's libvl ({exc}); {INSTALL_HINT}") from None
    raw.restype = None
    raw.argtypes = [ctypes.POINTER(_SiftFilt), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    raw.argtypes += [ctypes.c_double] * 4
    version_string.restype = ctypes.c_char_p
    version_string.argtypes = []
    lib = LibVL(path=path, version=version_string().decode("ascii", "replace"), cdll=cdll)
    cdll.vl_sift_delete(lib.new_filter(16, 16))  # checks the struct layout once, at load
    return lib


def load_libvl() -> LibVL:
    """The VLFeat library (found by ``ctypes.util.find_library('vl')`` or ``$DESC_BENCH_VLFEAT_LIB``).

    Raises VLFeatUnavailableError saying how to install it."""
    return _load(_find_library())


# ---- the MATLAB steps around the C call --------------------------------------------------------


def vl_grad(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``vl_grad`` ('central') of ``(B, H, W)`` float32 images -> Ix (along columns), Iy (along rows)."""
    ix = np.empty_like(images)
    iy = np.empty_like(images)
    ix[:, :, 0] = images[:, :, 1] - images[:, :, 0]
    ix[:, :, 1:-1] = np.float32(0.5) * (images[:, :, 2:] - images[:, :, :-2])
    ix[:, :, -1] = images[:, :, -1] - images[:, :, -2]
    iy[:, 0] = images[:, 1] - images[:, 0]
    iy[:, 1:-1] = np.float32(0.5) * (images[:, 2:] - images[:, :-2])
    iy[:, -1] = images[:, -1] - images[:, -2]
    return ix, iy


def mex_gradient_buffer(images: np.ndarray) -> np.ndarray:
    """``(B, H, W)`` float32 -> the MEX's transposed gradient buffer ``(B, W, H, 2)`` float32.

    Element ``[b, c, r]`` holds (magnitude, ``float(pi/2 - atan2(Iy, Ix))``) of pixel row r, column c:
    MATLAB's column-major ``2 x H x W`` array after vl_siftdescriptor.c's "transpose angles" loop.
    """
    # vl_grad of the transposed images gives the transposed (Iy, Ix): compute in the MEX's frame.
    iy, ix = vl_grad(np.ascontiguousarray(images.transpose(0, 2, 1), dtype=np.float32))
    buffer = np.empty((*ix.shape, 2), dtype=np.float32)
    np.sqrt(ix * ix + iy * iy, out=buffer[..., 0])
    angle = np.arctan2(iy, ix).astype(np.float64)
    np.subtract(math.pi / 2, angle, out=angle)
    buffer[..., 1] = angle  # rounded to float32 as the MEX stores VL_PI/2 - angle
    return buffer


def _transpose_permutation() -> np.ndarray:
    """``dst = src[perm]``: vl_siftdescriptor.c ``transpose_descriptor``."""
    perm = np.empty(NBO * NBP * NBP, dtype=np.int64)
    for j in range(NBP):
        for i in range(NBP):
            o, op = NBO * i + NBP * NBO * j, NBO * i + NBP * NBO * (NBP - 1 - j)
            for t in range(NBO):
                perm[op + (NBO - t) % NBO] = o + t
    return perm


TRANSPOSE = _transpose_permutation()
# sift-torch layout (angle * 16 + row * 4 + col) -> VLFeat layout (row * 32 + col * 8 + angle):
# vlfeat_desc = torch_desc[:, TORCH_TO_VLFEAT]
TORCH_TO_VLFEAT = np.array([t * 16 + r * 4 + c for r in range(4) for c in range(4) for t in range(8)])


def mex_output(raw: np.ndarray, float_descriptors: bool = False) -> np.ndarray:
    """Raw C descriptors ``(B, 128)`` -> the MEX's output: transposed, ``512 d``, uint8 unless float."""
    scaled = np.float32(512.0) * raw[:, TRANSPOSE]
    if float_descriptors:
        return scaled
    return np.minimum(scaled, np.float32(255.0)).astype(np.uint8).astype(np.float32)  # C cast truncates


@dataclass(frozen=True)
class SiftVLFeatOptions:
    """Options of ``sift-vlfeat`` (CLI: ``sift-vlfeat:float_descriptors=true``)."""

    float_descriptors: bool = False  # the MEX's 'FloatDescriptors': 512 d unquantised


class SiftVLFeat(Descriptor):
    """VLFeat ``vl_siftdescriptor`` of the whole patch (hpatches-benchmark MATLAB ``sift.m``)."""

    name = "sift-vlfeat"
    dim = 128
    input = InputSpec(channels=1, patch_size=None)  # any size: the frame scales with the patch
    Options = SiftVLFeatOptions
    batch_size = 4096
    summary = "VLFeat SIFT via libvl, patch as a whole, magnif 0.5 (hpatches-benchmark MATLAB baseline)"

    @classmethod
    def availability(cls) -> str | None:
        try:
            load_libvl()
        except VLFeatUnavailableError as exc:
            return str(exc)
        return None

    def setup(self) -> None:
        self._lib = load_libvl()
        self._filters: dict[int, ctypes._Pointer] = {}
        self._lock = threading.Lock()
        self._threads = max(1, torch.get_num_threads())

    def backend_versions(self) -> tuple[str, ...]:
        return (f"libvl {self._lib.version} ({self._lib.path})",)

    def __del__(self):
        lib, filters = getattr(self, "_lib", None), getattr(self, "_filters", {})
        for filt in filters.values() if lib is not None else ():
            lib.cdll.vl_sift_delete(filt)
        filters.clear()

    def _filter(self, size: int) -> ctypes._Pointer:
        with self._lock:  # vl_sift_new also (re)writes the library's global exp table
            if size not in self._filters:
                filt = self._lib.new_filter(size, size)
                filt.contents.magnif = MAGNIF
                self._filters[size] = filt
            return self._filters[size]

    def raw_descriptors(self, images: np.ndarray) -> np.ndarray:
        """``(B, P, P)`` float32 0..255 -> ``vl_sift_calc_raw_descriptor`` outputs ``(B, 128)`` in the
        MEX's transposed frame (before ``transpose_descriptor`` and the 512 scaling)."""
        count, rows, cols = images.shape
        grad = mex_gradient_buffer(images)
        out = np.zeros((count, NBO * NBP * NBP), dtype=np.float32)
        filt = self._filter(rows)
        # The MEX: x, y swapped and 1-based -> 0-based; frame (P/2 + 0.5, P/2 + 0.5, P/2, 0).
        centre, sigma, angle0 = rows / 2.0 + 0.5 - 1.0, rows / 2.0, math.pi / 2 - 0.0
        call = self._lib.cdll.vl_sift_calc_raw_descriptor
        grad_base, out_base = grad.ctypes.data, out.ctypes.data
        grad_step, out_step = grad.strides[0], out.strides[0]

        def run(index: range) -> None:  # ctypes releases the GIL during the call
            for i in index:
                grad_i, out_i = grad_base + i * grad_step, out_base + i * out_step
                call(filt, grad_i, out_i, rows, cols, centre, centre, sigma, angle0)

        chunks = [range(s, min(s + 64, count)) for s in range(0, count, 64)]
        if len(chunks) < 2 or self._threads == 1:
            for chunk in chunks:
                run(chunk)
        else:
            with ThreadPoolExecutor(self._threads) as pool:
                list(pool.map(run, chunks))
        return out

    def describe_patches(self, prepared: torch.Tensor) -> torch.Tensor:
        images = np.ascontiguousarray(prepared[:, 0].detach().cpu().numpy(), dtype=np.float32)
        raw = self.raw_descriptors(images)
        return torch.from_numpy(mex_output(raw, bool(self.options.float_descriptors)))
