"""CPU throughput of our HardNet against kornia's HardNet, measured in the same run.

Both networks get the same weights (seeded random weights in the upstream layout: speed does not
depend on the values) and the same 32x32 patches; each is timed on its forward pass including its
per-patch standardisation, under ``torch.inference_mode``. Ours folds the batch norms into the
convolutions and runs channels-last; kornia's runs its module as published.

    OMP_NUM_THREADS=2 python benchmarks/learned_speed.py [--batch 256] [--repeats 30] [--threads 2]

Prints patches/s for both and the ratio ours / kornia (>= 1 means ours is at least as fast).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def timed(fn, x: torch.Tensor, repeats: int, warmup: int = 5) -> list[float]:
    with torch.inference_mode():
        for _ in range(warmup):
            fn(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from kornia.feature import HardNet as KorniaHardNet

    from desc_bench.adapters.hardnet import HardNet
    from desc_bench.adapters.prepare import normalise
    from desc_bench.adapters.weights import random_state

    ours = HardNet(weights="random")
    state = random_state(HardNet.expected_shapes())
    reference = KorniaHardNet(pretrained=False)
    reference.load_state_dict(state)
    reference.eval()
    ours.build(state)  # identical weights in both

    x = torch.rand(args.batch, 1, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        diff = (ours.describe_patches(normalise(x, ours.input)) - reference(x)).abs().max().item()

    def run_ours(batch):
        return ours.describe_patches(normalise(batch, ours.input))

    rows = {}
    # interleave the two so that load from other processes affects both alike
    for _ in range(3):
        for name, fn in (("ours", run_ours), ("kornia", reference)):
            rows.setdefault(name, []).extend(timed(fn, x, args.repeats // 3 or 1))
    print(
        f"HardNet CPU forward, batch {args.batch}, {args.threads} threads, torch {torch.__version__}; "
        f"max |ours - kornia| = {diff:.2e}"
    )
    rate = {}
    for name, times in rows.items():
        median = statistics.median(times)
        q = statistics.quantiles(times, n=4)
        rate[name] = args.batch / median
        print(
            f"  {name:7s} median {median * 1e3:8.2f} ms  IQR {(q[2] - q[0]) * 1e3:6.2f} ms  {rate[name]:10.0f} patches/s"  # noqa: E501
        )
    print(f"  ratio ours / kornia: {rate['ours'] / rate['kornia']:.2f}x")


if __name__ == "__main__":
    main()
