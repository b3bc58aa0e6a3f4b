"""prepare.py: image validation in compute_dense, empty inputs, patch extraction around frames, no
inference tensors leaking out of the fixed public methods, scaling as upstream codes scale, and
compute_dense_map over every registered descriptor."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import desc_bench
from desc_bench.adapters import prepare
from desc_bench.adapters.base import DenseMap, Descriptor, Distance, Frames, InputSpec, Kind
from desc_bench.adapters.registry import registered
from desc_bench.errors import DescriptorOutputError, InputError
from desc_bench.imaging import MAGNIFICATION

# one descriptor per compute_dense path: keypoints, dense map, patches around frames
PATHS = ("sift-opencv", "daisy-torch", "sift-torch-mp")
DENSE = sorted(name for name, cls in registered().items() if Kind.DENSE in cls.kind())
NOT_DENSE = sorted(name for name, cls in registered().items() if Kind.DENSE not in cls.kind())


def build(name: str) -> Descriptor:
    cls = registered()[name]
    if cls.availability() is None:
        return cls()
    if cls.weights:
        return cls(weights="random")  # the contract, not accuracy
    pytest.skip(cls.availability())


def smooth_image(height: int = 64, width: int = 80, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = torch.from_numpy(rng.integers(0, 256, (1, 1, height, width)).astype(np.float32))
    return torch.nn.functional.avg_pool2d(noise, 5, 1, 2)[0, 0].round().numpy().astype(np.uint8)


@pytest.mark.parametrize("name", PATHS)
def test_compute_dense_validates_the_image_on_every_path(name):
    desc = desc_bench.descriptor(name)
    assert {"sift-opencv": "keypoints", "daisy-torch": "dense-sampled", "sift-torch-mp": "patches-around-frames"}[
        name
    ] == prepare.dense_mode(desc)
    image = smooth_image()
    xy = np.array([[40.0, 32.0], [30.0, 30.0]])
    bad = {
        "float64": image.astype(np.float64),
        "RGBA": np.repeat(image[:, :, None], 4, axis=2),
        "4-d": image[None, :, :, None],
        "empty": np.zeros((0, 80), np.uint8),
    }
    for label, value in bad.items():  # noqa: B007
        with pytest.raises(InputError):
            desc.compute_dense(value, xy)
    with pytest.raises(InputError, match="uint8"):
        desc.compute_dense(image.astype(np.float32), xy)
    expected = desc.compute_dense(image, xy)
    torch.testing.assert_close(desc.compute_dense(image[:, :, None], xy), expected)  # (H, W, 1) is squeezed


@pytest.mark.parametrize("name", sorted(registered()))
def test_no_keypoints_give_an_empty_result(name):
    cls = registered()[name]
    if cls.availability() is not None and not cls.weights:
        pytest.skip(cls.availability())
    desc = cls(weights="random") if cls.weights else cls()
    out = desc.compute_dense(np.full((5, 5), 7, np.uint8), np.zeros((0, 2)))
    assert out.shape == (0, desc.dim)
    assert out.dtype == (torch.uint8 if desc.distance is Distance.HAMMING else torch.float32)


def test_extract_patches_geometry_and_chunks(monkeypatch):
    """A frame of size s spans MAGNIFICATION * s pixels; rotated frames rotate the patch; results do
    not depend on the chunking."""
    image = np.tile(np.arange(200, dtype=np.uint8), (150, 1))  # value = x
    size = 65 / MAGNIFICATION  # a patch spanning 65 px: one pixel per sample
    frames = Frames(np.array([[100.0, 75.0], [60.0, 50.0]]), scale=np.full(2, size), angle=np.array([0.0, 90.0]))
    patches = prepare.extract_patches(image, frames)
    assert patches.shape == (2, 1, 65, 65) and patches.dtype == torch.float32
    steps = (np.arange(65) - 32) * 65 / 65  # offsets of the samples from the centre, in pixels
    np.testing.assert_allclose(patches[0, 0, 10].numpy(), 100 + steps, atol=1e-3)
    np.testing.assert_allclose(patches[1, 0, :, 10].numpy(), 60 - steps, atol=1e-3)  # rotated: x runs down
    rng = np.random.default_rng(3)
    many = Frames(rng.uniform(0, 200, (40, 2)), scale=rng.uniform(2, 20, 40), angle=rng.uniform(0, 360, 40))
    whole = prepare.extract_patches(image, many)
    monkeypatch.setattr(prepare, "EXTRACT_CHUNK", 7)
    torch.testing.assert_close(prepare.extract_patches(image, many), whole, rtol=0, atol=0)


def test_extract_patches_builds_the_grid_per_chunk(monkeypatch):
    """The sampling grid is built per chunk in float32, never as one (N, 65, 65) grid for every
    keypoint (+1.8 GB in float64 for 8000 keypoints): each grid handed to grid_sample owns its memory."""
    grids = []
    original = torch.nn.functional.grid_sample

    def spy(tensor, grid, *args, **kwargs):
        grids.append((grid.dtype, grid.shape[0], grid.untyped_storage().nbytes()))
        return original(tensor, grid, *args, **kwargs)

    monkeypatch.setattr(prepare.F, "grid_sample", spy)
    monkeypatch.setattr(prepare, "EXTRACT_CHUNK", 100)
    image = smooth_image(200, 200)
    frames = Frames(np.random.default_rng(4).uniform(0, 200, (250, 2)), scale=np.full(250, 10.0))
    assert prepare.extract_patches(image, frames).shape == (250, 1, 65, 65)
    assert [g[1] for g in grids] == [100, 100, 50]
    for dtype, count, nbytes in grids:
        assert dtype == torch.float32 and nbytes == count * 65 * 65 * 2 * 4


def test_compute_patches_makes_no_inference_tensors():
    """compute_patches runs under no_grad: what descriptors cache there stays usable with autograd."""
    desc = desc_bench.descriptor("sift-torch-mp")
    out = desc.compute_patches(torch.rand(2, 1, 65, 65) * 255)
    assert not out.is_inference() and not out.requires_grad
    dense = desc_bench.descriptor("daisy-torch").compute_dense(smooth_image(), np.array([[40.0, 30.0]]))
    assert not dense.is_inference()


@pytest.mark.parametrize("name", ["sift-opencv", "beblid-opencv"])
def test_uint8_patches_reach_opencv_as_they_are(name, monkeypatch):
    """InputSpec.uint8: uint8 input is handed over without a float copy; float input (values off the
    integers included) is rounded as before, so every form of the same patches gives the same output."""
    desc = desc_bench.descriptor(name)
    assert desc.input.uint8
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (6, 1, 65, 65)).astype(np.uint8)
    seen = []
    hook = type(desc).describe_patches
    monkeypatch.setattr(type(desc), "describe_patches", lambda self, p: seen.append(p.dtype) or hook(self, p))
    ref = desc.compute_patches(patches)
    off = torch.from_numpy(patches).float() + torch.from_numpy(rng.uniform(-0.4, 0.4, patches.shape)).float()
    for same in (patches[:, 0], torch.from_numpy(patches).float(), off):
        assert torch.equal(desc.compute_patches(same), ref)
    assert seen == [torch.uint8, torch.uint8, torch.float32, torch.float32]


@pytest.mark.parametrize("spec", [dict(channels=3), dict(patch_size=32), dict(value_range=1.0)])
def test_uint8_input_needs_the_identity_preparation(spec):
    with pytest.raises(ValueError, match="uint8"):
        InputSpec(uint8=True, **spec)


def test_scaling_divides_as_upstream_codes_do():
    """0..255 -> 0..1 is x / 255 bit for bit (x * (1/255) differs in 126 of the 256 values, and a one
    ulp difference flips SIFT Flow's channel ties)."""
    values = torch.arange(256.0).view(1, 1, 16, 16)
    out = prepare.normalise(values, InputSpec(value_range=1.0))
    assert torch.equal(out, values / 255.0)
    assert not torch.equal(values * (1.0 / 255.0), values / 255.0)
    assert torch.equal(prepare.normalise(values, InputSpec()), values)  # 0..255 declared: unchanged


def test_dense_map_grid():
    values = torch.arange(2 * 3 * 4.0).view(2, 3, 4)
    grid = DenseMap(values, stride=4.0, offset=1.5)
    assert grid.shape == (3, 4)
    xy = grid.xy()
    assert xy.shape == (3, 4, 2) and xy.dtype == np.float64
    assert xy[0, 0].tolist() == [1.5, 1.5] and xy[2, 3].tolist() == [13.5, 9.5] and xy[1, 0].tolist() == [1.5, 5.5]
    # row by row, the order of values.reshape(dim, -1).T
    assert values.reshape(2, -1).T[5].tolist() == values[:, 1, 1].tolist() and xy.reshape(-1, 2)[5].tolist() == [
        5.5,
        5.5,
    ]
    with pytest.raises(InputError, match="dim, H', W'"):
        DenseMap(values[0], 1.0, 0.0)
    with pytest.raises(InputError, match="stride"):
        DenseMap(values, 0.0, 0.0)


@pytest.mark.parametrize("name", DENSE)
def test_compute_dense_map_is_a_fresh_map_on_its_grid(name):
    desc = build(name)
    image = np.repeat(smooth_image(72, 88, seed=5)[:, :, None], 3, axis=2)
    image[:, :, 0] = smooth_image(72, 88, seed=6)  # a colour image
    first = desc.compute_dense_map(image)
    assert isinstance(first, DenseMap) and first.values.dtype == torch.float32
    assert first.values.shape[0] == desc.dim and first.values.device == desc.device
    assert (first.stride, first.offset) == (desc.dense_stride, desc.dense_offset)
    kept = first.values.clone()
    second = desc.compute_dense_map(smooth_image(72, 88, seed=7))  # gray, same size: a reused buffer is refilled
    assert torch.equal(first.values, kept) and not torch.equal(second.values, kept)
    assert second.values.untyped_storage().data_ptr() != first.values.untyped_storage().data_ptr()
    # each cell is what compute_dense gives at its pixel
    xy = first.xy().reshape(-1, 2)
    pick = np.linspace(0, len(xy) - 1, 7).round().astype(int)
    sampled = desc.compute_dense(image, xy[pick])
    cells = first.values.reshape(desc.dim, -1).T[pick]
    torch.testing.assert_close(sampled, cells, rtol=0, atol=1e-5)
    assert not first.values.is_inference() and not first.values.requires_grad
    with pytest.raises(InputError, match="uint8"):
        desc.compute_dense_map(image.astype(np.float32))


@pytest.mark.parametrize("name", NOT_DENSE)
def test_compute_dense_map_needs_a_dense_hook(name):
    cls = registered()[name]
    desc = build(name)
    hooks = [
        hook
        for hook in ("describe_patches", "describe_keypoints")
        if getattr(cls, hook) is not getattr(Descriptor, hook)
    ]
    with pytest.raises(
        InputError, match=re.escape(f"{name} has no dense map: it implements {' and '.join(hooks)}, not dense_map")
    ):
        desc.compute_dense_map(smooth_image())


class _BadMap(Descriptor):  # no name: not registered
    dim = 4

    def dense_map(self, images):
        return self.out


def test_compute_dense_map_checks_the_hook_output():
    desc = _BadMap()
    desc.out = torch.zeros(1, 3, 5, 5)
    with pytest.raises(DescriptorOutputError, match=r"shape \(1, 3, 5, 5\).*expected \(1, 4, H', W'\)"):
        desc.compute_dense_map(smooth_image())
    desc.out = torch.zeros(1, 4, 5, 5)
    desc.out[0, :, 2, 3] = float("nan")
    with pytest.raises(DescriptorOutputError, match="NaN or infinite values in 1 map cells"):
        desc.compute_dense_map(smooth_image())
    desc.out = torch.ones(1, 4, 5, 5, dtype=torch.float16)
    out = desc.compute_dense_map(smooth_image())
    assert out.values.dtype == torch.float32 and out.values.shape == (4, 5, 5)
