"""brown-synth: three subsets in the exact Brown layout, generated deterministically on first use."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from desc_bench.datasets import brown_synth
from desc_bench.datasets.brown_layout import MOSAIC, PER_FILE, SUBSETS, mosaic_files
from desc_bench.datasets.brown_synth import BrownSynthParams
from desc_bench.datasets.registry import dataset, unavailable_message
from desc_bench.errors import DatasetError


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """The default set, made once per test session (tests/bench/test_brown*.py use the same folder)."""
    root = tmp_path_factory.getbasetemp() / "brown-synth-data"
    return root, brown_synth.open_set(brown_synth.ensure(root / "brown-synth"))


def test_layout_groups_and_pairs(synth):
    root, opened = synth
    assert opened.name == "brown-synth" and opened.names() == SUBSETS and opened.synthetic
    stored = json.loads((root / "brown-synth" / "params.json").read_text())
    for subset in opened.subsets:
        n = len(subset)
        assert 3_000 <= n <= 6_000
        files = mosaic_files(subset.root)
        assert len(files) == -(-n // PER_FILE)
        mosaic = cv2.imread(str(files[-1]), cv2.IMREAD_UNCHANGED)
        assert mosaic.shape == (MOSAIC, MOSAIC) and mosaic.dtype == np.uint8  # 8-bit gray BMP
        assert (mosaic[-64:, -64:] == 0).all()  # the last file is partly empty
        assert subset.patches.shape == (n, 64, 64)
        points, images = subset.point_ids, subset.image_ids
        assert (np.diff(points) >= 0).all()  # the patches of a point are consecutive
        per_point = np.bincount(points)
        assert per_point.min() >= 2 and per_point.max() <= 4
        assert all(len(np.unique(images[points == p])) == 1 for p in np.unique(points)[::50])
        groups = np.bincount(images)
        assert groups.max() > 1000 and groups.min() < 1000 and len(groups) == 3
        sources = [name for name, _ in brown_synth.SUBSET_SOURCES[subset.name]]
        assert [stored["subsets"][subset.name]["groups"][name] for name in sources] == groups.tolist()
        pairs = subset.pairs
        assert len(pairs) == 10_000 and pairs.is_match.sum() == 5_000
        np.testing.assert_array_equal(pairs.is_match, points[pairs.patch1] == points[pairs.patch2])
        assert not (pairs.patch1 == pairs.patch2).any()
        assert subset.version.startswith("brown-synth-g1-")
    # matching patches look alike: closer than non-matching ones on average
    s = opened.subsets[0]
    p = np.asarray(s.patches, np.float32)
    d = np.abs(p[s.pairs.patch1] - p[s.pairs.patch2]).mean((1, 2))
    assert d[s.pairs.is_match].mean() < 0.8 * d[~s.pairs.is_match].mean()


def test_generation_is_deterministic():
    params = BrownSynthParams(points=60, pairs=200)
    gray = brown_synth.load_source(brown_synth._SOURCES["i_page"])
    a = brown_synth._image_patches(gray, 40, params, brown_synth._stream(params, "x"), "i_page")
    b = brown_synth._image_patches(gray, 40, params, brown_synth._stream(params, "x"), "i_page")
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    c = brown_synth._image_patches(gray, 40, params, brown_synth._stream(params, "y"), "i_page")
    assert not np.array_equal(a[0], c[0])
    with pytest.raises(DatasetError, match="usable points"):
        brown_synth._image_patches(gray, 100_000, params, brown_synth._stream(params, "x"), "i_page")


def test_registry_opens_it_without_download(synth, monkeypatch):
    root, opened = synth
    monkeypatch.setenv("DESC_BENCH_DATA", str(root))
    assert unavailable_message("brown-synth") is None
    again = dataset("brown-synth")
    assert [s.version for s in again.subsets] == [s.version for s in opened.subsets]
    assert "brown-synth" in unavailable_message("brown-yosemite")


def test_refuses_to_replace_other_files(tmp_path):
    (tmp_path / "brown-synth").mkdir()
    (tmp_path / "brown-synth" / "mine.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="refusing to replace"):
        brown_synth.ensure(tmp_path / "brown-synth", BrownSynthParams(points=30, pairs=50))
