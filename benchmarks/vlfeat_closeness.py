"""How close ``sift-torch-vlfeat`` is to the real VLFeat SIFT (``sift-vlfeat``), and how fast that is (issue 11).

Prints, in one run:

1. Descriptor differences on the same real HPatches patches (default: the 1,123 patches of
   ``../shared/data/hpatches-patches-sample/likely_v_graffiti/ref.png``). The two descriptors use
   different layouts and scales, so they are compared in VLFeat's: ``sift-torch-vlfeat`` (unit norm,
   angle-major) is reordered by ``TORCH_TO_VLFEAT`` and set against
   ``sift-vlfeat:float_descriptors=true`` divided by 512 (VLFeat's unit descriptor, before its
   uint8 quantisation); and in VLFeat's uint8 units, against ``sift-vlfeat`` itself with the torch
   descriptor quantised as the MEX does (``uint8(min(512 d, 255))``). Max and mean absolute
   difference, and the mean cosine. The comparison without reordering is printed for scale.
2. Matching mAP (python protocol, split full) of both on ``hpatches-synth`` through
   ``desc_bench.run(..., tasks=("matching",), output=None)``.
3. Throughput of ``sift-vlfeat`` against ``sift-opencv`` on the same patches (``compute_patches``,
   batches of ``--batch``): median over alternating rounds, so that load changes on a shared machine
   hit both alike; the ratio is the result, absolute times are for this machine only.

    OMP_NUM_THREADS=2 python benchmarks/vlfeat_closeness.py [--patches PNG] [--batch 256] [--rounds 7]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import desc_bench
from desc_bench.adapters.registry import descriptor_class
from desc_bench.adapters.sift_vlfeat import TORCH_TO_VLFEAT

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PATCHES = ROOT.parent / "shared" / "data" / "hpatches-patches-sample" / "likely_v_graffiti" / "ref.png"
OURS, PEER, IMITATION = "sift-vlfeat", "sift-opencv", "sift-torch-vlfeat"


def load_patches(path: Path) -> torch.Tensor:
    """An HPatches patch file (65 px wide, N x 65 tall, gray) -> (N, 1, 65, 65) float32 0..255."""
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        sys.exit(f"cannot read the HPatches patch file {path}; pass --patches PATH to an HPatches ref.png")
    size = image.shape[1]
    if image.shape[0] % size:
        sys.exit(f"{path} is {image.shape[1]}x{image.shape[0]}: not a stack of {size} px square patches")
    return torch.from_numpy(image.reshape(-1, 1, size, size).astype(np.float32))


def _stats(a: np.ndarray, b: np.ndarray) -> str:
    diff = np.abs(a - b)
    return f"max {diff.max():.4f}  mean {diff.mean():.5f}"


def closeness(patches: torch.Tensor) -> None:
    vl_float = desc_bench.descriptor(f"{OURS}:float_descriptors=true").compute_patches(patches).numpy()
    vl_uint8 = desc_bench.descriptor(OURS).compute_patches(patches).numpy()
    imitation = desc_bench.descriptor(IMITATION).compute_patches(patches).numpy()
    unit = vl_float / 512.0
    reordered = imitation[:, TORCH_TO_VLFEAT]
    quantised = np.minimum(np.float32(512.0) * reordered, 255).astype(np.uint8).astype(np.float32)
    cosine = (unit * reordered).sum(1) / np.linalg.norm(unit, axis=1)
    print(f"## 1. {IMITATION} vs {OURS} on {len(patches)} patches of {patches.shape[-1]} px\n")
    lines = {
        "unit descriptors, VLFeat layout": f"{_stats(reordered, unit)}  (mean cosine {cosine.mean():.4f})",
        "uint8 units (as the MEX stores)": f"{_stats(quantised, vl_uint8)}  (of 0..255)",
        "unit, without reordering (scale)": _stats(imitation, unit),
        f"{OURS}'s own uint8 quantisation": _stats(vl_uint8 / 512.0, unit),
    }
    for label, text in lines.items():
        print(f"{label + ':':<40}{text}")
    print()


def matching_map() -> None:
    result = desc_bench.run([OURS, IMITATION], "hpatches-synth", tasks=("matching",), output=None, progress=False)
    print("## 2. matching mAP on hpatches-synth (python protocol, split full, %)\n")
    print(f"{'descriptor':<20} {'easy':>7} {'hard':>7} {'tough':>7} {'mean':>7}")
    for name in (OURS, IMITATION):
        rows = {
            r.noise: r.value
            for r in result.record.results
            if r.descriptor == name and r.task == "matching" and r.subset == "all" and r.error is None
        }
        errors = [r.error for r in result.record.results if r.descriptor == name and r.error]
        if errors:
            print(f"{name:<20} error: {errors[0]}")
            continue
        cells = " ".join(f"{100 * rows[k]:7.2f}" for k in ("easy", "hard", "tough", "mean"))
        print(f"{name:<20} {cells}")
    print()


def speed(patches: torch.Tensor, batch: int, rounds: int) -> None:
    methods = {name: desc_bench.descriptor(name).compute_patches for name in (OURS, PEER)}
    chunks = list(patches.split(batch))
    for run in methods.values():  # warm-up
        run(chunks[0])
    seconds: dict[str, list[float]] = {name: [] for name in methods}
    for index in range(rounds):
        order = list(methods) if index % 2 == 0 else list(reversed(methods))
        for name in order:
            start = time.perf_counter()
            for chunk in chunks:
                methods[name](chunk)
            seconds[name].append(time.perf_counter() - start)
    rate = {name: len(patches) / statistics.median(times) for name, times in seconds.items()}
    print(f"## 3. speed, batch {batch}, {torch.get_num_threads()} threads, median of {rounds} alternating rounds\n")
    for name, value in rate.items():
        print(f"{name:<20} {value:9.0f} patches/s")
    print(f"ratio {OURS} / {PEER}: {rate[OURS] / rate[PEER]:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=Path, default=DEFAULT_PATCHES, help="an HPatches patch file (ref.png)")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--skip-map", action="store_true", help="leave out the hpatches-synth run (minutes)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    problem = descriptor_class(OURS).availability()
    if problem:
        sys.exit(f"{OURS}: {problem}")
    patches = load_patches(args.patches)
    closeness(patches)
    if not args.skip_map:
        matching_map()
    speed(patches, args.batch, args.rounds)


if __name__ == "__main__":
    main()
