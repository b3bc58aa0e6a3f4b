"""Tests of the torch SIFT descriptor (desc_bench.adapters.sift_torch, GitHub issue 3).

Oracle: ../shared/oracles/pytorch-sift/oracle_pytorch_sift_fox.npz, the outputs of upstream
``pytorch_sift.SIFTNet`` (ducha-aiki/pytorch-sift @ 00e726f) on 99 crops of fox.png.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import desc_bench
from desc_bench.adapters import sift_kernel
from desc_bench.adapters.sift_torch import (
    SIFTConfig,
    SIFTNet,
    SigmaType,
    pooling_geometry,
    tent_pooling_matrix,
    weighting_window,
)
from desc_bench.bench.features import class_sources
from desc_bench.errors import InputError, UnknownNameError

ORACLE = "oracles/pytorch-sift/oracle_pytorch_sift_fox.npz"
MODES = {  # adapter name -> (oracle key part, sigma type, circular mask)
    "sift-torch-mp": ("hesamp_circgauss", SigmaType.HESAMP, True),
    "sift-torch-vlfeat": ("vlfeat_gauss", SigmaType.VLFEAT, False),
}
CASES = [(name, size, root) for name in MODES for size in (65, 32) for root in (False, True)]


@pytest.fixture(scope="module")
def oracle(shared):
    with np.load(shared / ORACLE) as data:
        return {key: data[key] for key in data.files}


def _patches(oracle, size: int) -> torch.Tensor:
    return torch.from_numpy(oracle[f"patches{size}_uint8"]).float()[:, None]


def _key(name: str, size: int, root: bool) -> str:
    return f"desc{size}_{MODES[name][0]}" + ("_rootsift" if root else "")


def _random_patches(count: int, size: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    """Smooth random texture (blurred noise), 0..255."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(count, 1, size + 4, size + 4, generator=generator, dtype=torch.float64)
    smooth = F.avg_pool2d(noise, 5, stride=1)
    smooth = (smooth - smooth.amin(dim=(2, 3), keepdim=True)) / smooth.amax(dim=(2, 3), keepdim=True).sub(
        smooth.amin(dim=(2, 3), keepdim=True)
    )
    return (smooth * 255).to(dtype)


# ---- exactness against upstream ------------------------------------------------------------


@pytest.mark.parametrize("name,size,root", CASES)
def test_module_matches_upstream_oracle(oracle, name, size, root):
    _, sigma, circular = MODES[name]
    net = SIFTNet(SIFTConfig(patch_size=size, sigma_type=sigma, circular=circular, rootsift=root))
    out = net(_patches(oracle, size)).numpy()
    expected = oracle[_key(name, size, root)]
    assert out.shape == expected.shape == (99, 128)
    assert np.abs(out - expected).max() <= 1e-4


@pytest.mark.parametrize("name,size,root", CASES)
def test_adapter_matches_upstream_oracle(oracle, name, size, root):
    desc = desc_bench.descriptor(f"{name}:patch_size={size}:rootsift={str(root).lower()}")
    out = desc.compute_patches(_patches(oracle, size))
    assert out.dtype == torch.float32 and out.shape == (99, 128)
    assert np.abs(out.numpy() - oracle[_key(name, size, root)]).max() <= 1e-4


@pytest.mark.parametrize("name", list(MODES))
def test_public_paths_match_upstream_oracle(shared, oracle, name, monkeypatch):
    """What a user holds: the uint8 (N, P, P) crops as numpy, in chunks (batch_size 16), and the
    image itself described at the crop centres with compute_dense (patches sampled around the
    keypoints); both to 1e-4 of upstream."""
    from PIL import Image

    desc = desc_bench.descriptor(name)
    monkeypatch.setattr(desc, "batch_size", 16)
    expected = oracle[_key(name, 65, False)]
    out = desc.compute_patches(oracle["patches65_uint8"])
    assert out.dtype == torch.float32 and np.abs(out.numpy() - expected).max() <= 1e-4
    gray = np.asarray(Image.open(shared / "oracles/pytorch-sift/fox.png").convert("L"))  # as the oracle's crops
    top_left = oracle["patch_top_left_yx"]
    assert np.array_equal(np.stack([gray[y : y + 65, x : x + 65] for y, x in top_left]), oracle["patches65_uint8"])
    centres = top_left[:, ::-1].astype(np.float64) + 32  # x, y of pixel 32 of each crop
    out = desc.compute_dense(gray, centres)
    assert out.shape == (99, 128) and np.abs(out.numpy() - expected).max() <= 1e-4


