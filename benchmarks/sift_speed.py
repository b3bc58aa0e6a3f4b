"""Speed of the torch SIFT descriptors (issue 3) against their peers, printed as ratios.

Times, for 65x65 patches at batch sizes 1, 16, 256, 1024, 4096 (all in one run, same inputs):
``sift-torch-mp`` and ``sift-torch-vlfeat`` (``compute_patches``, as the harness calls them),
the ``sift-opencv`` adapter (skipped when not registered, CPU only) and kornia's
``SIFTDescriptor(65)``, the closest public peer (called directly under ``inference_mode``).
Per-patch time is the median over repeats of (wall time of one batch) / batch, after warm-up, with
the device synchronised before reading the clock; the spread is the inter-quartile range. The
methods are timed in alternating rounds, so that load changes on a shared machine hit all alike.
``best/s`` is the throughput of the fastest repeat, and the bracketed ratios compare fastest repeats:
on a loaded machine torch's short parallel regions lose the most, and the fastest repeats are the
least disturbed comparison.

Targets on 2 CPU cores at batch 256: >= 5x kornia's throughput and >= 1.5x ``sift-opencv``'s, and
>= 66k patches/s (<= 15 us/patch) with ``--threads 2`` (printed for the median and the fastest repeat).
On an H100 GPU: >= 1M patches/s at batch 4096 (``--device cuda``). ``--memory`` also reports the
peak resident memory added by one batch of 4096, each method in a fresh subprocess.

    OMP_NUM_THREADS=2 python benchmarks/sift_speed.py --threads 2 [--batches 1,16,256] [--memory]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

import desc_bench
from desc_bench.errors import DescBenchError

OURS = ("sift-torch-mp", "sift-torch-vlfeat")
OPENCV = "sift-opencv"
KORNIA = "kornia-SIFTDescriptor"
TARGETS = {KORNIA: 5.0, OPENCV: 1.5}  # throughput ratio at batch 256 (CPU)
TARGET_RATE = 66_000  # patches/s at batch 256 on 2 CPU threads (<= 15 us/patch; issue 18)
PATCH = 65


@dataclass(frozen=True)
class Timing:
    method: str
    batch: int
    ms_per_patch: float  # median
    iqr_ms: float
    patches_per_s: float  # from the median
    best_ms: float  # fastest repeat: the least disturbed by other processes on a shared machine


def random_patches(count: int, size: int = PATCH, seed: int = 0) -> torch.Tensor:
    """Smooth random texture, float32 0..255, (count, 1, size, size); whole-valued like 8-bit images."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(count, 1, size + 4, size + 4, generator=generator)
    return (torch.nn.functional.avg_pool2d(noise, 5, stride=1) * 255.0).round()


