"""sift-flow: oracle equality with the upstream port (align_corners=True), in the module and through
the public methods (compute_dense_map, compute_dense, compute_patches), the port's gradient
arithmetic and channel ties, shapes, batching, buffers, FP16, CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import desc_bench
from desc_bench.adapters.prepare import image_tensor, normalise
from desc_bench.adapters.sift_flow import (
    SiftFlow,
    SiftFlowDescriptor,
    cell_filter_taps,
    sobel_gradients,
    strongest_channel,
)
from desc_bench.errors import InputError, UnknownNameError

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
ORACLE = "oracles/sift-flow-gpu/oracle_sift_flow_sintel_crop.npz"


@pytest.fixture(scope="module")
def oracle(shared):
    return np.load(shared / ORACLE)


def upstream_input(crops: list[np.ndarray]) -> torch.Tensor:
    """What the port does to its list of HxWxC 0..255 images: stack, float32, divide by 255."""
    images = torch.from_numpy(np.stack(crops).transpose(0, 3, 1, 2).copy()).float()
    images /= 255.0
    return images


def smooth_image(seed: int, height: int, width: int, channels: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, channels, height, width, generator=gen)
    return torch.nn.functional.avg_pool2d(noise, 3, 1, 1)


@pytest.mark.parametrize("step, boundary", [(1, 1), (2, 0)])
def test_matches_the_port_with_align_corners_true(oracle, step, boundary):
    images = upstream_input([oracle["crop_frame1_bgr_uint8"], oracle["crop_frame2_bgr_uint8"]])
    out = SiftFlow(cell_size=2, step=step, boundary=bool(boundary))(images).numpy()
    expected = oracle[f"desc_aligncornersTrue_step{step}_boundary{boundary}"]
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


def test_matches_the_gray_oracle(oracle):
    import cv2

    gray = cv2.cvtColor(oracle["crop_frame1_bgr_uint8"], cv2.COLOR_BGR2GRAY)[:, :, None]
    out = SiftFlow(cell_size=2, step=1, boundary=True)(upstream_input([gray])).numpy()
    expected = oracle["desc_gray_aligncornersTrue_step1_boundary1"]
    assert out.shape == expected.shape == (1, 128, 48, 64)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)


def oracle_rgb(oracle, frame: int) -> np.ndarray:
    """The harness's input: the crop as an RGB uint8 image (the oracle was made on cv2.imread BGR)."""
    return np.ascontiguousarray(oracle[f"crop_frame{frame}_bgr_uint8"][:, :, ::-1])


@pytest.mark.parametrize("step, boundary", [(1, 1), (2, 0)])
def test_public_dense_map_of_the_rgb_image_equals_the_port(oracle, step, boundary):
    """uint8 RGB image -> preparation (x / 255, as the port) -> hook, with the port's ties (blue
    first, as on its BGR input): the oracle to 1e-5, on the documented grid; compute_dense at the
    cells gives the same."""
    desc = desc_bench.descriptor(f"sift-flow:step={step}:boundary={'true' if boundary else 'false'}")
    expected = oracle[f"desc_aligncornersTrue_step{step}_boundary{boundary}"]
    for frame in (1, 2):
        image = oracle_rgb(oracle, frame)
        dense = desc.compute_dense_map(image)
        assert dense.values.shape == expected.shape[1:] and dense.values.dtype == torch.float32
        np.testing.assert_allclose(dense.values.numpy(), expected[frame - 1], rtol=0, atol=1e-5)
        shift = 0 if boundary else 4
        assert dense.stride == step and dense.offset == shift + 1  # the centre of the 4x4 cells
        sampled = desc.compute_dense(image, dense.xy().reshape(-1, 2)).numpy()
        flat = expected[frame - 1].reshape(128, -1).T
        np.testing.assert_allclose(sampled, flat, rtol=0, atol=1e-5)


def test_the_ports_input_convention_matters(oracle):
    """Scaling by x * (1/255) instead of the port's x / 255 (one ulp apart for half the values)
    flips channel ties: hundreds of descriptors move by up to 0.08. So the test above can fail."""
    image = torch.from_numpy(oracle_rgb(oracle, 1).transpose(2, 0, 1).copy()).float()[None]
    multiplied = SiftFlow(rgb=True)(image * (1.0 / 255.0))[0].numpy()
    off = np.abs(multiplied - oracle["desc_aligncornersTrue_step1_boundary1"][0]).max(axis=0)
    assert (off > 1e-5).sum() > 300 and off.max() > 0.05
    as_given = SiftFlow()(image / 255.0)[0].numpy()  # RGB with the first-channel rule: not the port's ties
    assert np.abs(as_given - oracle["desc_aligncornersTrue_step1_boundary1"][0]).max() > 0.05