@pytest.mark.parametrize("name", list(MODES))
def test_adapter_resizes_to_the_option_patch_size(oracle, name):
    """65 px input with patch_size=32 is resized first (bilinear, like cv2.resize INTER_LINEAR).

    The oracle's 32 px patches were rounded to uint8 after resizing, so only closeness is expected.
    """
    desc = desc_bench.descriptor(name, patch_size=32)
    assert desc.input.patch_size == 32 and type(desc).input.patch_size == 65
    out = desc.compute_patches(_patches(oracle, 65)).numpy()
    expected = oracle[_key(name, 32, False)]
    assert (out * expected).sum(axis=1).min() > 0.99
    assert np.abs(out - expected).max() < 0.05


def test_modes_differ(oracle):
    """The two windows give different descriptors (guards against a mode being ignored)."""
    x = _patches(oracle, 65)[:10]
    mp = desc_bench.descriptor("sift-torch-mp").compute_patches(x)
    vl = desc_bench.descriptor("sift-torch-vlfeat").compute_patches(x)
    assert (mp - vl).abs().max() > 1e-2


# ---- an independent reference for the structure and the gradient -----------------------------


def _reference(x: torch.Tensor, config: SIFTConfig) -> torch.Tensor:
    """A direct, loop-over-bins version written from the paper's description (upstream's structure).

    Gradients by conv with replicated borders, hard bin masks, and the pooling as a strided conv.
    """
    bins = config.num_ang_bins
    gx = F.conv2d(F.pad(x, (1, 1, 0, 0), mode="replicate"), x.new_tensor([[[[-1.0, 0.0, 1.0]]]]))
    gy = F.conv2d(F.pad(x, (0, 0, 1, 1), mode="replicate"), x.new_tensor([[[[-1.0], [0.0], [1.0]]]]))
    mag = torch.sqrt(gx * gx + gy * gy + 1e-10)
    mag = mag * weighting_window(config.patch_size, config.sigma_type, config.circular).to(x)
    position = (torch.atan2(gy, gx + 1e-10) + 2 * math.pi) / (2 * math.pi) * bins
    lower = torch.floor(position)
    frac = position - lower
    lower = lower % bins
    upper = (lower + 1) % bins
    kernel, stride, pad = pooling_geometry(config.patch_size, config.num_spatial_bins)
    half = kernel / 2.0
    tent = torch.tensor([half - abs(i + 0.5 - half) for i in range(kernel)], dtype=x.dtype) / half
    weight = torch.outer(tent, tent)[None, None]
    maps = []
    for b in range(bins):
        contrib = (lower == b).to(x.dtype) * (1 - frac) * mag + (upper == b).to(x.dtype) * frac * mag
        maps.append(F.conv2d(contrib, weight, stride=stride, padding=pad))
    desc = torch.cat(maps, dim=1).flatten(1)
    desc = F.normalize(F.normalize(desc, dim=1).clamp(0, config.clip), dim=1)
    if config.rootsift:
        desc = torch.sqrt(F.normalize(desc, p=1, dim=1) + 1e-10)
    return desc


@pytest.mark.parametrize("sigma,circular,root", [("hesamp", True, False), ("vlfeat", False, True)])
def test_values_and_gradients_equal_reference(sigma, circular, root):
    config = SIFTConfig(patch_size=32, sigma_type=sigma, circular=circular, rootsift=root)
    x = _random_patches(3, 32, seed=1, dtype=torch.float64).requires_grad_()
    ours, ref = SIFTNet(config)(x), _reference(x, config)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)
    weights = torch.randn_like(ours)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), x)
    (grad_ref,) = torch.autograd.grad((_reference(x, config) * weights).sum(), x)
    assert grad_ours.abs().max() > 0
    torch.testing.assert_close(grad_ours, grad_ref, rtol=1e-7, atol=1e-12)


