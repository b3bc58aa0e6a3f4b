"""The benchmarks supply per-unit values: each unit is the score of that unit alone."""

from __future__ import annotations

import numpy as np
import pytest

from desc_bench.adapters.base import Distance
from desc_bench.bench import hpatches_tasks as ht
from desc_bench.bench.benchmarks.base import Subject, benchmark
from desc_bench.bench.benchmarks.pairs import PairResult
from desc_bench.datasets.base import PATCH_TYPES, Split
from desc_bench.datasets.tasks import TaskFiles, generate_task_files

SEQS = ("i_a", "v_b", "i_c", "v_d", "i_e")
COUNTS = {"i_a": 12, "v_b": 10, "i_c": 9, "v_d": 11, "i_e": 8}


def descs(seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for s in SEQS:
        base = rng.normal(size=(COUNTS[s], 6)).astype(np.float32)
        out[s] = {t: base + (t != "ref") * rng.normal(0, 0.8, base.shape).astype(np.float32) for t in PATCH_TYPES}
    return out


def test_matching_units_are_the_scores_of_each_sequence_alone():
    d = descs()
    scores = ht.evaluate_matching(d, Split("x", SEQS), Distance.L2)
    for s in scores:
        assert s.units.kind == "sequence" and s.units.mean() == pytest.approx(s.value)
    mean_all = next(s for s in scores if (s.noise, s.subset) == ("mean", "all"))
    assert mean_all.units.names == SEQS
    for name, unit in zip(mean_all.units.names, mean_all.units.values):
        alone = next(s for s in ht.evaluate_matching(d, Split("x", (name,)), Distance.L2) if s.noise == "mean")
        assert unit == pytest.approx(alone.value)
    hard_i = next(s for s in scores if (s.noise, s.subset) == ("hard", "i"))
    assert hard_i.units.names == ("i_a", "i_c", "i_e")


def test_retrieval_units_are_sequences_weighted_by_their_queries(tmp_path):
    generate_task_files(
        tmp_path, {"x": Split("x", SEQS)}, COUNTS, n_pairs=100, n_queries=15, n_distractors=30, progress=False
    )
    tasks = TaskFiles(tmp_path)
    scores = ht.evaluate_retrieval(descs(1), tasks, Split("x", SEQS), Distance.L2, pool_sizes=(10, 20))
    queries = tasks.queries("x").names()
    for s in scores:
        assert s.units.mean() == pytest.approx(s.value)
        assert dict(zip(s.units.names, s.units.weights)) == {n: float(np.sum(queries == n)) for n in set(queries)}


def test_pair_rows_carry_per_sequence_units_weighted_by_pairs():
    bench = benchmark("mma")
    subject = Subject("x", "none", Distance.L2, "keypoints")
    metrics = tuple(f"mma@{t}" for t in range(1, 11))
    rng = np.random.default_rng(0)
    results = [
        PairResult(seq, seq[0], k, metrics, tuple(np.sort(rng.uniform(size=10))))
        for seq, pairs in (("i_a", 5), ("v_b", 3), ("i_c", 5))
        for k in range(2, 2 + pairs)
    ]
    rows = bench.rows(subject, "set", results, "")
    row = next(r for r in rows if r.metric == "mma@3" and r.subset == "all" and ":pair=" not in r.variant)
    assert row.units.names == ("i_a", "v_b", "i_c") and row.units.weights == (5.0, 3.0, 5.0)
    mine = [r.values[2] for r in results if r.sequence == "v_b"]
    assert row.units.values[1] == pytest.approx(np.mean(mine))
    assert row.value == pytest.approx(np.mean([r.values[2] for r in results]))
