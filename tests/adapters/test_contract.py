"""The descriptor contract, checked over every registered descriptor.

Learned descriptors whose weights are not available here run with random weights
(``weights="random"``): the contract is about shapes and behaviour, not accuracy.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import desc_bench
from desc_bench.adapters.base import Descriptor, Distance, Frames, Kind
from desc_bench.adapters.registry import registered
from desc_bench.errors import DescriptorOutputError, InputError, UnknownNameError

NAMES = sorted(registered())


def build(name: str) -> Descriptor:
    cls = registered()[name]
    problem = cls.availability()
    if problem is None:
        return desc_bench.descriptor(name)
    if cls.weights:
        return cls(weights="random")
    pytest.skip(f"{name} cannot run here: {problem}")


@pytest.fixture(scope="module")
def patches() -> torch.Tensor:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, size=(6, 1, 65, 65)).astype(np.float32)
    # smooth them a little so gradients are meaningful, keep 0..255
    smooth = torch.nn.functional.avg_pool2d(torch.from_numpy(base), 3, 1, 1)
    return smooth.round()


def test_registry_has_the_stable_names():
    for name in ("sift-opencv", "rootsift-opencv"):
        assert name in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_declarations(name):
    cls = registered()[name]
    assert cls.dim > 0
    assert isinstance(cls.distance, Distance)
    assert cls.kind() != Kind.NONE
    assert cls.input.channels in (1, 3)
    info = {d.name: d for d in desc_bench.descriptors()}[name]
    assert info.available == (cls.availability() is None)


@pytest.mark.parametrize("name", NAMES)
def test_compute_patches(name, patches):
    desc = build(name)
    out = desc.compute_patches(patches)
    assert out.shape == (len(patches), desc.dim)
    assert out.dtype == (torch.uint8 if desc.distance is Distance.HAMMING else torch.float32)
    if out.dtype == torch.float32:
        assert torch.isfinite(out).all()
    # deterministic
    again = desc.compute_patches(patches)
    assert torch.equal(out, again) or torch.allclose(out.float(), again.float(), atol=1e-5)
    # batching invariance: one by one equals all at once
    single = torch.cat([desc.compute_patches(patches[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(single.float(), out[:3].float(), atol=1e-4, rtol=1e-4)
    # numpy input and (B, P, P) input are accepted
    np_out = desc.compute_patches(patches[:2, 0].numpy())
    torch.testing.assert_close(np_out.float(), out[:2].float(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_bad_input(name):
    desc = build(name)
    with pytest.raises(InputError):
        desc.compute_patches(torch.zeros(2, 3, 65, 65))
    with pytest.raises(InputError):
        desc.compute_patches(torch.zeros(2, 1, 65, 40))
    assert desc.compute_patches(torch.zeros(0, 1, 65, 65)).shape == (0, desc.dim)


@pytest.mark.parametrize("name", NAMES)
def test_compute_dense(name):
    desc = build(name)
    rng = np.random.default_rng(1)
    image = (rng.random((96, 128)) * 255).astype(np.uint8)
    image = np.asarray(torch.nn.functional.avg_pool2d(torch.from_numpy(image).float()[None], 5, 1, 2)[0]).astype(
        np.uint8
    )
    keypoints = np.array([[64.0, 48.0], [40.0, 40.0], [90.0, 60.0]])
    out = desc.compute_dense(image, keypoints, scale=np.full(3, 8.0), angle=np.zeros(3))
    assert out.shape == (3, desc.dim)
    rgb = np.repeat(image[:, :, None], 3, axis=2)
    assert desc.compute_dense(rgb, keypoints, scale=np.full(3, 8.0)).shape == (3, desc.dim)


def test_unknown_names_list_valid_ones():
    with pytest.raises(UnknownNameError) as err:
        desc_bench.descriptor("no-such-descriptor")
    assert "sift-opencv" in str(err.value)
    with pytest.raises(UnknownNameError) as err:
        desc_bench.descriptor("sift-opencv:bogus=1")
    assert "bogus" in str(err.value)


def test_nan_output_names_the_descriptor():
    class Broken(Descriptor):
        dim = 4

        def describe_patches(self, prepared):
            return torch.full((prepared.shape[0], 4), float("nan"))

    with pytest.raises(DescriptorOutputError, match="broken-test"):
        Broken.name = "broken-test"  # set after class creation: not registered
        Broken().compute_patches(torch.zeros(2, 1, 65, 65))


def test_wrong_shape_output_names_the_descriptor():
    class Short(Descriptor):
        dim = 8

        def describe_patches(self, prepared):
            return torch.zeros(prepared.shape[0], 7)

    Short.name = "short-test"
    with pytest.raises(DescriptorOutputError, match="short-test.*expected"):
        Short().compute_patches(torch.zeros(2, 1, 65, 65))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error given when no GPU is present")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(InputError, match="no CUDA GPU"):
        desc_bench.descriptor("sift-opencv", device="cuda")
    with pytest.raises(InputError, match="not a torch device"):
        desc_bench.descriptor("sift-opencv", device="gpu0")


def test_output_is_on_the_descriptors_device():
    """check_output moves what a CPU-only hook returns to the descriptor's device ("meta" stands in
    for a GPU here; the CUDA test below checks a real one)."""

    class CpuOnly(Descriptor):
        dim = 4

        def describe_patches(self, prepared):
            return torch.zeros(prepared.shape[0], 4)

    desc = CpuOnly(device="meta")
    assert desc.check_output(torch.ones(3, 4), 3).device.type == "meta"
    assert CpuOnly().check_output(torch.ones(3, 4), 3).device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_only_descriptors_return_cuda_tensors_on_cuda(patches):
    desc = desc_bench.descriptor("sift-opencv", device="cuda")
    assert desc.compute_patches(patches).device.type == "cuda"
    image = np.zeros((64, 64), np.uint8)
    assert desc.compute_dense(image, np.array([[32.0, 32.0]])).device.type == "cuda"


def test_weights_for_a_descriptor_without_weights_are_refused():
    with pytest.raises(InputError, match="takes no weights"):
        desc_bench.descriptor("sift-opencv", weights="liberty")
    with pytest.raises(InputError, match="takes no weights"):
        registered()["sift-opencv"](weights="/some/file.pth")


def test_availability_is_checked_even_when_weights_are_given(monkeypatch):
    from desc_bench.errors import DescriptorUnavailableError

    cls = registered()["sift-opencv"]
    monkeypatch.setattr(cls, "availability", classmethod(lambda c: "needs something"))
    for weights in (None, "random", "x.pth"):
        with pytest.raises(DescriptorUnavailableError, match="needs something"):
            desc_bench.descriptor("sift-opencv", weights=weights)


@pytest.mark.parametrize("empty", [[], np.zeros(0), np.zeros((0, 2))])
def test_frames_accept_no_keypoints(empty):
    frames = Frames(empty)
    assert frames.xy.shape == (0, 2) and len(frames) == 0
    assert desc_bench.descriptor("sift-opencv").compute_dense(np.zeros((32, 32), np.uint8), empty).shape == (0, 128)
