"""Learned descriptors through the contract, each with a checkpoint built by the test in the upstream
format (no real weights exist here), plus OpenCV's built-in learned descriptors for real.

HardNet is checked against kornia's HardNet loaded with the same state dict.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_weights import write_upstream

import desc_bench
from desc_bench.adapters import hardnet as H
from desc_bench.adapters import opencv_learned as CV
from desc_bench.adapters import superpoint as SP
from desc_bench.adapters.base import Distance, Frames
from desc_bench.errors import InputError
from desc_bench.imaging import MAGNIFICATION

NETWORKS = ("hardnet", "hardnet++", "hardnet-ps", "superpoint", "gift", "msnet-v0")
OPENCV = ("vgg-opencv", "boostdesc-opencv", "beblid-opencv", "teblid-opencv")


@pytest.fixture(scope="module")
def patches() -> torch.Tensor:
    rng = np.random.default_rng(1)
    base = torch.from_numpy(rng.integers(0, 256, size=(6, 1, 65, 65)).astype(np.float32))
    return F.avg_pool2d(base, 3, 1, 1).round()


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    rng = np.random.default_rng(2)
    return cv2.GaussianBlur(rng.integers(0, 256, size=(72, 96), dtype=np.uint8), (5, 5), 1.0)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """``checkpoint(name)``: the upstream-format checkpoint of ``name`` (seed 0), written once per module
    (the tests only read it)."""
    folder = tmp_path_factory.mktemp("checkpoints")
    made: dict[str, Path] = {}

    def checkpoint(name: str) -> Path:
        if name not in made:
            made[name] = write_upstream(name, folder / f"{name}.pth")
        return made[name]

    return checkpoint


@pytest.fixture()
def build(checkpoints):
    def make(name: str) -> desc_bench.adapters.base.Descriptor:
        if name in OPENCV:
            return desc_bench.descriptor(name)
        return desc_bench.descriptor(name, weights=str(checkpoints(name)))

    return make


@pytest.mark.parametrize("name", NETWORKS + OPENCV)
def test_contract(name, build, patches, image):
    desc = build(name)
    if name == "gift":  # 25 warped copies per input: keep it small (any patch size is allowed)
        patches, image = patches[:4, :, 20:45, 20:45], image[:40, :56]
    out = desc.compute_patches(patches)
    binary = desc.distance is Distance.HAMMING
    assert out.shape == (len(patches), desc.dim)
    assert out.dtype == (torch.uint8 if binary else torch.float32)
    assert torch.equal(out, desc.compute_patches(patches))  # deterministic
    assert torch.allclose(out[:2].float(), desc.compute_patches(patches[:2]).float(), atol=1e-5)  # batching
    assert len(torch.unique(out.float(), dim=0)) == len(patches)  # distinct patches, distinct descriptors
    if not binary and name != "vgg-opencv":
        assert torch.allclose(out.norm(dim=1), torch.ones(len(out)), atol=1e-3)
    keypoints = np.array([[10.0, 12.0], [48.0, 36.0], [image.shape[1] - 6.0, image.shape[0] - 2.0]])
    dense = desc.compute_dense(image, keypoints)
    assert dense.shape == (3, desc.dim) and dense.dtype == out.dtype
    rgb = np.repeat(image[:, :, None], 3, axis=2)
    assert torch.allclose(desc.compute_dense(rgb, keypoints).float(), dense.float(), atol=1e-4)


def test_hardnet_equals_kornia(tmp_path):
    kornia = pytest.importorskip("kornia.feature")
    path = write_upstream("hardnet", tmp_path / "checkpoint_liberty_with_aug.pth", seed=3)
    ours = desc_bench.descriptor("hardnet", weights=str(path))
    reference = kornia.HardNet(pretrained=False)
    reference.load_state_dict(torch.load(path, weights_only=True)["state_dict"])
    reference.eval()
    patches = torch.from_numpy(np.random.default_rng(4).integers(0, 256, (64, 1, 65, 65)).astype(np.float32))
    got = ours.compute_patches(patches)
    resized = F.interpolate(patches / 255.0, size=(32, 32), mode="bilinear", align_corners=False)
    with torch.no_grad():
        expected = reference(resized)
    assert (got - expected).abs().max() < 1e-4


def test_hardnet_ps_fused_equals_unfused(tmp_path):
    """The folded network equals the upstream layer stack (biased convs, affine BN, no final BN)."""
    path = write_upstream("hardnet-ps", tmp_path / "HardNetPS.pth", seed=5)
    ours = desc_bench.descriptor("hardnet-ps", weights=str(path))
    features = H.hardnet_features(ps=True)
    features.load_state_dict(
        {k[len("features.") :]: v for k, v in torch.load(path, weights_only=True).items()}, strict=False
    )
    features.eval()
    patches = torch.from_numpy(np.random.default_rng(6).integers(0, 256, (16, 1, 32, 32)).astype(np.float32))
    flat = patches.reshape(16, -1)
    x = (patches - flat.mean(1).view(-1, 1, 1, 1)) / (flat.std(1).view(-1, 1, 1, 1) + 1e-7)
    with torch.no_grad():
        expected = F.normalize(features(x).flatten(1), dim=1)
    assert (ours.compute_patches(patches) - expected).abs().max() < 1e-4


def test_superpoint_dense_map_geometry(build):
    desc = build("superpoint")
    maps = desc.dense_map(torch.rand(1, 1, 64, 80))
    assert maps.shape == (1, 256, 8, 10)
    assert torch.allclose(maps.norm(dim=1), torch.ones(1, 8, 10), atol=1e-4)
    # a keypoint at a cell centre (8j + 3.5) gets exactly that cell's descriptor
    image = (np.random.default_rng(7).random((64, 80)) * 255).astype(np.uint8)
    with torch.inference_mode():
        cells = desc.dense_map(torch.from_numpy(image).float()[None, None] / 255.0)[0]
    got = desc.compute_dense(image, np.array([[8 * 3 + 3.5, 8 * 5 + 3.5]]))
    assert torch.allclose(got[0], cells[:, 5, 3], atol=1e-5)


def test_nms_keeps_the_strongest_and_suppresses_neighbours():
    xy = np.array([[10, 10], [12, 11], [20, 10], [14, 10], [10, 15]], dtype=float)
    conf = np.array([0.5, 0.9, 0.3, 0.2, 0.4])
    keep = SP.nms(xy, conf, 30, 30, 4)
    # 1 (0.9) suppresses 0 (|dx|=2) and 3 (|dx|=2); 4 is 4 px below 1? |dy|=4 -> suppressed; 2 is 8 px away
    assert keep.tolist() == [1, 2]
    assert SP.nms(xy, conf, 30, 30, 0).tolist() == [1, 0, 4, 2, 3]


def test_superpoint_detect_follows_the_settings(build):
    desc = build("superpoint")
    image = cv2.GaussianBlur((np.random.default_rng(8).random((96, 128)) * 255).astype(np.uint8), (3, 3), 0)
    frames = desc.detect(image)
    assert isinstance(frames, Frames) and len(frames) > 0
    xy = frames.xy
    assert (xy[:, 0] >= 4).all() and (xy[:, 0] < 128 - 4).all() and (xy[:, 1] >= 4).all() and (xy[:, 1] < 96 - 4).all()
    scores = desc.last_scores
    assert (scores >= 0.015).all() and (np.diff(scores) <= 0).all()
    gaps = np.abs(xy[:, None] - xy[None]).max(-1) + np.eye(len(xy)) * 1e9
    assert gaps.min() > 4  # NMS radius 4
    few = desc_bench.descriptor("superpoint", weights=desc.weights_path.as_posix(), max_keypoints=5).detect(image)
    assert np.array_equal(few.xy, xy[:5])


def test_gift_patch_and_keypoint_paths_agree(build, patches):
    desc = build("gift")
    small = patches[2:3, :, 20:45, 20:45]
    image = small[0, 0].to(torch.uint8).numpy()
    centre = (25 - 1) / 2.0
    a = desc.compute_patches(small)
    b = desc.compute_dense(image, np.array([[centre, centre]]))
    assert torch.allclose(a, b, atol=1e-5)


def test_msnet_map_stride(build):
    desc = build("msnet-v0")
    maps = desc.dense_map(torch.rand(2, 3, 64, 96))
    assert maps.shape == (2, 128, 16, 24) and desc.dense_stride == 4


@pytest.mark.parametrize("name", OPENCV)
def test_opencv_patch_equals_keypoint_at_the_centre(name, patches):
    """On patches the descriptor is the one of a keypoint at (P/2, P/2) of size P/5.303."""
    desc = desc_bench.descriptor(name)
    patch = patches[0, 0].to(torch.uint8).numpy()
    frames = Frames(np.array([[32.5, 32.5]]), scale=np.array([65 / 5.303]), angle=np.array([0.0]))
    assert torch.equal(desc.compute_patches(patches[:1]), desc.compute_dense(patch, frames))


@pytest.mark.parametrize("name", OPENCV)
def test_opencv_scale_factor_option(name):
    assert desc_bench.descriptor(name).options.scale_factor == CV.SIFT_SCALE_FACTOR == 6.75
    assert desc_bench.descriptor(f"{name}:scale_factor=5.0").options.scale_factor == 5.0


def _hamming_or_l2(a: torch.Tensor, b: torch.Tensor, binary: bool) -> torch.Tensor:
    if binary:
        bits = torch.from_numpy(np.unpackbits(a.numpy(), axis=1)).float()
        other = torch.from_numpy(np.unpackbits(b.numpy(), axis=1)).float()
        return torch.cdist(bits, other, p=1)
    return torch.cdist(a, b)


@pytest.mark.parametrize("name", OPENCV)
def test_opencv_learned_match_real_patches(name, shared):
    """Real HPatches patches (v_graffiti ref) against a noisy, slightly blurred copy: nearest-neighbour
    accuracy well above chance (1/300)."""
    from desc_bench.datasets.base import read_patch_file

    ref = read_patch_file(shared / "data" / "hpatches-patches-sample" / "likely_v_graffiti" / "ref.png")[:300]
    rng = np.random.default_rng(9)
    noisy = np.stack([cv2.GaussianBlur(p, (3, 3), 0.7) for p in ref]).astype(np.float32)
    noisy = np.clip(noisy + rng.normal(0, 8, noisy.shape), 0, 255).round()
    desc = desc_bench.descriptor(name)
    a = desc.compute_patches(torch.from_numpy(ref[:, None].astype(np.float32)))
    b = desc.compute_patches(torch.from_numpy(noisy[:, None].astype(np.float32)))
    distances = _hamming_or_l2(a, b, desc.distance is Distance.HAMMING)
    accuracy = (distances.argmin(1) == torch.arange(len(ref))).float().mean().item()
    print(f"{name}: nearest-neighbour accuracy {accuracy:.3f}")
    assert accuracy > 0.6


@pytest.fixture(scope="module")
def micro_hpatches(tiny_hpatches_factory):
    """The smallest set the generator makes in the real HPatches layout (2 sequences, one i_ and one v_, x 2
    patches: verification pairs need 2 a sequence): what a run through the CLI proves does not depend on size."""
    return tiny_hpatches_factory(sequences=2, patches=2)


@pytest.mark.parametrize("name", ["hardnet", "hardnet++", "hardnet-ps", "superpoint", "gift", "msnet-v0"])
def test_desc_bench_run_with_an_upstream_format_checkpoint(name, micro_hpatches, checkpoints, tmp_path, monkeypatch):
    """`desc-bench run --weights FILE` end to end, with a checkpoint built by the test in the upstream format."""
    from click.testing import CliRunner

    from desc_bench.cli import main

    monkeypatch.setenv("DESC_BENCH_CACHE", str(tmp_path / "cache"))
    checkpoint = checkpoints(name)
    result = CliRunner().invoke(
        main,
        [
            "run",
            "-d",
            name,
            "--weights",
            str(checkpoint),
            "--dataset",
            "hpatches",
            "--data-dir",
            str(micro_hpatches),
            "-o",
            str(tmp_path / "runs"),
            "-q",
            "--time-batch",
            "4" if name == "hardnet" else "0",  # timing rows once; the slow CPU networks are not timed here
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    import json

    record = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())
    rows = [r for r in record["results"] if r["descriptor"] == name]
    assert rows and all(r["error"] is None for r in rows), [r["error"] for r in rows][:3]
    assert {r["task"] for r in rows} == {"verification", "matching", "retrieval"}
    assert rows[0]["weights"].startswith("file:")
    if name == "hardnet++":
        assert "HPatches" in result.output  # the table flags weights that saw HPatches in training


@pytest.mark.parametrize("name", OPENCV)
def test_opencv_batch_equals_one_by_one(name):
    """Each patch is described alone: a descriptor does not depend on the rest of the batch or on the
    patch's position in it (a batch of several hundred runs in parallel threads)."""
    rng = np.random.default_rng(11)
    many = F.avg_pool2d(torch.from_numpy(rng.integers(0, 256, (320, 1, 65, 65)).astype(np.float32)), 3, 1, 1).round()
    desc = desc_bench.descriptor(name)
    batched = desc.compute_patches(many)
    single = torch.cat([desc.compute_patches(many[i : i + 1]) for i in range(len(many))])
    assert torch.equal(batched, single)
    assert torch.equal(desc.compute_patches(many.flip(0)), batched.flip(0))  # order does not matter


