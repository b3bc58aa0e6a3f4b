"""Tests of ``sift-vlfeat`` (desc_bench.adapters.sift_vlfeat, GitHub issue 11): VLFeat's SIFT through libvl.

The contract tests (tests/adapters/test_contract.py) cover it too, through the registry. The
hand-computed cases rebuild ``vl_sift_calc_raw_descriptor`` (vl/sift.c, VLFeat 0.9.21) for patches
whose gradients all point one way (then only one orientation bin is filled and the C sums reduce to
a spatial weighting written out here in float64) and compare with the library's uint8 output.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import desc_bench
from desc_bench.adapters import sift_vlfeat
from desc_bench.adapters.registry import registered
from desc_bench.adapters.sift_vlfeat import (
    INSTALL_HINT,
    MAGNIF,
    TORCH_TO_VLFEAT,
    TRANSPOSE,
    VLFeatUnavailableError,
    load_libvl,
    mex_output,
    vl_grad,
)
from desc_bench.errors import DescriptorUnavailableError

PATCH_FILE = "data/hpatches-patches-sample/likely_v_graffiti/ref.png"


def _missing() -> str | None:
    try:
        load_libvl()
    except VLFeatUnavailableError as exc:
        return str(exc)
    return None


needs_libvl = pytest.mark.skipif(
    _missing() is not None, reason=f"libvl is not installed here ({_missing()}); CI installs it in .ci/run"
)


def _smooth_patches(count: int, size: int = 65, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    noise = torch.from_numpy(rng.integers(0, 256, size=(count, 1, size, size)).astype(np.float32))
    return F.avg_pool2d(noise, 5, 1, 2).round()


# ---- a hand-computed VLFeat descriptor for one-orientation patches ---------------------------


def _fast_expn(x: np.ndarray) -> np.ndarray:
    """vl/sift.c fast_expn: exp(-x) from a 257-entry table on [0, 25], linearly interpolated."""
    table = np.exp(-np.arange(257) * (25.0 / 256))
    scaled = x * (256 / 25.0)
    i = np.floor(scaled).astype(int)
    return table[i] + (scaled - i) * (table[i + 1] - table[i])


def _hand_descriptor(magnitude: np.ndarray, angle_bin: int) -> np.ndarray:
    """VLFeat's uint8 descriptor of a P x P patch whose gradients all have the orientation of
    ``angle_bin`` (k pi/4, image axes, y down) and the given magnitudes ``(P, P)``; MATLAB layout
    ``row_bin * 32 + col_bin * 8 + angle_bin``, frame of hpatches-benchmark sift.m."""
    size = magnitude.shape[0]
    centre, bin_width = (size - 1) / 2.0, MAGNIF * size / 2.0  # (P/2 + 0.5) 1-based; magnif * sigma
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float64)
    ny, nx = (rows - centre) / bin_width, (cols - centre) / bin_width  # offsets in bins
    weight = _fast_expn((nx**2 + ny**2) / (2.0 * 2.0**2)) * magnitude  # windowSize 2 bins
    hist = np.zeros((4, 4))
    for r in range(4):  # spatial bin r is centred at r - 1.5 bins: bilinear (tent) weights
        for c in range(4):
            tent = np.maximum(0, 1 - np.abs(ny - (r - 1.5))) * np.maximum(0, 1 - np.abs(nx - (c - 1.5)))
            hist[r, c] = (weight * tent).sum()
    desc = np.zeros((4, 4, 8))
    desc[:, :, angle_bin] = hist
    desc = desc.reshape(-1) / np.linalg.norm(desc)
    desc = np.minimum(desc, 0.2)
    desc /= np.linalg.norm(desc)
    return np.floor(np.minimum(512 * desc, 255))


@needs_libvl
@pytest.mark.parametrize("axis,angle_bin", [(1, 0), (0, 2)])
def test_quadratic_ramp_equals_the_hand_computed_descriptor(axis, angle_bin):
    """I = u^2 along columns (axis 1, gradient +x: bin 0) or rows (axis 0, +y: bin 2). vl_grad gives
    magnitude 2u inside, 1 and 2P-3 on the borders, so the histogram is lopsided along that axis:
    this pins the layout (row vs column bins), the orientation bins and the frame."""
    size = 65
    u = np.arange(size, dtype=np.float64)
    image = np.broadcast_to((u**2)[None, :] if axis == 1 else (u**2)[:, None], (size, size))
    profile = np.r_[1.0, 2 * u[1:-1], 2 * size - 3]
    magnitude = np.broadcast_to(profile[None, :] if axis == 1 else profile[:, None], (size, size))
    expected = _hand_descriptor(magnitude, angle_bin)
    out = desc_bench.descriptor("sift-vlfeat").compute_patches(torch.tensor(image, dtype=torch.float32)[None, None])
    got = out[0].numpy()
    assert np.count_nonzero(expected) == 16 and got.reshape(16, 8)[:, angle_bin].min() > 0
    assert np.abs(got - expected).max() <= 1.0  # float32 library sums vs float64 here, then floor
    assert np.count_nonzero(got != expected) <= 4  # measured: equal everywhere
    # the lopsided axis: the high-gradient side (last columns / rows) holds the larger bins
    grid = got.reshape(4, 4, 8)[:, :, angle_bin]
    far, near = (grid[:, 3], grid[:, 0]) if axis == 1 else (grid[3], grid[0])
    assert (far > near).all()


@needs_libvl
@pytest.mark.parametrize("sign,angle_bin", [(1, 1), (-1, 7)])
def test_diagonal_ramp_fills_the_diagonal_orientation_bin(sign, angle_bin):
    """I = 100 + c + sign * r: gradient (1, sign) everywhere, borders included, so every pixel has
    angle sign * pi/4 (bin 1 for +pi/4, bin 7 for -pi/4: angles are not mirrored by the MEX's
    transposition) and magnitude sqrt(2)."""
    size = 65
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    image = torch.from_numpy(100 + cols + sign * rows)[None, None]
    expected = _hand_descriptor(np.full((size, size), math.sqrt(2)), angle_bin)
    got = desc_bench.descriptor("sift-vlfeat").compute_patches(image)[0].numpy()
    assert np.abs(got - expected).max() <= 1.0 and np.count_nonzero(got != expected) <= 4


def test_vl_grad_is_matlab_vl_grad():
    """toolbox/misc/vl_grad.m ('central'): forward/backward differences on the borders."""
    image = np.array([[0, 1, 4, 9], [2, 2, 2, 2], [5, 0, 5, 0]], dtype=np.float32)[None]
    ix, iy = vl_grad(image)
    np.testing.assert_array_equal(ix[0], [[1, 2, 4, 5], [0, 0, 0, 0], [-5, 0, 0, -5]])
    np.testing.assert_array_equal(iy[0], [[2, 1, -2, -7], [2.5, -0.5, 0.5, -4.5], [3, -2, 3, -2]])


def test_mex_output_truncates_like_the_c_cast():
    raw = np.zeros((1, 128), np.float32)
    raw[0, TRANSPOSE[:3]] = [0.2, 0.0039, 0.9]  # output entries 0..2: 102.4 -> 102, 1.9968 -> 1, 460.8 -> 255
    out = mex_output(raw)
    assert out.dtype == np.float32 and list(out[0, :3]) == [102.0, 1.0, 255.0]
    assert mex_output(raw, float_descriptors=True)[0, 2] == pytest.approx(460.8, rel=1e-6)


# ---- the adapter ----------------------------------------------------------------------------


@needs_libvl
def test_shape_dtype_determinism_and_sizes():
    desc = desc_bench.descriptor("sift-vlfeat")
    patches = _smooth_patches(70)
    out = desc.compute_patches(patches)
    assert out.shape == (70, 128) and out.dtype == torch.float32
    assert torch.equal(out, out.round()) and out.min() >= 0 and out.max() <= 255
    norms = out.norm(dim=1)
    assert (norms > 400).all() and (norms < 520).all()  # unit descriptors times 512, floored
    assert torch.equal(out, desc.compute_patches(patches))  # deterministic, threads included
    assert torch.equal(out[:5], torch.cat([desc.compute_patches(patches[i : i + 1]) for i in range(5)]))
    # any patch size: the frame scales with it (32 px patches are described, and differ from 65)
    small = desc.compute_patches(F.interpolate(patches[:4], size=32, mode="bilinear", align_corners=False))
    assert small.shape == (4, 128) and torch.isfinite(small).all()


@needs_libvl
def test_constant_patch_gives_vlfeats_zero_descriptor():
    """No gradient: VLFeat divides the zero histogram by its norm + FLT_EPSILON, giving zeros (as MATLAB does)."""
    out = desc_bench.descriptor("sift-vlfeat").compute_patches(torch.full((2, 1, 65, 65), 100.0))
    assert torch.equal(out, torch.zeros(2, 128))


@needs_libvl
def test_float_descriptors_option_is_the_unquantised_value():
    patches = _smooth_patches(8, seed=3)
    quantised = desc_bench.descriptor("sift-vlfeat").compute_patches(patches)
    floats = desc_bench.descriptor("sift-vlfeat:float_descriptors=true").compute_patches(patches)
    assert not torch.equal(quantised, floats)
    torch.testing.assert_close(quantised, floats.clamp(max=255).floor(), atol=0, rtol=0)
    torch.testing.assert_close(floats.norm(dim=1), torch.full((8,), 512.0), atol=0.1, rtol=0)


@needs_libvl
def test_close_to_sift_torch_vlfeat_in_its_layout(shared):
    """On real HPatches patches, the torch imitation reordered by TORCH_TO_VLFEAT points the same way
    (mean cosine 0.979 measured; other layouts give 0.33 to 0.73)."""
    import cv2

    image = cv2.imread(str(shared / PATCH_FILE), cv2.IMREAD_GRAYSCALE)
    patches = torch.from_numpy(image.reshape(-1, 65, 65)[:200, None].astype(np.float32))
    vl = F.normalize(desc_bench.descriptor("sift-vlfeat").compute_patches(patches), dim=1)
    torch_sift = desc_bench.descriptor("sift-torch-vlfeat").compute_patches(patches)
    assert (vl * torch_sift[:, TORCH_TO_VLFEAT]).sum(1).mean() > 0.95
    assert (vl * torch_sift).sum(1).mean() < 0.6


def test_missing_library_is_reported_with_the_install_command(monkeypatch):
    monkeypatch.setattr(sift_vlfeat, "_find_library", lambda: None)
    cls = registered()["sift-vlfeat"]
    problem = cls.availability()
    assert problem == INSTALL_HINT and "apt-get install libvlfeat1" in problem
    info = {d.name: d for d in desc_bench.descriptors()}["sift-vlfeat"]
    assert not info.available and info.status == INSTALL_HINT
    with pytest.raises(DescriptorUnavailableError, match="apt-get install libvlfeat1"):
        desc_bench.descriptor("sift-vlfeat")


def test_a_library_that_is_not_vlfeat_is_refused(monkeypatch, tmp_path):
    bogus = tmp_path / "libvl.so"
    bogus.write_bytes(b"not a shared object")
    monkeypatch.setenv(sift_vlfeat.LIBRARY_ENV, str(bogus))
    problem = registered()["sift-vlfeat"].availability()
    assert problem.startswith(f"cannot use {bogus} as VLFeat's libvl") and "apt-get install libvlfeat1" in problem


def test_missing_library_gives_an_error_row_not_a_crash(monkeypatch, tiny_hpatches_factory):
    monkeypatch.setattr(sift_vlfeat, "_find_library", lambda: None)
    result = desc_bench.run(
        ["sift-vlfeat"], "hpatches", data_dir=tiny_hpatches_factory(2, 20), tasks=("matching",), output=None
    )
    rows = result.record.results
    assert rows and all(r.error and "apt-get install libvlfeat1" in r.error for r in rows)


@needs_libvl
def test_window_and_frame_constants_are_the_hpatches_ones():
    """sift.m: scale P/2 with magnif 0.5, so the 4 spatial bins span the P px patch exactly."""
    desc = desc_bench.descriptor("sift-vlfeat")
    filt = desc._filter(65).contents
    assert filt.magnif == 0.5 and filt.windowSize == 2.0 and filt.norm_thresh == 0.0
    assert 4 * MAGNIF * 65 / 2 == 65
    assert load_libvl().version.startswith("0.9.")
