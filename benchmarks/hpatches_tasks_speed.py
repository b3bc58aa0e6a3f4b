"""Speed of the HPatches patch tasks at the real HPatches size.

Builds random 128-D float32 descriptors for 116 sequences with the real patch counts
(``../shared/data/hpatches-tasks/patch_counts_from_retrieval_files.csv`` when present, else a fixed
table of the same size and spread), task files for the ``full`` split from the official generator
(1M verification pairs per file, 10,000 queries, 20,000 distractors; cached in --tasks-dir), then
times verification, matching and retrieval (python protocol). Target: all three in at most 20 s on
2 cores (OMP_NUM_THREADS=2); the last lines say whether it was met, with the load average and the
peak memory of the process.

Peer: the official python code evaluates pair by pair and query by query. A literal loop in that style
(scipy distances per pair/matrix, the official tpfp/trapz per list) is timed on a sample and
extrapolated, and the ratio is printed.

    OMP_NUM_THREADS=2 python benchmarks/hpatches_tasks_speed.py [--tasks-dir DIR] [--skip-peer]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import numpy as np

from desc_bench.bench import bf16_screen
from desc_bench.bench import hpatches_tasks as ht
from desc_bench.bench.hpatches_common import type_name
from desc_bench.bench.metrics import average_precision
from desc_bench.datasets.base import PATCH_TYPES, Split
from desc_bench.datasets.tasks import TaskFiles, generate_task_files

TARGET_S = 20.0
ROOT = Path(__file__).resolve().parents[1]
COUNTS_CSV = ROOT.parent / "shared" / "data" / "hpatches-tasks" / "patch_counts_from_retrieval_files.csv"
SPLITS_JSON = ROOT.parent / "shared" / "data" / "hpatches-tasks" / "splits" / "splits.json"


def patch_counts() -> tuple[dict[str, int], str]:
    if COUNTS_CSV.is_file():
        import pandas as pd

        frame = pd.read_csv(COUNTS_CSV)
        counts = {
            s: int(e) if e == e else int(lb)
            for s, lb, e in zip(frame["sequence"], frame["n_patches_lower_bound"], frame["n_patches_exact"])
        }
        return counts, str(COUNTS_CSV)
    rs = np.random.RandomState(0)  # fixed table: 116 sequences, about 157k patches as in HPatches
    names = [f"i_seq{k:02d}" for k in range(57)] + [f"v_seq{k:02d}" for k in range(59)]
    return {n: int(c) for n, c in zip(names, rs.randint(345, 2000, size=116))}, "fixed table"


def full_split(counts: dict[str, int]) -> Split:
    if SPLITS_JSON.is_file():
        from desc_bench.datasets.base import read_splits

        split = read_splits(SPLITS_JSON)["full"]
        if set(split.test) <= set(counts):
            return split
    return Split("full", tuple(counts))


def random_descs(counts: dict[str, int], dim: int = 128) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    noise = {"r": 0.0, "e": 0.9, "h": 1.2, "t": 1.5}  # by first letter of the type
    descs = {}
    for seq, n in counts.items():
        base = rng.standard_normal((n, dim), dtype=np.float32)
        descs[seq] = {}
        for t in PATCH_TYPES:
            d = base + np.float32(noise[t[0]]) * rng.standard_normal((n, dim), dtype=np.float32)
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            descs[seq][t] = d
    return descs


def peer_estimates(descs, tasks: TaskFiles, split: Split) -> dict[str, float]:
    """Seconds the official-style loops would take, from timed samples."""
    from scipy.spatial import distance as sd

    est = {}
    pos = tasks.pairs("pos", split.name)
    names = pos.sequences
    sample = 20_000
    t0 = time.perf_counter()
    for r in range(sample):  # one pair at a time, 3 noise levels, as get_verif_dists
        for noise in "eht":
            a = descs[names[pos.s1[r]]][type_name(noise, int(pos.t1[r]))][pos.idx1[r]]
            b = descs[names[pos.s2[r]]][type_name(noise, int(pos.t2[r]))][pos.idx2[r]]
            sd.euclidean(a, b)
    est["verification"] = (time.perf_counter() - t0) * 3 * len(pos) / sample
    seqs = split.test[:3]
    t0 = time.perf_counter()
    for seq in seqs:  # scipy cdist + argmin + AP per image, as eval_matching
        ref = descs[seq]["ref"]
        for noise in "eht":
            for i in range(1, 6):
                dist = sd.cdist(ref, descs[seq][f"{noise}{i}"], "euclidean")
                nn = dist.argmin(1)
                average_precision(-dist[np.arange(len(ref)), nn], nn == np.arange(len(ref)), numpos=len(ref))
    per_patch = (time.perf_counter() - t0) / sum(len(descs[s]["ref"]) ** 2 for s in seqs)
    est["matching"] = per_patch * sum(len(descs[s]["ref"]) ** 2 for s in split.test)
    q, d = tasks.queries(split.name), tasks.distractors(split.name)
    d_desc = np.stack([descs[q_s]["ref"][i] for q_s, i in zip(d.names(), d.idx)])
    d_names = d.names()
    nq = 30
    t0 = time.perf_counter()
    for k in range(nq):  # one query at a time: distances, 3 noises x 7 pools of tpfp/trapz
        seq, idx = q.names()[k], q.idx[k]
        row = sd.cdist(descs[seq]["ref"][idx][None], d_desc, "euclidean")[0][d_names != seq]
        for noise in "eht":
            p = [sd.euclidean(descs[seq]["ref"][idx], descs[seq][f"{noise}{i}"][idx]) for i in range(1, 6)]
            scores = -np.concatenate((p, row))
            labels = np.r_[np.ones(5), np.zeros(len(row))]
            for pool in ht.POOL_SIZES:
                average_precision(scores[:pool], labels[:pool])
    est["retrieval"] = (time.perf_counter() - t0) * len(q) / nq
    return est


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks-dir", type=Path, default=Path.home() / ".cache" / "desc-bench" / "bench-hpatches-tasks")
    ap.add_argument("--skip-peer", action="store_true", help="do not time the loop-style peer")
    args = ap.parse_args()

    counts, source = patch_counts()
    split = full_split(counts)
    print(
        f"patch counts: {source}; {len(split.test)} sequences, {sum(counts[s] for s in split.test)} patches x 16 types"
    )
    tasks = TaskFiles(args.tasks_dir)
    if not (tasks.has("neg_inter", "full") and tasks.has("distractors", "full")):
        t0 = time.perf_counter()
        generate_task_files(args.tasks_dir, {"full": split}, counts, split_names=["full"], progress=True)
        print(f"generated task files in {time.perf_counter() - t0:.1f} s -> {args.tasks_dir}")
    t0 = time.perf_counter()
    descs = random_descs({s: counts[s] for s in split.test})
    print(f"random descriptors built in {time.perf_counter() - t0:.1f} s")
    for kind in ("pos", "neg_intra", "neg_inter"):
        tasks.pairs(kind, "full")
    tasks.queries("full"), tasks.distractors("full")

    screen = "bfloat16 (hardware)" if bf16_screen.available() else "float32"
    print(f"screens: {screen}; load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    timings = {}
    for task in ht.TASKS:
        t0 = time.perf_counter()
        scores = ht.evaluate_all(descs, tasks, split, "l2", which=(task,), progress=False)
        timings[task] = time.perf_counter() - t0
        print(f"{task:12s} {timings[task]:7.1f} s   headline {ht.headline(scores, task).value:.4f}")
    total = sum(timings.values())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    print(f"{'total':12s} {total:7.1f} s   peak memory {peak:.2f} GiB")
    ratio = ""
    if not args.skip_peer:
        est = peer_estimates(descs, tasks, split)
        for task in ht.TASKS:
            print(
                f"peer (official-style loop, extrapolated) {task:12s} {est[task]:8.0f} s   ratio {est[task] / timings[task]:6.1f}x"  # noqa: E501
            )
        print(f"peer total {sum(est.values()):8.0f} s   ratio {sum(est.values()) / total:6.1f}x")
        ratio = f"; peer ratio {sum(est.values()) / total:.1f}x"
    parts = ", ".join(f"{task} {timings[task]:.1f} s" for task in ht.TASKS)
    verdict = "met" if total <= TARGET_S else "NOT met"
    load = os.getloadavg()[0]
    print(f"target <= {TARGET_S:.0f} s: {verdict} ({total:.1f} s = {parts}{ratio}; load average after {load:.2f})")


if __name__ == "__main__":
    main()
