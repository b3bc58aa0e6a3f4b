"""OpenCV SIFT / RootSIFT on patches: the parallel path and the raw-SIFT reuse inside a run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import desc_bench
from desc_bench.adapters import sift_opencv
from desc_bench.adapters.base import reuse_allowed, reusing_results
from desc_bench.io.memo import BoundedCache


@pytest.fixture(scope="module")
def patches() -> torch.Tensor:
    rng = np.random.default_rng(3)
    return torch.from_numpy(rng.integers(0, 256, size=(300, 1, 65, 65)).astype(np.float32))


def test_chunked_threads_give_the_serial_result(patches):
    parallel = desc_bench.descriptor("sift-opencv")
    serial = desc_bench.descriptor("sift-opencv")
    serial._threads = 1
    parallel._threads = 2
    assert torch.equal(parallel.compute_patches(patches), serial.compute_patches(patches))


def test_rootsift_reuses_the_raw_sift_of_the_same_batch_only_in_the_scope(patches, monkeypatch):
    sift, root = desc_bench.descriptor("sift-opencv"), desc_bench.descriptor("rootsift-opencv")
    alone_sift, alone_root = sift.compute_patches(patches), root.compute_patches(patches)
    monkeypatch.setattr(sift_opencv, "_RAW", BoundedCache(1 << 30))
    calls = []
    original = sift_opencv.SiftOpenCV._raw_patches
    monkeypatch.setattr(sift_opencv.SiftOpenCV, "_raw_patches", lambda s, p: calls.append(len(p)) or original(s, p))
    assert not reuse_allowed()
    with reusing_results():
        assert reuse_allowed()
        first = sift.compute_patches(patches)
        first[:] = -1  # the caller owns what it gets: the shared raw array is not changed
        again_root = root.compute_patches(patches)
        again_sift = sift.compute_patches(patches)
        root.compute_patches(patches[:10])  # another batch is computed
    assert calls == [300, 10]
    assert torch.equal(again_root, alone_root) and torch.equal(again_sift, alone_sift)
    sift.compute_patches(patches)  # outside the scope (timing): always computed
    assert calls == [300, 10, 300] and not reuse_allowed()


def test_the_cache_is_bounded_in_bytes():
    store = BoundedCache(max_bytes=3 * 512)
    rows = [np.full((1, 128), k, np.float32) for k in range(4)]
    for k, row in enumerate(rows):
        store.put(("m", k), row, row.nbytes)
    assert store.get(("m", 0)) is None and all(store.get(("m", k)) is not None for k in (1, 2, 3))
    store.get(("m", 1))  # used: kept over the older 2
    store.put(("m", 4), rows[0], rows[0].nbytes)
    assert store.get(("m", 2)) is None and store.get(("m", 1)) is not None
    store.put(("m", 9), np.zeros((4, 128), np.float32), 4 * 512)  # larger than the bound: not kept
    assert store.get(("m", 9)) is None