def test_public_gray_paths_equal_the_gray_oracle(oracle):
    """color=false converts RGB to gray as the oracle's BGR2GRAY did; compute_patches describes a
    33 px gray patch at its centre (pixel 16 = map cell 15), gray replicated to RGB or not."""
    import cv2

    expected = oracle["desc_gray_aligncornersTrue_step1_boundary1"][0]
    gray_desc = desc_bench.descriptor("sift-flow:color=false")
    dense = gray_desc.compute_dense_map(oracle_rgb(oracle, 1))
    np.testing.assert_allclose(dense.values.numpy(), expected, rtol=0, atol=1e-5)
    gray = cv2.cvtColor(oracle["crop_frame1_bgr_uint8"], cv2.COLOR_BGR2GRAY)
    corners = [(0, 0), (5, 12), (15, 31), (9, 20)]  # top-left (row, col) of 33x33 patches in the 48x64 crop
    patches = np.stack([gray[r : r + 33, c : c + 33] for r, c in corners])[:, None]
    cells = np.stack([expected[:, r + 15, c + 15] for r, c in corners])
    for desc in (gray_desc, desc_bench.descriptor("sift-flow")):
        out = desc.compute_patches(patches.astype(np.float32))
        np.testing.assert_allclose(out.numpy(), cells, rtol=0, atol=1e-5)


def test_differs_from_the_ports_misaligned_sampling(oracle):
    """The port's default (align_corners=False) reads neighbouring pixels; we do not reproduce that."""
    images = upstream_input([oracle["crop_frame1_bgr_uint8"], oracle["crop_frame2_bgr_uint8"]])
    out = SiftFlow()(images).numpy()
    buggy = oracle["desc_torchdefault_aligncornersFalse_step1_boundary1"]
    wrong = np.abs(out - buggy).max(axis=1) > 1e-3  # per descriptor
    assert 0.05 < wrong.mean() < 0.5


def test_sobel_gradients_sum_the_taps_in_the_ports_order():
    """Bit for bit a float32 sum of the non-zero taps in row-major order, the order of the port's
    conv2d on the oracle's machine (a different order rounds a quarter of the values differently)."""
    padded = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(9))
    dx, dy = sobel_gradients(padded)
    a = padded.numpy()
    for out, kernel in ((dx, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]), (dy, [[-1, -2, -1], [0, 0, 0], [1, 2, 1]])):
        expected = np.zeros((2, 3, 7, 9), np.float32)
        for row in range(3):
            for col in range(3):
                if kernel[row][col]:
                    expected += np.float32(kernel[row][col]) * a[..., row : row + 7, col : col + 9]
        assert np.array_equal(out.numpy(), expected)
    reordered = padded[..., 2:, 2:] - padded[..., 2:, :-2] + 2 * (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2])
    reordered += padded[..., :-2, 2:] - padded[..., :-2, :-2]
    assert not torch.equal(reordered, dx)  # the order matters in float32 (the test can fail)


def test_channel_ties_go_to_the_first_channel_or_with_rgb_to_the_last():
    """Channel 2 is the negative of channel 0 (exactly: dyadic values), so their magnitudes tie at
    every pixel with opposite gradients: the port takes the first channel; with rgb=True (RGB input,
    the port having run on BGR) the last, i.e. blue."""
    values = torch.randint(0, 256, (1, 1, 24, 28), generator=torch.Generator().manual_seed(10)) / 256.0
    image = torch.cat([values, torch.full_like(values, 0.5), 1 - values], dim=1)
    dx, dy = sobel_gradients(torch.nn.functional.pad(image, (1, 1, 1, 1), mode="replicate"))
    mag, gx, gy = strongest_channel(dx, dy)
    assert torch.equal(gx, dx[:, :1]) and torch.equal(gy, dy[:, :1])
    mag_rgb, gx_rgb, _ = strongest_channel(dx, dy, reverse=True)
    assert torch.equal(mag_rgb, mag) and torch.equal(gx_rgb, dx[:, 2:])
    first, last = SiftFlow()(image), SiftFlow(rgb=True)(image)
    torch.testing.assert_close(first, SiftFlow()(image[:, :1]), rtol=0, atol=0)
    torch.testing.assert_close(last, SiftFlow()(image[:, 2:]), rtol=0, atol=0)
    assert (first - last).abs().max() > 0.1


