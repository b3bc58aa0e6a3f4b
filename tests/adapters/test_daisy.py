"""daisy-torch against scikit-image (oracle and live; in the module and through the public methods
compute_dense_map and compute_patches), daisy-opencv against its oracle; shapes, batching, the
patch and keypoint paths of the contract, FP16, CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import desc_bench
from desc_bench.adapters.daisy import (
    Daisy,
    DaisyOpenCV,
    DaisyTorch,
    gaussian_taps,
    layout,
    symmetric_pad_last,
)
from desc_bench.adapters.prepare import image_tensor, normalise
from desc_bench.errors import InputError

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
ORACLE = "oracles/daisy-gpu/oracle_daisy_sintel_crop.npz"
NOTEBOOK = dict(step=2, radius=5, rings=3, histograms=4, orientations=8, normalization="daisy")


@pytest.fixture(scope="module")
def oracle(shared):
    return np.load(shared / ORACLE)


def as_input(gray: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(gray).float()[None, None] / 255.0


def smooth_gray(seed: int, height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = torch.from_numpy(rng.integers(0, 256, (1, 1, height, width)).astype(np.float32))
    return torch.nn.functional.avg_pool2d(noise, 3, 1, 1)[0, 0].round().numpy().astype(np.uint8)


@pytest.mark.parametrize("variant, params", [("default", {}), ("notebook", NOTEBOOK)])
def test_matches_skimage_oracle(oracle, variant, params):
    out = Daisy(**params)(as_input(oracle["crop_frame1_gray_uint8"]))[0].numpy()
    expected = oracle[f"skimage_{variant}"]
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=0, atol=4e-3)  # the bound
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5)  # what we actually reach
    # the upstream GPU port is further off (its channel-index and int-sigma bugs)
    assert np.abs(oracle[f"daisygpu_{variant}"] - expected).max() > 1e-2


def spec(params: dict) -> str:
    return ":".join(["daisy-torch"] + [f"{key}={value}" for key, value in params.items()])


@pytest.mark.parametrize("variant, params", [("default", {}), ("notebook", NOTEBOOK)])
def test_public_dense_map_equals_skimage_oracle(oracle, variant, params):
    """uint8 image -> preparation (x / 255, as the oracle's img / 255.0) -> hook, gray or RGB."""
    gray = oracle["crop_frame1_gray_uint8"]
    expected = oracle[f"skimage_{variant}"]
    desc = desc_bench.descriptor(spec(params))
    radius, step = params.get("radius", 15), params.get("step", 4)
    for image in (gray, np.repeat(gray[:, :, None], 3, axis=2)):
        dense = desc.compute_dense_map(image)
        assert (dense.stride, dense.offset) == (step, radius)  # cell (i, j) at pixel radius + step * (j, i)
        np.testing.assert_allclose(dense.values.numpy(), expected, rtol=0, atol=1e-5)


def test_public_patches_equal_skimage_oracle(oracle):
    """compute_patches describes a patch at pixel (P-1)//2. Where the descriptor's support (ring radius
    plus 4 sigma) stays inside the patch and the image, it equals the oracle's map there: 65 px
    patches with the notebook parameters (support 15 px), 96 px columns of the full crop height with
    the defaults (support 45 px; the rows are the image's own, so its borders are the oracle's)."""
    gray = oracle["crop_frame1_gray_uint8"]
    corners = [(1, 1), (31, 63), (15, 21), (29, 3)]  # odd: centre + 27 falls on the step-2 grid
    patches = np.stack([gray[r : r + 65, c : c + 65] for r, c in corners])[:, None].astype(np.float32)
    expected = np.stack([oracle["skimage_notebook"][:, (r + 27) // 2, (c + 27) // 2] for r, c in corners])
    out = desc_bench.descriptor(spec(NOTEBOOK)).compute_patches(patches)
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-5)
    columns = [0, 8, 20, 32]  # 96x96 patches: centre (47, k + 47) = map cell (8, (k + 32) / 4)
    patches = np.stack([gray[:, k : k + 96] for k in columns])[:, None].astype(np.float32)
    expected = np.stack([oracle["skimage_default"][:, 8, (k + 32) // 4] for k in columns])
    out = desc_bench.descriptor("daisy-torch").compute_patches(patches)
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "params",
    [
        dict(step=1, radius=6, rings=2, histograms=6, orientations=4, normalization="l2"),
        dict(step=3, radius=7, rings=1, histograms=5, orientations=6, normalization="off"),
        dict(step=5, radius=9, rings=4, histograms=3, orientations=8, normalization="daisy"),
    ],
)
def test_matches_live_skimage(params):
    from skimage.feature import daisy

    gray = smooth_gray(1, 37, 45)
    expected = daisy(gray, **params).transpose(2, 0, 1)
    out = Daisy(**params)(as_input(gray))[0].numpy()
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-6)


def test_gaussian_taps_and_symmetric_padding_follow_scipy():
    from scipy.ndimage import gaussian_filter1d

    signal = np.random.default_rng(2).random(9)
    for sigma in (0.7, 2.5, 3.3):
        taps = gaussian_taps(sigma)
        assert len(taps) == 2 * int(4 * sigma + 0.5) + 1 and abs(taps.sum() - 1) < 1e-12
        pad = len(taps) // 2
        padded = symmetric_pad_last(torch.from_numpy(signal)[None], pad)[0].numpy()
        np.testing.assert_allclose(padded, np.pad(signal, pad, mode="symmetric"))
        mine = np.correlate(padded, taps, mode="valid")
        np.testing.assert_allclose(mine, gaussian_filter1d(signal, sigma, mode="reflect"), atol=1e-12)
    padded = symmetric_pad_last(torch.arange(3.0)[None], 1, extra=2)[0]
    assert padded.tolist() == [0, 0, 1, 2, 2, 0, 0]


def test_layout_and_shapes():
    lay = layout(radius=15, rings=3, histograms=8, orientations=8, step=4)
    assert lay.dim == 200 and lay.sigmas == (2.5, 2.5, 5.0, 7.5)
    assert lay.offsets[:3] == ((1, 0, 5), (1, 4, 4), (1, 5, 0))
    out = Daisy()(torch.rand(2, 1, 40, 50))
    assert out.shape == (2, 200, 3, 5)  # ceil(10 / 4), ceil(20 / 4)
    assert torch.allclose(out.sum(dim=1), torch.ones(2, 3, 5))  # l1
    with pytest.raises(InputError, match="too small"):
        Daisy()(torch.rand(1, 1, 30, 50))
    with pytest.raises(InputError, match="normalization"):
        Daisy(normalization="l3")
    with pytest.raises(InputError, match="gray"):
        Daisy()(torch.rand(1, 3, 40, 40))


def test_batching_is_per_image():
    a, b = as_input(smooth_gray(3, 40, 44)), as_input(smooth_gray(4, 40, 44))
    daisy = Daisy(step=2)
    both = daisy(torch.cat([a, b]))
    torch.testing.assert_close(both, torch.cat([daisy(a), daisy(b)]), rtol=0, atol=1e-7)


def test_descriptor_options_and_geometry():
    desc = desc_bench.descriptor("daisy-torch:step=2:radius=10:rings=2:histograms=6:normalization=l2")
    assert isinstance(desc, DaisyTorch)
    assert desc.dim == (2 * 6 + 1) * 8 and desc.dense_stride == 2.0 and desc.dense_offset == 10.0
    gray = smooth_gray(5, 60, 70)
    maps = desc.dense_map(normalise(image_tensor(gray, desc.input), desc.input))
    cells = [(0, 0), (4, 7), (19, 24)]
    xy = np.array([[10 + 2 * j, 10 + 2 * i] for i, j in cells], dtype=float)
    out = desc.compute_dense(gray, xy)
    assert out.shape == (3, desc.dim)
    for k, (i, j) in enumerate(cells):
        torch.testing.assert_close(out[k], maps[0, :, i, j], rtol=0, atol=1e-7)


def test_compute_patches_describes_the_patch_centre():
    from skimage.feature import daisy

    patches = np.stack([smooth_gray(s, 65, 65) for s in (6, 7)])[:, None]
    out = desc_bench.descriptor("daisy-torch:step=1").compute_patches(patches.astype(np.float32))
    assert out.shape == (2, 200)
    for k in range(2):  # centre pixel 32 -> map cell 32 - radius = 17
        expected = daisy(patches[k, 0], step=1)[17, 17]
        np.testing.assert_allclose(out[k].numpy(), expected, rtol=0, atol=1e-6)
    # the patch path computes the centre directly, whatever the dense step
    default = desc_bench.descriptor("daisy-torch").compute_patches(patches.astype(np.float32))
    torch.testing.assert_close(default, out, rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [40, 64, 65])
def test_centre_equals_the_dense_map_at_the_centre_pixel(size):
    images = torch.from_numpy(np.stack([smooth_gray(s, size, size) for s in (3, 4, 5)])[:, None]).float() / 255
    for params in ({}, {"radius": 5, "histograms": 4, "normalization": "daisy"}):
        model = Daisy(step=1, **params)
        centre = (size - 1) // 2 - model.layout.radius
        torch.testing.assert_close(model.centre(images), model(images)[:, :, centre, centre], rtol=0, atol=1e-6)


def test_fp16_runs_and_stays_close():
    images = as_input(smooth_gray(8, 48, 56))
    full = Daisy()(images)
    half = Daisy()(images.half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    assert torch.nn.functional.cosine_similarity(half.float(), full, dim=1).min() > 0.999
    out = desc_bench.descriptor("daisy-torch:fp16=true").compute_patches(torch.rand(2, 1, 40, 40) * 255)
    assert out.shape == (2, 200) and torch.isfinite(out).all()


def test_opencv_matches_its_oracle(oracle):
    gray = oracle["crop_frame1_gray_uint8"]
    xy = oracle["opencv_daisy_default_kps_xy"].astype(np.float64)
    desc = desc_bench.descriptor("daisy-opencv")
    assert isinstance(desc, DaisyOpenCV)
    expected = oracle["opencv_daisy_default_desc"]
    np.testing.assert_allclose(desc.compute_dense(gray, xy).numpy(), expected, rtol=0, atol=1e-6)
    rgb = np.repeat(gray[:, :, None], 3, axis=2)
    np.testing.assert_allclose(desc.compute_dense(rgb, xy).numpy(), expected, rtol=0, atol=1e-6)


def test_opencv_options_and_patches():
    desc = desc_bench.descriptor("daisy-opencv:q_radius=2:q_theta=4:q_hist=4:norm=full")
    assert desc.dim == (2 * 4 + 1) * 4
    patches = np.stack([smooth_gray(s, 65, 65) for s in (9, 10, 11)])[:, None].astype(np.float32)
    out = desc.compute_patches(patches)
    assert out.shape == (3, 36)
    torch.testing.assert_close(out.norm(dim=1), torch.ones(3), rtol=0, atol=1e-4)  # 'full' = L2
    assert desc.compute_dense(smooth_gray(12, 50, 50), np.zeros((0, 2))).shape == (0, 36)
    with pytest.raises(InputError, match="norm"):
        desc_bench.descriptor("daisy-opencv:norm=l7")


@requires_cuda
def test_cuda_matches_cpu():
    images = as_input(smooth_gray(13, 64, 80))
    cpu = Daisy()(images)
    gpu = Daisy()(images.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-6)
    desc = desc_bench.descriptor("daisy-torch", device="cuda")
    out = desc.compute_patches(torch.rand(4, 1, 65, 65) * 255)
    assert out.device.type == "cuda" and out.shape == (4, 200)


@pytest.mark.parametrize("normalization", ["l1", "l2", "daisy"])
def test_fp16_flat_patches_are_finite(normalization):
    """A flat patch has all-zero histograms; in float16 ``+ 1e-10`` underflows, so normalisation runs
    in float32 and is cast back."""
    flat = torch.full((1, 1, 40, 40), 0.5)
    half = Daisy(normalization=normalization)(flat.half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    torch.testing.assert_close(half.float(), Daisy(normalization=normalization)(flat), rtol=1e-3, atol=1e-4)
    out = desc_bench.descriptor(f"daisy-torch:fp16=true:normalization={normalization}").compute_patches(
        torch.full((2, 1, 65, 65), 100.0)
    )
    assert torch.isfinite(out).all()


def test_timing_with_fp16():
    """daisy-torch declares supports_fp16 and computes in float16 under float16 autocast."""
    from desc_bench.bench import timing

    desc = desc_bench.descriptor("daisy-torch")
    assert desc.supports_fp16
    with torch.autocast("cpu", dtype=torch.float16):
        assert desc.dense_map(torch.rand(1, 1, 40, 48)).dtype == torch.float16
    assert desc.dense_map(torch.rand(1, 1, 40, 48)).dtype == torch.float32
    for row in (
        timing.time_patches(desc, batch_size=2, patch_size=40, repeats=1, warmup=0, fp16=True),
        timing.time_images(desc, batch_size=1, image_size="48x40", repeats=1, warmup=0, fp16=True),
    ):
        assert row.error is None and row.median_ms > 0 and row.fp16


def test_opencv_keypoints_outside_the_image():
    """Keypoints outside the image (OpenCV raises cv2.error on them) are described in a reflection-padded
    image; keypoints inside are described in place (as upstream: the oracle holds) whatever the others."""
    gray = smooth_gray(14, 60, 80)
    desc = desc_bench.descriptor("daisy-opencv")
    inside = np.array([[40.0, 30.0], [0.0, 0.0], [79.0, 59.0]])
    outside = np.array([[-0.5, 30.0], [80.0, 30.0], [40.0, -3.0], [-40.0, 100.0]])
    alone = desc.compute_dense(gray, inside)
    both = desc.compute_dense(gray, np.vstack([inside, outside]))
    assert both.shape == (7, 200) and torch.isfinite(both).all()
    torch.testing.assert_close(both[:3], alone, rtol=0, atol=0)
    # an outside keypoint's descriptor does not depend on the other outside keypoints (the pad size)
    torch.testing.assert_close(desc.compute_dense(gray, outside[:1]), both[3:4], rtol=0, atol=0)
    # what they get: the descriptor at the same point of the image extended by reflection
    extended = np.pad(gray, 100, mode="reflect")  # numpy's "reflect" is OpenCV's BORDER_REFLECT_101
    torch.testing.assert_close(desc.compute_dense(extended, outside + 100), both[3:], rtol=0, atol=1e-6)
