"""Image-pair protocols: oracle descriptors on synthetic pairs, hand-checked geometry, tables."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch

from desc_bench import geometry as G
from desc_bench.adapters.base import Descriptor, Distance, Frames
from desc_bench.bench import detectors as det
from desc_bench.bench import matching as M
from desc_bench.bench.benchmarks import mma, pck_gift, pck_msnet
from desc_bench.bench.benchmarks.base import benchmark_class
from desc_bench.bench.runner import evaluate_descriptor
from desc_bench.datasets import sequences as S
from desc_bench.errors import DescriptorOutputError, InputError, UnknownNameError
from desc_bench.results.plots import plot_mma
from desc_bench.results.tables import render_table


def evaluate_pairs(descriptor, pairset, protocol, progress=False, **options):
    """One descriptor on one image-pair benchmark (no store, no record)."""
    return evaluate_descriptor(descriptor, benchmark_class(protocol)(**options), pairset)


def _table(protocol, rows):
    spec = benchmark_class(protocol).tables[0]
    return render_table(spec, [r for r in rows if r.protocol == protocol])[0].split("\n\n", 1)[1]


def _key(image: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest() + str(image.shape)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """One illumination and one viewpoint synthetic sequence (10 pairs)."""
    return S.SyntheticSequences().open(tmp_path_factory.mktemp("pairs-data")).subset(["i_coffee", "v_astronaut"])


@pytest.fixture(scope="module")
def oracle(small):
    """image key -> homography from that image's pixels to its sequence's image-1 pixels, for the full
    images and their GIFT (480) and MSNet (640) resized versions."""
    table = {}
    for seq in small.sequences:
        for k in range(1, 7):
            image = seq.image(k)
            to_ref = np.eye(3) if k == 1 else np.linalg.inv(seq.homography(k))
            table[_key(image)] = to_ref
            resized, ratio = pck_gift.resize_gift(image)
            table[_key(resized)] = to_ref @ np.diag([1 / ratio, 1 / ratio, 1.0])
            resized, sx, sy = pck_msnet.resize_msnet(image)
            table[_key(resized)] = to_ref @ np.diag([1 / sx, 1 / sy, 1.0])
    return table


@pytest.fixture()
def perfect(oracle):
    """A descriptor that encodes the keypoint's position in image-1 coordinates: (cos, sin) of x / 400
    and y / 400, so its norm is constant (L2 normalisation keeps it) and the exact match is the NN."""

    class Perfect(Descriptor):
        name = "test-perfect-pairs"
        dim = 4

        def describe_keypoints(self, image, frames):
            ref = G.warp_points(oracle[_key(image)], frames.xy) / 400.0
            code = np.stack([np.cos(ref[:, 0]), np.sin(ref[:, 0]), np.cos(ref[:, 1]), np.sin(ref[:, 1])], 1)
            return torch.from_numpy(code).float()

    yield Perfect()
    Descriptor._registry.pop("test-perfect-pairs", None)


@pytest.fixture()
def random_descriptor():
    class Random(Descriptor):
        name = "test-random-pairs"
        dim = 32

        def describe_keypoints(self, image, frames):
            seed = int(_key(image)[:8], 16)
            return torch.randn(len(frames), self.dim, generator=torch.Generator().manual_seed(seed))

    yield Random()
    Descriptor._registry.pop("test-random-pairs", None)


@pytest.fixture()
def grid_detector(oracle, monkeypatch):
    """Detector 'test-grid': a fixed grid in image-1 coordinates, mapped exactly into each image."""
    xs, ys = np.meshgrid(np.linspace(30, 450, 12), np.linspace(30, 330, 9))
    canonical = np.stack([xs.ravel(), ys.ravel()], axis=1)

    def detect(image, budget, seed):
        xy = G.warp_points(np.linalg.inv(oracle[_key(image)]), canonical)
        keep = G.inside(xy, image.shape[1], image.shape[0])
        return Frames(xy[keep][:budget])

    monkeypatch.setitem(det.DETECTORS, "test-grid", detect)
    return "test-grid"


def _value(rows, metric, subset="all"):
    found = [r for r in rows if r.metric == metric and r.subset == subset and ":pair=" not in r.variant]
    assert len(found) == 1, (metric, subset, found)
    assert found[0].error is None, found[0].error
    return found[0].value


def test_mma_perfect_and_random(small, perfect, random_descriptor, grid_detector):
    rows = evaluate_pairs(perfect, small, "mma", detector=grid_detector, progress=False)
    for t in range(1, 11):
        for subset in ("all", "i", "v"):
            assert _value(rows, f"mma@{t}", subset) == pytest.approx(1.0)
    assert {r.mode for r in rows} == {"keypoints"}
    assert {r.task for r in rows} == {"mma"} and {r.dataset for r in rows} == {small.name}
    pair_rows = [r for r in rows if r.variant.endswith(":pair=1-4") and r.metric == "mma@3"]
    assert {r.subset for r in pair_rows} == {"i_coffee", "v_astronaut"}
    assert all("det=test-grid" in r.variant and "budget=1000" in r.variant for r in rows)
    rows = evaluate_pairs(random_descriptor, small, "mma", detector=grid_detector, progress=False)
    assert _value(rows, "mma@3") < 0.1
    assert _value(rows, "mma@10") < 0.15


def test_pck_gift_perfect_and_random(small, perfect, random_descriptor, grid_detector):
    rows = evaluate_pairs(perfect, small, "pck-gift", detector=grid_detector, progress=False)
    assert [r.metric for r in rows if r.subset == "all" and ":pair" not in r.variant] == ["pck@5", "pck@2", "pck@1"]
    for metric in ("pck@5", "pck@2", "pck@1"):
        assert _value(rows, metric) == pytest.approx(1.0)
    rows = evaluate_pairs(random_descriptor, small, "pck-gift", detector=grid_detector, progress=False)
    assert _value(rows, "pck@5") < 0.1


def test_pck_msnet_perfect_and_random(small, perfect, random_descriptor):
    rows = evaluate_pairs(perfect, small, "pck-msnet", progress=False)
    assert _value(rows, "pck@3") > 0.97
    assert _value(rows, "pck@3", "i") == pytest.approx(1.0)
    assert [r.value for r in rows if r.metric == "keypoints"] == [1000.0] * 10
    rows = evaluate_pairs(random_descriptor, small, "pck-msnet", progress=False)
    assert _value(rows, "pck@3") < 0.1
    with pytest.raises(InputError, match="harris"):
        evaluate_pairs(perfect, small, "pck-msnet", detector="dog", progress=False)


def test_oxford_matching_score_perfect_and_random(small, perfect, random_descriptor, grid_detector):
    illum = small.subset(["i_coffee"])
    rows = evaluate_pairs(perfect, illum, "oxford-ms", detector=grid_detector, progress=False)
    assert _value(rows, "matching-score") == pytest.approx(1.0)
    assert _value(rows, "repeatability") == pytest.approx(1.0)
    assert _value(rows, "matching-score", "i_coffee") == pytest.approx(1.0)
    rows = evaluate_pairs(random_descriptor, illum, "oxford-ms", detector=grid_detector, progress=False)
    assert _value(rows, "repeatability") == pytest.approx(1.0)
    assert _value(rows, "matching-score") < 0.1


def test_descriptor_failure_gives_error_rows(small, grid_detector):
    class Broken(Descriptor):
        name = "test-broken-pairs"
        dim = 4

        def describe_keypoints(self, image, frames):
            return torch.full((len(frames), 4), float("nan"))

    try:
        with pytest.raises(DescriptorOutputError, match="NaN"):  # the runner turns it into error rows
            evaluate_pairs(Broken(), small, "mma", detector=grid_detector)
    finally:
        Descriptor._registry.pop("test-broken-pairs", None)


def test_unknown_names(small, perfect):
    with pytest.raises(UnknownNameError, match="pck-gift"):
        evaluate_pairs(perfect, small, "pck", progress=False)
    with pytest.raises(UnknownNameError, match="harris"):
        evaluate_pairs(perfect, small, "mma", detector="fast", progress=False)


# ---------------------------------------------------------------------- hand-checked geometry


def test_overlap_error_hand_checked():
    circle = lambda r: np.eye(2) * r**2  # noqa: E731
    # concentric circles of radius 10 and 20: IoU = 100 / 400
    err = G.overlap_errors([[0, 0]], [circle(10)], [[0, 0]], [circle(20)])
    assert err[0] == pytest.approx(0.75, abs=0.01)
    # equal circles of radius 5, centres 5 px apart: both shapes are scaled to radius 30 and the
    # offset stays 5 px. Lens area 2*900*acos(5/60) - 2.5*sqrt(3575) = 2527.78; union
    # 2*pi*900 - 2527.78 = 3127.09; error = 1 - 0.80835 = 0.1917 (unnormalised it would be 0.757).
    lens = 2 * 900 * math.acos(5 / 60) - 2.5 * math.sqrt(3575)
    expected = 1 - lens / (2 * math.pi * 900 - lens)
    assert expected == pytest.approx(0.1917, abs=1e-4)
    err = G.overlap_errors([[100, 100]], [circle(5)], [[105, 100]], [circle(5)])
    assert err[0] == pytest.approx(expected, abs=0.01)
    # a concentric ellipse with semi-axes 30 and 15 inside a circle of radius 30: IoU = 1/2
    err = G.overlap_errors([[0, 0]], [circle(30)], [[0, 0]], [np.diag([30.0**2, 15.0**2])])
    assert err[0] == pytest.approx(0.5, abs=0.01)
    assert G.lens_area(30, 30, 5) == pytest.approx(lens)
    assert G.lens_area(1, 3, 0.5) == pytest.approx(math.pi)
    assert G.lens_area(1, 1, 2.5) == 0


def test_geometric_matches_are_one_to_one():
    circle = np.eye(2) * 100.0
    ca = np.array([[0.0, 0.0], [100.0, 0.0]])
    cb = np.array([[1.0, 0.0], [2.0, 0.0], [300.0, 0.0]])
    matches, errors = G.geometric_matches(ca, np.stack([circle] * 2), cb, np.stack([circle] * 3))
    assert matches.tolist() == [[0, 0]] and errors[0] < 0.1


def test_ellipse_warp_through_a_scaling():
    H = np.diag([2.0, 3.0, 1.0])
    centres, shapes = G.warp_ellipses(H, np.array([[1.0, 1.0]]), np.eye(2)[None] * 4.0)
    np.testing.assert_allclose(centres, [[2.0, 3.0]])
    np.testing.assert_allclose(shapes[0], np.diag([16.0, 36.0]))


def test_matching_helpers():
    a = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    b = torch.tensor([[10.0, 1.0], [0.0, 0.5], [4.0, 6.0]])
    assert M.nearest(a, b, Distance.L2).tolist() == [1, 0, 2]
    assert M.mutual_nearest(a, b, Distance.L2, normalise=False).tolist() == [[0, 1], [1, 0], [2, 2]]
    x = torch.tensor([[0b00000000, 0b11110000]], dtype=torch.uint8)
    y = torch.tensor([[0b00000001, 0b11110000], [0b11111111, 0b00001111]], dtype=torch.uint8)
    np.testing.assert_array_equal(M.distance_matrix(x, y, Distance.HAMMING).numpy(), [[1.0, 16.0]])
    H = np.array([[1.0, 0, 2], [0, 1, 0], [0, 0, 1]])
    xy = np.array([[0.0, 0.0], [5.0, 5.0]])
    # matches (0,0) exact; (1,1) 4 px off
    values = mma.mma_pair(xy, np.array([[2.0, 0.0], [7.0, 9.0]]), np.array([[0, 0], [1, 1]]), H, [3, 4])
    np.testing.assert_allclose(values, [0.5, 1.0])
    assert mma.mma_pair(xy, xy, np.zeros((0, 2), np.int64), H, [3]).tolist() == [0.0]


def test_resizing_conventions():
    image = np.zeros((768, 1024, 3), np.uint8)
    gift, ratio = pck_gift.resize_gift(image)
    assert gift.shape == (360, 480, 3) and ratio == 480 / 1024
    msnet, sx, sy = pck_msnet.resize_msnet(np.zeros((653, 986, 3), np.uint8))
    assert msnet.shape == (424, 640, 3) and sx == 640 / 986 and sy == 424 / 653


def test_harris_detector_matches_msnet_rule():
    rng = np.random.default_rng(0)
    image = (rng.random((60, 80)) * 255).astype(np.uint8)
    mask = det.harris_mask(image)
    assert 0.05 < mask.mean() <= 0.1
    frames = det.detect("harris", image, budget=50, seed=3)
    again = det.detect("harris", image, budget=50, seed=3)
    assert len(frames) == 50 and np.array_equal(frames.xy, again.xy)
    assert mask[frames.xy[:, 1].astype(int), frames.xy[:, 0].astype(int)].all()
    dog = det.detect("dog", np.ascontiguousarray(np.repeat(image[:, :, None], 3, 2)), budget=20)
    assert len(dog) <= 20 and dog.scale is not None and dog.angle is not None


# ------------------------------------------------------------------------------------ tables


def test_tables_and_plot(small, perfect, random_descriptor, grid_detector, tmp_path):
    rows = []
    for d in (perfect, random_descriptor):
        rows += evaluate_pairs(d, small, "mma", detector=grid_detector, progress=False)
    rows += evaluate_pairs(perfect, small, "pck-gift", detector=grid_detector, progress=False)
    rows += evaluate_pairs(perfect, small.subset(["i_coffee"]), "oxford-ms", detector=grid_detector, progress=False)
    table = _table("mma", rows)
    assert "MMA@3 all" in table and "test-perfect-pairs" in table and "1.000" in table
    assert len(table.splitlines()) == 4
    table = _table("pck-gift", rows)
    header = table.splitlines()[0]
    assert header.index("pck-5") < header.index("pck-2") < header.index("pck-1")
    table = _table("oxford-ms", rows)
    assert table.splitlines()[0].index("matching-score") < table.splitlines()[0].index("repeatability")
    spec = benchmark_class("oxford-ms").tables[1]
    table = render_table(spec, [r for r in rows if r.protocol == "oxford-ms"])[0].split("\n\n", 1)[1]
    assert "i_coffee" in table.splitlines()[0] and "mean" in table.splitlines()[0]
    assert {line.split("|")[3].strip() for line in table.splitlines()[2:]} == {"matching-score", "repeatability"}
    path = plot_mma(rows, tmp_path / "mma.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_superpoint_detector_needs_its_adapter():
    problem = det.superpoint_problem()
    if problem is None:
        pytest.skip("superpoint weights are installed here")
    from desc_bench.errors import DescriptorUnavailableError

    with pytest.raises(DescriptorUnavailableError, match="superpoint"):
        det.detect("superpoint", np.zeros((32, 32), np.uint8))
    assert "superpoint" not in det.available_detectors()


def test_pck_gift_keeps_every_superpoint_detection(small, perfect, grid_detector, monkeypatch):
    """GIFT keeps every SuperPoint detection: pck-gift's default budget is 'all' for it (the first
    N with --budget N); other detectors and other benchmarks keep their 1000."""
    budgets = []

    def superpoint(image, budget, seed):  # the grid of 108 points, as SuperPoint would detect it
        budgets.append(budget)
        return det.DETECTORS[grid_detector](image, budget, seed)

    monkeypatch.setitem(det.DETECTORS, "superpoint", superpoint)
    assert benchmark_class("pck-gift")().budget == 1000  # dog
    assert benchmark_class("mma")(detector="superpoint").budget == 1000
    rows = evaluate_pairs(perfect, small, "pck-gift", detector="superpoint")
    assert set(budgets) == {None} and len(budgets) == 12
    top = next(r for r in rows if r.subset == "all" and r.metric == "pck@5" and ":pair" not in r.variant)
    assert top.variant.startswith("det=superpoint:budget=all:") and "budget=all" in top.notes
    budgets.clear()
    rows = evaluate_pairs(perfect, small, "pck-gift", detector="superpoint", budget=20)
    assert set(budgets) == {20}
    with pytest.raises(InputError, match="detector dog needs a keypoint budget"):
        det.detect("dog", np.zeros((40, 40, 3), np.uint8), None)