def test_strongest_channel_takes_the_largest_magnitude():
    dx = torch.tensor([[3.0, 0.0], [1.0, 5.0], [0.0, 4.0]]).view(1, 3, 1, 2)
    dy = torch.tensor([[4.0, 1.0], [0.0, 0.0], [2.0, 3.0]]).view(1, 3, 1, 2)
    for reverse in (False, True):
        mag, gx, gy = strongest_channel(dx, dy, reverse=reverse)
        # pixel 0: channel 0 (5 > 2.24 > 1); pixel 1: channels 1 and 2 tie at 5
        assert mag.flatten().tolist() == [5.0, 5.0] and gx.flatten()[0] == 3.0 and gy.flatten()[0] == 4.0
        assert (gx.flatten()[1].item(), gy.flatten()[1].item()) == ((4.0, 3.0) if reverse else (5.0, 0.0))


def test_cell_filter_taps_follow_the_cpp_code():
    assert cell_filter_taps(1) == [0.25, 0.0, 1.0]
    assert cell_filter_taps(2) == [0.25, 0.0, 1.0, 1.0, 0.0]
    assert cell_filter_taps(3) == [0.25, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize(
    "cell, step, boundary, expected",
    [
        (2, 1, True, (40, 52)),
        (2, 2, False, (16, 22)),
        (3, 1, False, (28, 40)),
        (3, 3, True, (13, 17)),
        (1, 4, False, (9, 12)),
    ],
)
def test_output_shapes(cell, step, boundary, expected):
    out = SiftFlow(cell, step, boundary)(smooth_image(0, 40, 52))
    assert out.shape == (1, 128) + expected
    assert torch.isfinite(out).all()
    norms = out.norm(dim=1)
    assert (norms < 1).all() and (norms > 0.5).all()  # divided by (norm + 0.01)


def test_num_bins_sets_the_dimension():
    out = SiftFlow(num_bins=4)(smooth_image(1, 20, 24))
    assert out.shape == (1, 64, 20, 24)


def test_batching_and_buffer_reuse():
    a, b = smooth_image(2, 30, 34, 3), smooth_image(3, 30, 34, 3)
    sift = SiftFlow(cell_size=2, step=2, boundary=False)
    single_a = sift(a)
    single_b = sift(b)  # same shape: buffers reused; a fresh output each time
    assert not torch.equal(single_a, single_b)
    both = sift(torch.cat([a, b]))
    torch.testing.assert_close(both, torch.cat([single_a, single_b]), rtol=0, atol=0)
    torch.testing.assert_close(sift(a), single_a, rtol=0, atol=0)

    reusing = SiftFlow(cell_size=2, step=2, boundary=False, reuse_output=True)
    first = reusing(a)
    torch.testing.assert_close(first, single_a, rtol=0, atol=0)
    second = reusing(b)
    assert second.data_ptr() == first.data_ptr()  # the port's behaviour: overwritten in place
    torch.testing.assert_close(second, single_b, rtol=0, atol=0)


def test_bad_input_raises_clear_errors():
    with pytest.raises(InputError, match="too small"):
        SiftFlow(cell_size=3, boundary=False)(torch.zeros(1, 1, 12, 40))
    with pytest.raises(InputError, match="float"):
        SiftFlow()(torch.zeros(1, 1, 12, 12, dtype=torch.uint8))
    with pytest.raises(InputError, match="cell_size"):
        SiftFlow(cell_size=0)
    with pytest.raises(UnknownNameError, match="cell_size"):
        desc_bench.descriptor("sift-flow:cellsize=3")


def test_cli_options_set_the_geometry():
    desc = desc_bench.descriptor("sift-flow:cell_size=3:step=2:boundary=false:color=false")
    assert isinstance(desc, SiftFlowDescriptor)
    assert (desc.options.cell_size, desc.options.step, desc.options.boundary) == (3, 2, False)
    assert desc.dense_stride == 2.0 and desc.dense_offset == 6 + 1.5
    assert desc.input.channels == 1 and desc.input.value_range == 1.0
    assert desc_bench.descriptor("sift-flow").input.channels == 3


def test_compute_dense_samples_the_map_at_cells():
    rng = np.random.default_rng(4)
    image = np.clip(rng.normal(128, 60, (50, 70, 3)), 0, 255).astype(np.uint8)
    desc = desc_bench.descriptor("sift-flow:step=2:boundary=false")
    maps = desc.dense_map(normalise(image_tensor(image, desc.input), desc.input)).clone()  # a reused buffer
    cells = [(0, 0), (3, 5), (12, 20)]  # (row, col) of map cells
    xy = np.array(
        [[desc.dense_offset + desc.dense_stride * j, desc.dense_offset + desc.dense_stride * i] for i, j in cells]
    )
    out = desc.compute_dense(image, xy)
    assert out.shape == (3, 128)
    for k, (i, j) in enumerate(cells):
        torch.testing.assert_close(out[k], maps[0, :, i, j], rtol=0, atol=1e-6)


def test_compute_patches_describes_the_patch_centre():
    gen = torch.Generator().manual_seed(5)
    patches = torch.nn.functional.avg_pool2d(torch.rand(3, 1, 65, 65, generator=gen) * 255, 3, 1, 1)
    desc = desc_bench.descriptor("sift-flow")
    out = desc.compute_patches(patches)
    assert out.shape == (3, 128) and out.dtype == torch.float32
    # centre 32 px; the descriptor of map cell c sits at c + cell_size/2 = c + 1, so cell 31 exactly
    expected = SiftFlow()(patches / 255.0)[:, :, 31, 31]
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    gray = desc_bench.descriptor("sift-flow:color=false").compute_patches(patches)
    torch.testing.assert_close(gray, out, rtol=0, atol=1e-5)  # gray replicated to 3 channels


def test_fp16_runs_and_stays_close():
    images = smooth_image(6, 32, 40, 3)
    full = SiftFlow()(images)
    half = SiftFlow()(images.half())
    assert half.dtype == torch.float16 and torch.isfinite(half).all()
    cosine = torch.nn.functional.cosine_similarity(half.float(), full, dim=1)
    assert cosine.mean() > 0.99 and cosine.min() > 0.9
    desc = desc_bench.descriptor("sift-flow:fp16=true")
    out = desc.compute_patches(torch.full((2, 1, 20, 20), 100.0) + torch.arange(20.0) * 5)
    assert out.shape == (2, 128) and torch.isfinite(out).all()


@requires_cuda
def test_cuda_matches_cpu():
    images = smooth_image(7, 48, 64, 3)
    cpu = SiftFlow()(images)
    gpu = SiftFlow()(images.cuda())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-5)
    half = SiftFlow()(images.cuda().half())
    assert torch.nn.functional.cosine_similarity(half.float().cpu(), cpu, dim=1).mean() > 0.99
    desc = desc_bench.descriptor("sift-flow", device="cuda")
    out = desc.compute_patches(torch.rand(4, 1, 65, 65) * 255)
    assert out.device.type == "cuda" and out.shape == (4, 128)


