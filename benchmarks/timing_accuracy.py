"""Accuracy and overhead of the timing harness (issue 4), printed as ratios.

1. Agreement: the harness's median per-patch time (``time_patches``) against an independent
   stopwatch: one ``time.monotonic`` reading around N back-to-back ``compute_patches`` calls on
   the same input, divided by N x batch. Done when within 30 %.
   The stopwatch takes the median over 3 blocks of N calls.
2. Overhead: the wall time of a whole ``time_patches`` call against the time spent inside the
   descriptor's calls during it (measured by wrapping ``compute_patches``); the rest is the
   harness's own cost (input generation, memory probes, statistics, thread/TF32 switches).
   Done when under 5 % at batch 256.

Each measurement is taken in ``--rounds`` alternating rounds and the median ratio is reported.

    OMP_NUM_THREADS=2 python benchmarks/timing_accuracy.py --descriptor sift-opencv --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import cv2
import torch

import desc_bench
from desc_bench.bench.timing import calibrate, random_patches, time_patches


def stopwatch_ms(desc, batch: int, calls: int, patch_size: int, blocks: int = 3) -> float:
    """Per-patch milliseconds: clock readings around blocks of ``calls`` back-to-back calls.

    The median over ``blocks`` blocks, so that one block hit by another process does not decide.
    """
    patches = random_patches(batch, patch_size, seed=1)
    desc.compute_patches(patches)  # warm-up
    desc.compute_patches(patches)
    per_block = []
    for _ in range(blocks):
        start = time.monotonic()
        for _ in range(calls):
            desc.compute_patches(patches)
        per_block.append((time.monotonic() - start) * 1000.0 / (calls * batch))
    return statistics.median(per_block)


def overhead(desc, batch: int, repeats: int, warmup: int, patch_size: int) -> tuple[float, float]:
    """(wall ms of time_patches, ms spent inside compute_patches during it)."""
    inner = [0.0]
    real = desc.compute_patches

    def wrapped(x):
        start = time.perf_counter()
        try:
            return real(x)
        finally:
            inner[0] += time.perf_counter() - start

    desc.compute_patches = wrapped  # instance attribute shadows the method
    try:
        start = time.perf_counter()
        time_patches(desc, batch, patch_size, repeats=repeats, warmup=warmup)
        wall = time.perf_counter() - start
    finally:
        del desc.compute_patches
    return wall * 1000.0, inner[0] * 1000.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--descriptor", default="sift-opencv")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", default="1,16,256")
    parser.add_argument("--patch-size", type=int, default=65)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    desc = desc_bench.descriptor(args.descriptor, device=args.device)
    batches = [int(b) for b in args.batch_sizes.split(",")]
    start = time.perf_counter()
    cal = calibrate(args.device)
    print(
        f"calibration: {cal.name}: {cal.median_ms:.2f} ms/repeat "
        f"(whole calibration {1000 * (time.perf_counter() - start):.0f} ms)"
    )
    print(f"{args.descriptor} on {args.device}, {torch.get_num_threads()} threads, {args.rounds} rounds\n")
    print("| batch | harness ms/patch | stopwatch ms/patch | ratio | harness IQR | overhead % | verdict |")
    print("|---|---|---|---|---|---|---|")
    failures = 0
    for batch in batches:
        ratios, overheads, harness, watch, spreads = [], [], [], [], []
        for _ in range(args.rounds):
            row = time_patches(desc, batch, args.patch_size, repeats=args.repeats, warmup=2)
            ref = stopwatch_ms(desc, batch, args.repeats, args.patch_size)
            wall, inside = overhead(desc, batch, args.repeats, 2, args.patch_size)
            harness.append(row.median_ms)
            spreads.append(row.iqr_ms)
            watch.append(ref)
            ratios.append(row.median_ms / ref)
            overheads.append(100.0 * (wall - inside) / wall)
        ratio, over = statistics.median(ratios), statistics.median(overheads)
        ok = abs(ratio - 1.0) <= 0.30 and (batch != 256 or over < 5.0)
        failures += not ok
        print(
            f"| {batch} | {statistics.median(harness):.4f} | {statistics.median(watch):.4f} | {ratio:.3f} | "
            f"{statistics.median(spreads):.4f} | {over:.2f} | {'ok' if ok else 'FAIL'} |"
        )
    print("\ncriteria: |ratio - 1| <= 0.30 at every batch; overhead < 5 % at batch 256")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
