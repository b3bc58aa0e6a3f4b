"""Cost of the pooled-statistic intervals (bench/bootstrap.py) against the evaluation they follow.

Simulated distances at two sizes, no descriptors: HPatches verification (three pair files of
``--pairs`` pairs over ``--sequences`` sequences: 30,000 / 16 is hpatches-synth, 1,000,000 / 116 the
real release) and Brown FPR95 (``--brown`` pairs per subset, three subsets: 10,000 is brown-synth,
100,000 the real test files). For each, the time of the protocol's own numbers (the peer: what the
benchmark computes anyway) and of the intervals of all its rows, per row, with the ratio.

    OMP_NUM_THREADS=2 python benchmarks/pooled_interval_speed.py [--pairs 1000000 --sequences 116 --brown 100000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from desc_bench.bench.benchmarks.brown import fpr95
from desc_bench.bench.bootstrap import Bootstrap, fpr_interval
from desc_bench.bench.hpatches_tasks import IMBALANCED_RATIO, _Pooled
from desc_bench.bench.metrics import block, block_ap, block_auc
from desc_bench.datasets.tasks import PairList

NOISES = ("e", "h", "t")


def pair_list(rng, names, n) -> PairList:
    s = rng.integers(0, len(names), n)
    zero = np.zeros(n, np.int64)
    return PairList(tuple(names), s, zero, zero, s, zero, zero)


def verification(pairs: int, sequences: int, ci: Bootstrap) -> tuple[float, float, int]:
    rng = np.random.default_rng(0)
    names = [f"s{i:03d}" for i in range(sequences)]
    lists = {k: pair_list(rng, names, pairs) for k in ("pos", "neg_intra", "neg_inter")}
    hard = rng.normal(0, 0.3, sequences)
    dists = {}
    for i, noise in enumerate(NOISES):
        dists[noise, "pos"] = rng.normal(1 + 0.3 * i, 0.5, pairs) + hard[lists["pos"].s1]
        dists[noise, "neg_intra"] = rng.normal(2.0, 0.5, pairs)
        dists[noise, "neg_inter"] = rng.normal(2.3, 0.5, pairs)
    start = time.perf_counter()  # the peer: the protocol's 12 numbers (python: trapezoid AP, AUC)
    raw = {}
    n_pos = int(pairs * IMBALANCED_RATIO)
    for noise in NOISES:
        pos = block(-dists[noise, "pos"])
        for variant in ("intra", "inter"):
            neg = block(-dists[noise, f"neg_{variant}"])
            raw[noise, variant, "auc"] = block_auc(neg, pos)
            raw[noise, variant, "ap"] = block_ap(neg, block(-dists[noise, "pos"][:n_pos]))
    peer = time.perf_counter() - start
    pooled = _Pooled(lists, dists, True, ci)
    for (noise, variant, metric), _ in raw.items():
        pooled.spans[noise, variant, metric] = (pairs, pairs if metric == "auc" else n_pos)
    start = time.perf_counter()
    rows = 0
    for metric in ("ap", "auc"):
        for ns in [(n,) for n in NOISES] + [NOISES]:
            for vs in (("intra",), ("inter",), ("intra", "inter")):
                parts = [(n, v) for n in ns for v in vs]
                value = float(np.mean([raw[n, v, metric] for n, v in parts]))
                pooled.interval(metric, parts, value)(("row", metric, ns, vs))
                rows += 1
    return peer, time.perf_counter() - start, rows


def brown(pairs: int, ci: Bootstrap) -> tuple[float, float, int]:
    rng = np.random.default_rng(1)
    samples = []
    for _ in range(3):
        y = np.r_[np.ones(pairs // 2, bool), np.zeros(pairs - pairs // 2, bool)]
        samples.append((np.where(y, rng.normal(0, 1, pairs), rng.normal(2, 1, pairs)), y))
    start = time.perf_counter()
    values = [fpr95(d, y) for d, y in samples]
    peer = time.perf_counter() - start
    start = time.perf_counter()
    for i, s in enumerate(samples):
        fpr_interval([s], 0.95, ci, ("subset", i), values[i])
    fpr_interval(samples, 0.95, ci, ("mean",), float(np.mean(values)))
    return peer, time.perf_counter() - start, 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=30_000)
    parser.add_argument("--sequences", type=int, default=16)
    parser.add_argument("--brown", type=int, default=10_000)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    ci = Bootstrap(args.resamples)
    for name, (peer, added, rows) in (
        (
            f"verification {args.pairs:,} pairs x 3, {args.sequences} sequences",
            verification(args.pairs, args.sequences, ci),
        ),
        (f"fpr95 {args.brown:,} pairs x 3 subsets", brown(args.brown, ci)),
    ):
        print(
            f"{name}: protocol {peer:.3f} s; intervals of {rows} rows {added:.3f} s ({added / rows:.3f} s/row, "
            f"{args.resamples} resamples); intervals / protocol = {added / max(peer, 1e-9):.2f}x"
        )


if __name__ == "__main__":
    main()