def test_timing_with_fp16():
    """sift-flow declares supports_fp16: under float16 autocast (`desc-bench time --fp16`) it computes
    in float16, and the timing functions accept it."""
    from desc_bench.bench import timing

    desc = desc_bench.descriptor("sift-flow")
    assert desc.supports_fp16
    with torch.autocast("cpu", dtype=torch.float16):
        assert desc.dense_map(torch.rand(1, 3, 24, 32)).dtype == torch.float16
    assert desc.dense_map(torch.rand(1, 3, 24, 32)).dtype == torch.float32  # and not without autocast
    for row in (
        timing.time_patches(desc, batch_size=2, patch_size=32, repeats=1, warmup=0, fp16=True),
        timing.time_images(desc, batch_size=1, image_size="32x24", repeats=1, warmup=0, fp16=True),
    ):
        assert row.error is None and row.median_ms > 0 and row.fp16


def test_buffers_made_in_inference_mode_are_reused_outside_it():
    """The reused workspace is made of normal tensors even when the first call ran in inference mode
    (as `desc-bench time` runs dense_map), so later calls outside it can write into it."""
    desc = desc_bench.descriptor("sift-flow")
    images = smooth_image(8, 24, 32, 3)
    with torch.inference_mode():
        first = desc.dense_map(images).clone()
    with torch.no_grad():
        torch.testing.assert_close(desc.dense_map(images), first, rtol=0, atol=0)
    assert not any(buffer.is_inference() for buffer in desc.sift._buffers.values())
