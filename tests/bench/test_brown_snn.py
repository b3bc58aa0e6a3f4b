"""SNN-mAP equals brown_phototour_revisited 0.3.0's ``evaluate_mAP_snn_based`` (published mode, both
of its backends) on brown-synth descriptors; the fixed mode differs exactly where the mining rule does.

The package is in the test extra (pinned, it declares no dependencies). Its module imports
torchvision for its extraction helpers only; the evaluation function is loaded with that import
stubbed (no torchvision here), and runs on the CPU for ``backend="pytorch-cuda"`` when there is no GPU.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
import types
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from desc_bench.bench.benchmarks.brown_snn import grouped_average_precision, positive_pairs, snn_map
from desc_bench.errors import InputError


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    """``evaluate_mAP_snn_based(descriptors, labels, img_labels, backend, distance) -> float``."""
    pytest.importorskip("sklearn", reason="the test extra installs scikit-learn (brown_phototour_revisited needs it)")
    pytest.importorskip("fastprogress", reason="the test extra installs fastprogress")
    spec = importlib.util.find_spec("brown_phototour_revisited")
    if spec is None:
        pytest.skip("needs brown_phototour_revisited==0.3.0 (pip install -e .[test])")
    package = Path(spec.origin).parent
    stub = types.ModuleType("brown_phototour_revisited.extraction")  # imports torchvision: not needed here
    saved = sys.modules.get(stub.__name__)
    sys.modules[stub.__name__] = stub
    try:
        loader = importlib.util.spec_from_file_location("_bpr_benchmarking", package / "benchmarking.py")
        module = importlib.util.module_from_spec(loader)
        module.__package__ = "brown_phototour_revisited"
        loader.loader.exec_module(module)
    finally:
        if saved is None:
            sys.modules.pop(stub.__name__, None)
        else:
            sys.modules[stub.__name__] = saved
    folder = tmp_path_factory.mktemp("bpr")

    def evaluate(descriptors, labels, images, backend="numpy", distance="euclidean"):
        path = folder / f"map-{np.random.default_rng().integers(1 << 62)}.npy"  # it caches by path
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return float(module.evaluate_mAP_snn_based(descriptors, labels, images, str(path), backend, distance))

    return evaluate


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """brown-synth liberty's largest group (over 1000 patches: mined) and smallest (not mined),
    described by OpenCV SIFT (float32) and BEBLID (packed bits)."""
    from desc_bench.adapters.registry import descriptor
    from desc_bench.datasets import brown_synth

    root = tmp_path_factory.getbasetemp() / "brown-synth-data" / "brown-synth"  # shared with the dataset tests
    subset = brown_synth.open_set(brown_synth.ensure(root)).subset("liberty")
    sizes = np.bincount(subset.image_ids)
    keep = np.isin(subset.image_ids, [sizes.argmax(), sizes.argmin()])
    patches = torch.from_numpy(np.array(subset.patches[keep])[:, None])
    return {
        "points": subset.point_ids[keep],
        "images": subset.image_ids[keep],
        "sift": descriptor("sift-opencv").compute_patches(patches).numpy(),
        "beblid": descriptor("beblid-opencv").compute_patches(patches).numpy(),
    }


def test_hand_computed_group():
    # one group of 4 patches (points 0, 0, 1, 1) at x = 0, 1, 5, 5.5; a group of <= 1000 patches is
    # not mined as published: every anchor's "negative" is the group's first patch
    x = np.array([[0.0], [1.0], [5.0], [5.5]])
    points, images = np.array([0, 0, 1, 1]), np.array([7, 7, 7, 7])
    published = snn_map(x, points, images)
    # (0,1): neg = itself, wrong, score 1; (1,0): neg = its positive, right, score 0;
    # (2,3): right, snn 0.5/5 -> 0.9; (3,2): right, snn 0.5/5.5 -> 0.909. AP = (1/2 + 2/3 + 3/4) / 3
    assert published.value == pytest.approx(23 / 36, abs=1e-12) and published.unmined == 4
    fixed = snn_map(x, points, images, mode="fixed")  # every anchor's true hardest negative: all right
    assert fixed.value == 1.0 and fixed.unmined == 0


def test_positive_pairs_and_grouped_ap_match_brute_force():
    pytest.importorskip("sklearn")
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(3)
    points, images = rng.integers(0, 30, 400), rng.integers(0, 4, 400)
    a, p = positive_pairs(points, images)
    brute = {
        (i, j) for i in range(400) for j in range(400) if i != j and points[i] == points[j] and images[i] == images[j]
    }
    assert set(zip(a.tolist(), p.tolist())) == brute and len(a) == len(brute)
    groups = rng.integers(0, 5, 3000)
    scores = np.round(rng.random(3000), 2).astype(np.float32)  # many ties
    labels = rng.random(3000) < 0.4
    labels[groups == 3] = False  # a group without positives: AP 0 (as sklearn, with its warning)
    ours = grouped_average_precision(groups, scores, labels, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = [average_precision_score(labels[groups == g], scores[groups == g]) for g in range(5)]
    np.testing.assert_allclose(ours, theirs, atol=1e-12)


def test_published_equals_the_package_on_brown_synth(upstream, synth):
    points, images = synth["points"], synth["images"]
    assert np.bincount(images).max() > 1000  # the mined branch is exercised
    for backend, theirs in (("numpy", "numpy"), ("pytorch", "pytorch-cuda")):
        ours = snn_map(synth["sift"], points, images, backend=backend)
        assert ours.value == pytest.approx(upstream(synth["sift"], points, images, theirs), abs=1e-6)
    bits = np.unpackbits(synth["beblid"], axis=1, bitorder="little").astype(bool)  # what skimage BRIEF gives it
    ours = snn_map(synth["beblid"], points, images, distance="hamming")
    assert ours.value == pytest.approx(upstream(bits, points, images, "numpy", "hamming"), abs=1e-6)


def test_the_two_backends_differ_on_ties_and_each_is_matched(upstream, synth):
    # coarse descriptors: many exactly tied distances, which scipy's float64 cdist and torch's
    # float32 cdist order differently when they mine hard negatives
    big = synth["images"] == np.bincount(synth["images"]).argmax()  # the mined group: where they differ
    coarse = np.round(synth["sift"][big] / 24.0).astype(np.float32)
    points, images = synth["points"][big], synth["images"][big]
    numpy_value = snn_map(coarse, points, images, backend="numpy").value
    torch_value = snn_map(coarse, points, images, backend="pytorch").value
    assert numpy_value == pytest.approx(upstream(coarse, points, images, "numpy"), abs=1e-6)
    assert torch_value == pytest.approx(upstream(coarse, points, images, "pytorch-cuda"), abs=1e-6)
    assert abs(numpy_value - torch_value) > 1e-5


def test_fixed_differs_only_where_the_mining_rule_does(synth):
    points, images, sift = synth["points"], synth["images"], synth["sift"]
    published = snn_map(sift, points, images)
    fixed = snn_map(sift, points, images, mode="fixed")
    assert fixed.value < published.value - 0.05 and published.unmined > 0 == fixed.unmined
    # groups of more than 1000 patches whose size is a multiple of 128 are mined entirely as
    # published: there the two modes agree (SIFT distances stay below upstream's 1000 offsets)
    keep = np.zeros(len(points), bool)
    for image in np.unique(images):
        members = np.flatnonzero(images == image)
        if len(members) > 1024:
            keep[members[:1024]] = True
    trimmed = [a[keep] for a in (sift, points, images)]
    a, b = snn_map(*trimmed), snn_map(*trimmed, mode="fixed")
    assert a.unmined == 0 and a.value == b.value
    # 1024 patches and one more 3D point after them: that point's anchors are past the last full
    # batch of 128, so they are not mined (they use the group's first patch), as upstream
    group = np.flatnonzero(images == np.bincount(images).argmax())
    head, tail = group[:1024], group[1024:]
    extra = next(q for q in np.unique(points[tail]) if q not in points[head] and (points[tail] == q).sum() >= 2)
    chosen = np.r_[head, tail[points[tail] == extra]]
    c = snn_map(sift[chosen], points[chosen], images[chosen])
    assert c.unmined == (points[tail] == extra).sum()
    assert snn_map(sift[chosen], points[chosen], images[chosen], mode="fixed").unmined == 0


def test_distances_over_the_offset_break_the_published_mask(synth):
    # upstream hides positives behind +1000; descriptors with distances over 1000 leak them
    big = synth["images"] == np.bincount(synth["images"]).argmax()
    points, images, sift = synth["points"][big], synth["images"][big], synth["sift"][big]
    scaled = sift * 16.0  # a power of two: every distance scales exactly
    assert snn_map(scaled, points, images, mode="fixed").value == snn_map(sift, points, images, mode="fixed").value
    assert snn_map(scaled, points, images).value != pytest.approx(snn_map(sift, points, images).value, abs=1e-3)


def test_refuses_bad_input():
    x = np.zeros((4, 8), np.float32)
    with pytest.raises(InputError, match="mode"):
        snn_map(x, [0, 0, 1, 1], [0] * 4, mode="bugfree")
    with pytest.raises(InputError, match="pytorch backend"):
        snn_map(np.zeros((4, 8), np.uint8), [0, 0, 1, 1], [0] * 4, backend="pytorch", distance="hamming")
    with pytest.raises(InputError, match="no group holds two patches"):
        snn_map(x, [0, 1, 2, 3], [0] * 4)
    with pytest.raises(InputError, match="NaN"):
        snn_map(np.full((4, 8), np.nan), [0, 0, 1, 1], [0] * 4)
