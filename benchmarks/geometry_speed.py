"""Where the time of a geometry benchmark goes: cost per pair of detection, description, matching
and estimation, measured separately on the same images, for each descriptor and estimator.

Homography (default, the embedded hpatches-seq-synth: 40 pairs, 480x360) or relative pose
(``--pose``, the embedded pose-synth: 24 pairs, 640x480). Detection and description are per pair
(two images each); matching is mutual nearest neighbours; estimation is timed for each estimator
(OpenCV RANSAC, OpenCV USAC-MAGSAC, PoseLib when installed) with the benchmarks' default settings.

    PYTHONPATH=. OMP_NUM_THREADS=2 python benchmarks/geometry_speed.py [-d sift-opencv,rootsift-opencv]
        [--pose] [--pairs 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from desc_bench.adapters.registry import descriptor
from desc_bench.bench import detectors as det
from desc_bench.bench import estimators as E
from desc_bench.bench.matching import describe, mutual_nearest
from desc_bench.datasets.registry import dataset_source


def pairs_of(pose: bool, data_dir: Path, count: int):
    """[(image0, image1, K0, K1)] (K None for homography pairs)."""
    name = "pose-synth" if pose else "hpatches-seq-synth"
    data = dataset_source(name).open(data_dir, progress=False)
    if pose:
        return [(p.image(0), p.image(1), p.K0, p.K1) for p in data.pairs[:count]]
    out = [(seq.image(1), seq.image(k), None, None) for seq in data.sequences for k in range(2, 7)]
    return out[:count]


def estimators(pose: bool) -> list[E.Estimator]:
    methods = [m for m in E.METHODS if m != "poselib"]
    try:
        E.poselib_module()
        methods.append("poselib")
    except Exception:
        print("(poselib not installed: pip install 'desc-bench[poselib]')")
    if pose:
        return [E.Estimator(m, 0.5, 10000, 0.99999) for m in methods]
    return [E.Estimator(m, 3.0, 2000, 0.995) for m in methods]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", "--descriptors", default="sift-opencv", help="comma-separated descriptor specs")
    parser.add_argument("--pose", action="store_true", help="relative pose on pose-synth (default: homography)")
    parser.add_argument("--pairs", type=int, default=10, help="pairs to time (default 10)")
    parser.add_argument("--budget", type=int, default=1000, help="keypoints per image (default 1000)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        pairs = pairs_of(args.pose, Path(tmp), args.pairs)
    fits = estimators(args.pose)
    print(f"{len(pairs)} {'pose' if args.pose else 'homography'} pairs, dog detector, budget {args.budget}\n")
    header = ["descriptor", "detect ms", "describe ms", "match ms", *[f"{e.method} ms" for e in fits], "matches"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for spec in args.descriptors.split(","):
        desc = descriptor(spec)
        warm = det.detect("dog", pairs[0][0], args.budget)  # one untimed pass: first-call costs are not per pair
        mutual_nearest(describe(desc, pairs[0][0], warm), describe(desc, pairs[0][0], warm), desc.distance)
        t = {"detect": 0.0, "describe": 0.0, "match": 0.0, **{e.method: 0.0 for e in fits}}
        matches = []
        for image0, image1, K0, K1 in pairs:
            start = time.perf_counter()
            frames = [det.detect("dog", im, args.budget) for im in (image0, image1)]
            t["detect"] += time.perf_counter() - start
            start = time.perf_counter()
            d0, d1 = (describe(desc, im, f) for im, f in zip((image0, image1), frames))
            t["describe"] += time.perf_counter() - start
            start = time.perf_counter()
            m = mutual_nearest(d0, d1, desc.distance)
            t["match"] += time.perf_counter() - start
            p0, p1 = frames[0].xy[m[:, 0]], frames[1].xy[m[:, 1]]
            matches.append(len(m))
            for e in fits:
                start = time.perf_counter()
                if K0 is None:
                    E.estimate_homography(p0, p1, e)
                else:
                    E.estimate_relative_pose(p0, p1, K0, K1, e)
                t[e.method] += time.perf_counter() - start
        per_pair = [1000.0 * t[k] / len(pairs) for k in t]
        print(f"| {spec} | " + " | ".join(f"{v:.1f}" for v in per_pair) + f" | {np.mean(matches):.0f} |")


if __name__ == "__main__":
    main()
