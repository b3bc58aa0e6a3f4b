"""Speed of the Brown / PhotoTour metrics against their peers, in one run on the same inputs.

- FPR95 on 100,000 pairs (the size of a real test file): target well under a second. HardNet's own
  ``ErrorRateAt95Recall`` (DagnyT/hardnet code/EvalMetrics.py, written out below from that file) is
  timed beside it as the peer.
- SNN-mAP on a liberty-sized input: 450,092 patches, 128-d L2-normalised descriptors (3D points
  with 2-6 patches each; each patch is its point's random centre plus 1.6 times as much noise),
  grouped by reference image with group sizes drawn log-normal (median 700 patches, sigma 0.9,
  clipped to 60..8,000: about 470 groups, a third of them over 1,000 patches, holding most
  patches; the real interest.txt is not available here, so these sizes are an assumption).
  Timed: desc-bench's ``snn_map`` (published mode, numpy semantics, and fixed mode) against
  brown_phototour_revisited 0.3.0's ``evaluate_mAP_snn_based`` with its numpy backend (installed
  by the test extra; its torchvision-only import is stubbed). Target: >= 5x faster. The two values
  must agree to 1e-6.
- Reading a Brown subset: ``--read N`` writes N random patches in the Brown layout to a temporary
  folder and times the first (decode + cache) and second (memory-mapped) loads.

    OMP_NUM_THREADS=2 python benchmarks/brown_speed.py [--threads 2] [--patches 450092] [--read 100000]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np
import torch

from desc_bench.bench.benchmarks.brown import fpr95
from desc_bench.bench.benchmarks.brown_snn import snn_map


def hardnet_error_rate_at_95_recall(labels, scores):
    """HardNet's EvalMetrics.ErrorRateAt95Recall (DagnyT/hardnet@35bc1d7), for timing only."""
    distances = 1.0 / (scores + 1e-8)
    recall_point = 0.95
    labels = labels[np.argsort(distances)]
    threshold_index = np.argmax(np.cumsum(labels) >= recall_point * np.sum(labels))
    FP = np.sum(labels[:threshold_index] == 0)
    TN = np.sum(labels[threshold_index:] == 0)
    return float(FP) / float(FP + TN)