def build(method: str, device: str) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A callable describing (B, 1, 65, 65) patches, or None when the method is not available."""
    if method == KORNIA:
        try:
            from kornia.feature import SIFTDescriptor
        except ImportError:
            return None
        net = SIFTDescriptor(PATCH, rootsift=False).to(device)

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return net(x.to(device))

        return run
    if device != "cpu" and method == OPENCV:
        return None
    try:
        desc = desc_bench.descriptor(method, device=device)
    except DescBenchError:  # not registered (yet) or not available here
        return None
    return desc.compute_patches


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_batch(runners: dict, x: torch.Tensor, device: str, min_time: float, max_repeats: int) -> dict:
    """Per method: median, IQR and minimum of per-patch milliseconds.

    Methods are timed in alternating rounds (one call each per round), so that a change in the
    machine's load during the run affects all of them alike and the ratios stay fair.
    """
    for run in runners.values():  # warm-up (twice: caches, allocator, lazy init)
        run(x)
        run(x)
    sync(device)
    samples: dict[str, list[float]] = {m: [] for m in runners}
    started = time.perf_counter()
    rounds = 0
    while rounds < max_repeats and (rounds < 3 or time.perf_counter() - started < min_time * len(runners)):
        for m, run in runners.items():
            sync(device)
            start = time.perf_counter()
            run(x)
            sync(device)
            samples[m].append((time.perf_counter() - start) * 1000.0 / len(x))
        rounds += 1
    out = {}
    for m, values in samples.items():
        quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
        out[m] = (statistics.median(values), quartiles[2] - quartiles[0], min(values))
    return out


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def peak_memory_child(method: str, device: str, batch: int) -> None:
    """Run in a subprocess: print the peak RSS (MiB) added by describing one batch (Linux)."""
    run = build(method, device)
    if run is None:
        print(json.dumps(None))
        return
    run(random_patches(1))
    x = random_patches(batch)
    try:
        with open("/proc/self/clear_refs", "w") as refs:  # reset the peak (VmHWM) to the current RSS
            refs.write("5")
        before = _status_kib("VmRSS")
        run(x)
        added = _status_kib("VmHWM") - before
    except OSError:  # not Linux: the lifetime peak, an upper bound
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        run(x)
        added = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"added_mib": added / 1024.0, "input_mib": x.numel() * 4 / 2**20}))


def peak_memory(method: str, device: str, batch: int, threads: int) -> dict | None:
    cmd = [
        sys.executable,
        __file__,
        "--child-memory",
        method,
        "--device",
        device,
        "--threads",
        str(threads),
        "--batches",
        str(batch),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (pinned)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default="1,16,256,1024,4096")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds of repeats per point")
    parser.add_argument("--max-repeats", type=int, default=50)
    parser.add_argument("--memory", action="store_true", help="peak RSS of one batch of 4096 (CPU)")
    parser.add_argument("--child-memory", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    if args.child_memory:
        peak_memory_child(args.child_memory, args.device, batches[-1])
        return

    methods = [*OURS, OPENCV, KORNIA]
    runners = {m: build(m, args.device) for m in methods}
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(
        f"torch {torch.__version__}, device {args.device} ({device_name}), "
        f"torch threads pinned to {torch.get_num_threads()}, 65x65 patches"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > (os.cpu_count() or 1) + 0.5:  # the 1-minute average also counts earlier runs of this script
        print(
            f"WARNING: load average {load:.1f} on {os.cpu_count()} cores. When other processes compete for "
            "the cores, torch's OpenMP ops (many short parallel regions) slow down far more than the "
            "peers: rerun on a quiet machine if the ratios look off."
        )
    for m, run in runners.items():
        if run is None:
            print(f"  {m}: not available here, skipped")
    runners = {m: r for m, r in runners.items() if r is not None}

    results: dict[tuple[str, int], Timing] = {}
    print(f"\n{'method':24s} {'batch':>6s} {'ms/patch':>10s} {'IQR':>9s} {'patches/s':>11s} {'best/s':>11s}")
    for batch in batches:
        x = random_patches(batch, seed=batch)
        if args.device != "cpu":
            x = x.to(args.device)
        for m, (median, iqr, best) in time_batch(runners, x, args.device, args.min_time, args.max_repeats).items():
            t = Timing(m, batch, median, iqr, 1000.0 / median, best)
            results[(m, batch)] = t
            print(f"{m:24s} {batch:6d} {median:10.4f} {iqr:9.4f} {t.patches_per_s:11.0f} {1000.0 / best:11.0f}")
        print()

    print("throughput ratios (ours / peer, same run; medians, and in brackets the fastest repeats):")
    for batch in batches:
        for ours in OURS:
            if (ours, batch) not in results:
                continue
            parts = []
            for peer in (KORNIA, OPENCV):
                if (peer, batch) in results:
                    ratio = results[(ours, batch)].patches_per_s / results[(peer, batch)].patches_per_s
                    best_ratio = results[(peer, batch)].best_ms / results[(ours, batch)].best_ms
                    mark = ""
                    if batch == 256 and args.device == "cpu":
                        mark = " ok" if ratio >= TARGETS[peer] else f" BELOW TARGET {TARGETS[peer]}x"
                    parts.append(f"{ratio:6.2f}x ({best_ratio:5.2f}x) {peer}{mark}")
            print(f"  batch {batch:5d} {ours:18s} " + ", ".join(parts))
    if args.device == "cpu" and args.threads == 2 and 256 in batches:
        print(f"absolute target at batch 256 on 2 threads: >= {TARGET_RATE:,} patches/s")
        for ours in OURS:
            if (ours, 256) in results:
                t = results[(ours, 256)]
                best = 1000.0 / t.best_ms
                verdict = "BELOW TARGET"
                if t.patches_per_s >= TARGET_RATE:
                    verdict = "ok"
                elif best >= TARGET_RATE:
                    verdict = "ok for the fastest repeat only"
                print(f"  {ours:18s} median {t.patches_per_s:8,.0f}/s, fastest repeat {best:8,.0f}/s: {verdict}")
    if args.device.startswith("cuda") and any(b == 4096 for b in batches):
        for ours in OURS:
            rate = results[(ours, 4096)].patches_per_s
            print(
                f"  {ours} at batch 4096 on {device_name}: {rate / 1e6:.2f} M patches/s "
                f"({'ok' if rate >= 1e6 else 'below the 1M/s target'})"
            )

    if args.memory:
        print("\npeak resident memory added by one batch of 4096 (fresh subprocess per method):")
        for m in runners:
            mem = peak_memory(m, args.device, 4096, args.threads)
            if mem is None:
                print(f"  {m:24s} (failed)")
            else:
                print(f"  {m:24s} {mem['added_mib']:8.1f} MiB (the input itself is {mem['input_mib']:.1f} MiB)")


if __name__ == "__main__":
    main()
