"""prepare.py: image validation in compute_dense, empty inputs, patch extraction around frames, and
no inference tensors leaking out of the fixed public methods."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import desc_bench
from desc_bench.adapters import prepare
from desc_bench.adapters.base import Distance, Frames
from desc_bench.adapters.registry import registered
from desc_bench.errors import InputError
from desc_bench.imaging import MAGNIFICATION

# one descriptor per compute_dense path: keypoints, dense map, patches around frames
PATHS = ("sift-opencv", "daisy-torch", "sift-torch-mp")


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