def best_of(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def liberty_like(patches: int, dim: int, seed: int):
    """Descriptors ``(N, dim)`` float32, point ids, image ids with real-like group sizes (see above)."""
    rng = np.random.default_rng(seed)
    sizes = np.clip(np.round(rng.lognormal(np.log(700), 0.9, patches // 100 + 10)), 60, 8000).astype(int)
    sizes = sizes[: np.searchsorted(np.cumsum(sizes), patches) + 1]
    sizes[-1] -= sizes.sum() - patches
    if sizes[-1] < 2:
        sizes[-2] += sizes[-1]
        sizes = sizes[:-1]
    images = np.repeat(np.arange(len(sizes)), sizes)
    per_point = rng.integers(2, 7, patches)
    starts = np.cumsum(per_point)
    points = np.zeros(patches, np.int64)
    points[starts[starts < patches]] = 1
    points = np.cumsum(points)
    points = points + images * patches  # a point never spans two images
    _, points = np.unique(points, return_inverse=True)
    centres = rng.standard_normal((points.max() + 1, dim)).astype(np.float32)
    x = centres[points] + 1.6 * rng.standard_normal((patches, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x, points, images, sizes


def upstream_evaluate():
    spec = importlib.util.find_spec("brown_phototour_revisited")
    if spec is None:
        return None
    sys.modules.setdefault("brown_phototour_revisited.extraction", types.ModuleType("extraction"))
    loader = importlib.util.spec_from_file_location("_bpr", Path(spec.origin).parent / "benchmarking.py")
    module = importlib.util.module_from_spec(loader)
    module.__package__ = "brown_phototour_revisited"
    loader.loader.exec_module(module)
    folder = Path(tempfile.mkdtemp())

    def evaluate(x, points, images):
        path = folder / f"{time.time_ns()}.npy"
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            return float(module.evaluate_mAP_snn_based(x, points, images, str(path), "numpy", "euclidean"))

    return evaluate


def time_reading(count: int) -> None:
    from desc_bench.datasets.brown_layout import BrownPairs, BrownSubset, write_subset

    rng = np.random.default_rng(0)
    folder = Path(tempfile.mkdtemp()) / "liberty"
    patches = rng.integers(0, 256, (count, 64, 64), dtype=np.uint8)
    points = np.arange(count) // 3
    interest = np.zeros((count, 5))
    write_subset(folder, patches, points, interest, BrownPairs(np.arange(10), np.arange(1, 11), None))
    t = time.perf_counter()
    first = BrownSubset("liberty", folder)
    _ = first.patches[-1].sum(), first.point_ids
    cold = time.perf_counter() - t
    t = time.perf_counter()
    again = BrownSubset("liberty", folder)
    _ = again.patches[-1].sum(), again.point_ids
    warm = time.perf_counter() - t
    files = (count + 255) // 256
    print(
        f"read {count:,} patches ({files} mosaics): first load {cold:.2f} s ({count / cold:,.0f} patches/s, "
        f"decode + cache), reuse {warm * 1000:.0f} ms (memory-mapped)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--patches", type=int, default=450_092)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--read", type=int, default=0, help="also time reading N patches in the Brown layout")
    parser.add_argument("--skip-upstream", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(1)
    labels = rng.random(100_000) < 0.5
    distances = np.abs(rng.standard_normal(100_000) + 1.5 * ~labels)
    ours_t, ours = best_of(lambda: fpr95(distances, labels), args.repeats)
    theirs_t, theirs = best_of(
        lambda: hardnet_error_rate_at_95_recall(labels.astype(np.int64), 1.0 / (distances + 1e-8)), args.repeats
    )
    print(
        f"fpr95, 100,000 pairs: {ours_t * 1000:.1f} ms (HardNet's function {theirs_t * 1000:.1f} ms); "
        f"values {ours} and {theirs}"
    )

    x, points, images, sizes = liberty_like(args.patches, 128, 0)
    print(
        f"SNN-mAP input: {len(x):,} patches, {points.max() + 1:,} points, {len(sizes)} images "
        f"(group sizes median {int(np.median(sizes))}, max {sizes.max()}, {(sizes > 1000).sum()} over 1000), "
        f"{args.threads} threads"
    )
    t = time.perf_counter()
    published = snn_map(x, points, images)
    ours_pub = time.perf_counter() - t
    t = time.perf_counter()
    fixed = snn_map(x, points, images, mode="fixed")
    ours_fix = time.perf_counter() - t
    print(f"desc-bench snn_map published: {ours_pub:.1f} s (mAP {published.value:.6f}; {published.unmined:,} unmined)")
    print(f"desc-bench snn_map fixed:     {ours_fix:.1f} s (mAP {fixed.value:.6f})")
    evaluate = None if args.skip_upstream else upstream_evaluate()
    if evaluate is None:
        print("brown_phototour_revisited not installed (pip install -e .[test]): no peer timing")
    else:
        t = time.perf_counter()
        value = evaluate(x, points, images)
        theirs_t = time.perf_counter() - t
        print(f"brown_phototour_revisited numpy backend: {theirs_t:.1f} s (mAP {value:.6f})")
        gap = abs(value - published.value)
        print(
            f"ratio: published mode {theirs_t / ours_pub:.1f}x faster, fixed mode {theirs_t / ours_fix:.1f}x; "
            f"|difference| {gap:.2e} ({'ok' if gap <= 1e-6 else 'MISMATCH'})"
        )
    if args.read:
        time_reading(args.read)


if __name__ == "__main__":
    main()