def _ramps(angles: list[float], size: int = 16) -> torch.Tensor:
    """Linear ramps ``(len(angles), 1, size, size)`` float64 whose gradients point at the given angles."""
    coords = torch.arange(size, dtype=torch.float64)
    a = torch.tensor(angles, dtype=torch.float64)[:, None, None, None]
    return 100.0 + 3.0 * (torch.cos(a) * coords[None, None, None, :] + torch.sin(a) * coords[None, None, :, None])


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("sigma,circular", [("hesamp", True), ("vlfeat", False)])
def test_orientations_around_the_wrap_bin(grad, sigma, circular):
    # Angles +-pi and just inside them (the bin whose distance is periodic), bin centres and edges.
    angles = [math.pi, -math.pi, math.pi - 1e-3, -math.pi + 1e-3, 7 * math.pi / 8, 0.0, math.pi / 4, -math.pi / 8]
    x = _ramps(angles).requires_grad_(grad)
    config = SIFTConfig(patch_size=16, sigma_type=sigma, circular=circular)
    with torch.set_grad_enabled(grad):
        ours = SIFTNet(config)(x)
    ref = _reference(x.detach(), config)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(SIFTNet(config)(x.detach().float()).double(), ref, rtol=0, atol=1e-5)
    wrap_bin = ours[:4].detach().reshape(4, 8, 16).sum(dim=2)[:, 4]  # output bin 4 is centred at +-pi
    assert (wrap_bin > 0.9 * ours[:4].detach().reshape(4, 8, 16).sum(dim=(1, 2))).all()
    if grad:  # gradients only where they are defined: off the bin edges (multiples of pi/4)
        smooth = [0.1, 0.1 - math.pi, math.pi - 1e-3, -math.pi + 1e-3, 7 * math.pi / 8, -math.pi / 8]
        x = _ramps(smooth).requires_grad_()
        ours = SIFTNet(config)(x)
        weights = torch.randn_like(ours)
        (grad_ours,) = torch.autograd.grad((ours * weights).sum(), x)
        x_ref = x.detach().requires_grad_()
        (grad_ref,) = torch.autograd.grad((_reference(x_ref, config) * weights).sum(), x_ref)
        assert grad_ours.abs().max() > 0
        torch.testing.assert_close(grad_ours, grad_ref, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize(
    "sigma,circular,root", [("hesamp", True, False), ("hesamp", True, True), ("vlfeat", False, False)]
)
def test_gradcheck_float64(sigma, circular, root):
    # Full Jacobian check on one small patch; fast mode on a batch through the sub-batch path.
    net = SIFTNet(patch_size=12, sigma_type=sigma, circular=circular, rootsift=root)
    x = _random_patches(1, 12, seed=2, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(net, (x,), eps=1e-6, atol=1e-6, rtol=1e-4)
    net = SIFTNet(patch_size=16, sigma_type=sigma, circular=circular, rootsift=root, chunk_size=1)
    x = _random_patches(3, 16, seed=3, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(net, (x,), eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


def test_float64_input_is_computed_in_float64():
    x = _random_patches(4, 32, seed=3, dtype=torch.float64)
    net = SIFTNet(patch_size=32)
    out64 = net(x)
    assert out64.dtype == torch.float64
    torch.testing.assert_close(net(x.float()).double(), out64, rtol=0, atol=1e-5)
    assert net(x[:0]).shape == (0, 128)  # an empty batch through the torch path


def test_half_inputs_and_autocast_are_computed_in_float32(oracle):
    """The bins are differences of pooled ramps: float16/bfloat16 inputs are computed in float32
    (the result cast back), and the matrix products run outside autocast."""
    x = _patches(oracle, 65)[:16]
    net = SIFTNet()
    ref = net(x)
    for dtype in (torch.float16, torch.bfloat16):
        out = net(x.to(dtype))
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), ref, rtol=0, atol=1e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


# ---- the compiled CPU loop (numba) against the reference and the torch path ----------------------


@pytest.mark.parametrize(
    "size,sigma,circular,root", [(65, "hesamp", True, False), (32, "vlfeat", False, True), (16, "hesamp", True, True)]
)
def test_compiled_loop_equals_the_reference_and_the_torch_path(size, sigma, circular, root, monkeypatch):
    config = SIFTConfig(patch_size=size, sigma_type=sigma, circular=circular, rootsift=root)
    x = _random_patches(37, size, seed=7)  # 37: thread shares of unequal length
    real, calls = sift_kernel._compiled(), []
    monkeypatch.setattr(sift_kernel, "_compiled", lambda: lambda *a: calls.append((len(a[0]), a[-1])) or real(*a))
    with torch.inference_mode():
        compiled = SIFTNet(config)(x)
        assert calls == [(37, 2)]  # float32 CPU inference runs the loop, in 2 shares (2 threads)
        monkeypatch.setattr(sift_kernel, "_compiled", lambda: None)  # as without numba: the torch path
        ops = SIFTNet(config)(x)
    reference = _reference(x.double(), config).float()
    torch.testing.assert_close(compiled, reference, rtol=0, atol=2e-6)
    torch.testing.assert_close(compiled, ops, rtol=0, atol=1e-5)  # the ramp differences: RootSIFT's sqrt of ~1e-8


def test_compiled_loop_gives_exact_zeros_for_empty_bins_and_the_same_bits_on_any_threads():
    config = SIFTConfig(patch_size=16, sigma_type="vlfeat", circular=False)
    x = _ramps([0.3, 2.0, -math.pi + 1e-3, math.pi]).float()  # one orientation inside (others at borders)
    with torch.inference_mode():
        ours = SIFTNet(config)(x)
    reference = _reference(x.double(), config)  # upstream-style masks: empty bins exactly 0
    assert (reference == 0).sum() > 300
    assert torch.equal(ours == 0, reference == 0)
    x = _random_patches(70, 65, seed=8)
    threads = torch.get_num_threads()
    try:
        with torch.inference_mode():
            torch.set_num_threads(1)
            one = SIFTNet()(x)
            torch.set_num_threads(2)
            two = SIFTNet()(x)
            assert SIFTNet()(x[:0]).shape == (0, 128) and torch.equal(SIFTNet()(x[:1]), one[:1])
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one, two)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_after_the_loop_ran_uses_the_torch_ops():
    # GNU OpenMP aborts in a forked child once it ran in the parent (numba's OpenMP layer); the child
    # runs torch on one thread, as DataLoader workers do (torch's own OpenMP hangs there otherwise)
    x = _random_patches(40, 65, seed=9)
    with torch.inference_mode():
        parent = SIFTNet()(x)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: describe, report, exit without running pytest's teardown
        try:
            torch.set_num_threads(1)
            with torch.inference_mode():
                child = SIFTNet()(x)
            os.write(write, b"%d %.3g" % (not sift_kernel.available(), (child - parent).abs().max()))
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    fallback, difference = os.read(read, 64).split()
    assert status == 0 and fallback == b"1" and float(difference) < 1e-5


def test_the_feature_key_covers_the_compiled_loop():
    sources = [p.name for p in class_sources(type(desc_bench.descriptor("sift-torch-vlfeat")))]
    assert "sift_kernel.py" in sources and "sift_torch.py" in sources
    assert desc_bench.descriptor("sift-torch-mp").backend_versions()[0].startswith("numba ")


# ---- batching, properties, registry --------------------------------------------------------


def test_batching_invariance():
    x = _random_patches(40, 65, seed=4)
    net = SIFTNet()
    whole = net(x)
    single = torch.cat([net(x[i : i + 1]) for i in range(len(x))])
    chunked = SIFTNet(chunk_size=7)(x)
    torch.testing.assert_close(single, whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)


def test_adapter_streams_in_chunks(monkeypatch):
    desc = desc_bench.descriptor("sift-torch-vlfeat")
    x = _random_patches(50, 65, seed=5)
    whole = desc.compute_patches(x)
    seen = []
    describe = desc.describe_patches
    monkeypatch.setattr(desc, "batch_size", 16)
    monkeypatch.setattr(desc, "describe_patches", lambda prepared: seen.append(len(prepared)) or describe(prepared))
    streamed = desc.compute_patches(x)
    assert seen == [16, 16, 16, 2]
    torch.testing.assert_close(streamed, whole, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", list(MODES))
def test_descriptor_properties(name):
    x = _random_patches(20, 65, seed=6)
    plain = desc_bench.descriptor(name).compute_patches(x)
    root = desc_bench.descriptor(name, rootsift=True).compute_patches(x)
    for out in (plain, root):
        assert out.shape == (20, 128) and (out >= 0).all()
        torch.testing.assert_close(out.norm(dim=1), torch.ones(20), rtol=0, atol=1e-5)
    # RootSIFT: the square of each entry is the L1-normalised SIFT descriptor.
    torch.testing.assert_close(root**2, plain / plain.sum(dim=1, keepdim=True), rtol=0, atol=1e-6)


def test_constant_patch_is_finite():
    desc = desc_bench.descriptor("sift-torch-mp")
    out = desc.compute_patches(torch.full((2, 1, 65, 65), 100.0))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.norm(dim=1), torch.ones(2), rtol=0, atol=1e-5)


def test_registered_with_options():
    rows = {row.name: row for row in desc_bench.descriptors()}
    for name in MODES:
        assert rows[name].available and rows[name].dim == 128 and rows[name].kind == "patch"
    desc = desc_bench.descriptor("sift-torch-mp:patch_size=32:rootsift=true")
    assert desc.options.patch_size == 32 and desc.options.rootsift is True
    assert desc.describe() == "sift-torch-mp:patch_size=32:rootsift=True"
    assert desc.net.config.sigma_type is SigmaType.HESAMP and desc.net.config.circular
    vl = desc_bench.descriptor("sift-torch-vlfeat")
    assert vl.net.config.sigma_type is SigmaType.VLFEAT and not vl.net.config.circular
    assert vl.input.patch_size == 65


def test_bad_options_and_inputs():
    with pytest.raises(UnknownNameError, match="patch_size"):
        desc_bench.descriptor("sift-torch-mp", patchsize=32)
    with pytest.raises(InputError, match="patch_size"):
        desc_bench.descriptor("sift-torch-mp:patch_size=big")
    with pytest.raises(InputError, match="patch_size"):
        desc_bench.descriptor("sift-torch-mp", patch_size=4)
    with pytest.raises(InputError, match="cells per side"):
        SIFTConfig(patch_size=14)
    with pytest.raises(InputError, match=r"\(B, 1, 65, 65\)"):
        SIFTNet()(torch.zeros(2, 1, 32, 32))
    with pytest.raises(InputError, match="even"):
        SIFTConfig(num_ang_bins=7)


def test_window_and_pooling_geometry():
    assert pooling_geometry(65, 4) == (26, 16, 6)
    assert pooling_geometry(32, 4) == (12, 8, 3)
    mp = weighting_window(65, "hesamp", circular=True)
    vl = weighting_window(65, "vlfeat", circular=False)
    assert mp[0, 0] == 0 and mp[32, 0] > 0 and vl[0, 0] > 0  # the circular mask
    torch.testing.assert_close(mp, mp.t())
    torch.testing.assert_close(vl, vl.flip(0))
    tent = tent_pooling_matrix(65, 4)
    # Cell r peaks at pixels 16 r + 6 and 16 r + 7 (kernel offsets 12 and 13, padding 6).
    assert tent.shape == (4, 65) and tent[1, 22] == tent[1, 23] == tent.max()
    # Every pixel row is covered by one or two cells.
    assert ((tent > 0).sum(dim=0) >= 1).all() and ((tent > 0).sum(dim=0) <= 2).all()


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", list(MODES))
def test_cuda_equals_cpu(oracle, name):
    x = _patches(oracle, 65)
    cpu = desc_bench.descriptor(name, rootsift=True).compute_patches(x)
    gpu = desc_bench.descriptor(name, device="cuda", rootsift=True).compute_patches(x)
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-5)
    net = SIFTNet().cuda()
    xg = x[:4].cuda().requires_grad_()
    net(xg).sum().backward()
    assert xg.grad is not None and torch.isfinite(xg.grad).all()


@pytest.mark.parametrize("name", list(MODES))
def test_backward_works_after_compute_patches(name):
    """compute_patches (no_grad, not inference_mode) must not leave inference tensors in the net's
    cached constants: differentiating through the net afterwards works, also after a call made under
    inference_mode (as `desc-bench time` does)."""
    desc = desc_bench.descriptor(name)
    desc.compute_patches(torch.rand(2, 1, 65, 65) * 255)
    x = (torch.rand(2, 1, 65, 65) * 255).requires_grad_()
    desc.net(x).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    fresh = desc_bench.descriptor(name)
    with torch.inference_mode():
        fresh.net(torch.rand(2, 1, 65, 65) * 255)
    y = (torch.rand(2, 1, 65, 65) * 255).requires_grad_()
    fresh.net(y).sum().backward()
    assert y.grad is not None