@pytest.mark.parametrize("name", OPENCV)
def test_opencv_patches_equal_the_image_path_at_the_centre(name):
    """describe_patches (keypoint and border made once per batch) gives what the image path gives
    for each patch alone at its centre keypoint (P/2, P/2), size P / 5.303, angle 0."""
    rng = np.random.default_rng(5)
    for size, scale in ((65, None), (32, 5.0)):
        desc = desc_bench.descriptor(name) if scale is None else desc_bench.descriptor(name, scale_factor=scale)
        patches = rng.integers(0, 256, (3, size, size)).astype(np.uint8)
        centre, frame = np.array([[size / 2.0, size / 2.0]]), np.array([size / MAGNIFICATION])
        alone = np.concatenate([desc._compute(p, centre, frame, np.zeros(1)) for p in patches])
        assert torch.equal(desc.compute_patches(patches), desc._tensor(alone)), (size, scale)


def test_superpoint_small_images(build):
    """Zero keypoints give an empty result (no forward pass); images under 8 px a clear InputError."""
    desc = build("superpoint")
    tiny = np.full((5, 5), 128, np.uint8)
    out = desc.compute_dense(tiny, np.zeros((0, 2)))
    assert out.shape == (0, 256) and out.dtype == torch.float32
    with pytest.raises(InputError, match="at least 8x8"):
        desc.compute_dense(tiny, np.array([[2.0, 2.0]]))
