"""fpr95 and the Brown benchmarks' rows: hand-computed FPR95 with ties, HardNet's own function on
random data (numbers pinned from DagnyT/hardnet@35bc1d7 code/EvalMetrics.py, run beside ours in a
scratch folder), train->test cells and flags, and a run through ``desc-bench run``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from desc_bench.adapters.base import Distance
from desc_bench.bench.benchmarks.base import Subject, benchmark, registered
from desc_bench.bench.benchmarks.brown import BrownFeatures, fpr95, training_subsets
from desc_bench.datasets.brown_layout import BrownPairs, BrownSet, BrownSubset, write_subset
from desc_bench.errors import InputError


def test_fpr95_hand_computed_with_ties():
    # 20 matching pairs at distances 1..20; 10 non-matching at 0.5, 5, 10, 19 (tied with the 19th
    # matching pair, the one that reaches 95 % recall), 19.5 and 25 (x5)
    d = np.r_[np.arange(1.0, 21.0), 0.5, 5, 10, 19, 19.5, [25] * 5]
    y = np.r_[np.ones(20, bool), np.zeros(10, bool)]
    # pessimistic ties: the non-matching pair at 19 comes before the threshold pair -> 4 of 10
    assert fpr95(d, y) == 0.4
    assert fpr95(d[::-1], y[::-1]) == 0.4  # the input order does not matter
    fdr = 4 / (4 + 19)  # the false discovery rate of MatchNet/TFeat: never what fpr95 returns
    assert fpr95(d, y) != pytest.approx(fdr)
    # two matching pairs: 95 % recall needs both; non-matching pairs tied with the second count
    assert fpr95([1, 2, 2, 2, 3, 4], [1, 0, 1, 0, 0, 0]) == 0.5
    assert fpr95([1, 2, 3], [0, 1, 1]) == 1.0


@pytest.mark.parametrize(
    "seed, n, separation, hardnet",
    [
        (0, 1000, 1.0, 0.857685009487666),
        (1, 100_000, 2.0, 0.4772972972972973),
        (2, 5001, 0.3, 0.934136546184739),
        (3, 20_000, 3.0, 0.14635615338285485),
    ],
)
def test_fpr95_equals_hardnets_error_rate_at_95_recall(seed, n, separation, hardnet):
    # the values HardNet's ErrorRateAt95Recall(labels, 1 / (d + 1e-8)) printed on these inputs
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.5
    d = np.abs(rng.standard_normal(n) + separation * ~y)
    assert fpr95(d, y) == hardnet


def test_fpr95_refuses_degenerate_input():
    with pytest.raises(InputError, match="matching and non-matching"):
        fpr95([1.0, 2.0], [True, True])
    with pytest.raises(InputError, match="NaN"):
        fpr95([np.nan, 1.0], [True, False])
    with pytest.raises(InputError, match="3 distances but 2 labels"):
        fpr95([1.0, 2.0, 3.0], [True, False])


def test_training_subsets_from_the_weights_text():
    assert training_subsets("Brown liberty, augmented (HardNetLib+)") == {"liberty"}
    assert training_subsets("6Brown (all Brown sets)") == {"liberty", "notredame", "yosemite"}
    assert training_subsets("Brown + HPatches") == {"liberty", "notredame", "yosemite"}
    assert training_subsets("PS dataset") == set() == training_subsets("")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Three 300-patch subsets (points of 3 patches, 2 reference images) and per-patch descriptors
    that make every matching pair closer than every non-matching one except a known few."""
    root = tmp_path_factory.mktemp("brown")
    rng = np.random.default_rng(0)
    subsets, descriptors = [], {}
    for name in ("liberty", "notredame", "yosemite"):
        points = np.arange(300) // 3
        interest = np.stack([points // 50, *np.zeros((4, 300))], 1)
        first = np.arange(0, 300, 3)
        p1, p2 = np.r_[first, first[:-1]], np.r_[first + 1, first[1:]]  # 100 matching, 99 not
        write_subset(root / name, np.zeros((300, 64, 64), np.uint8), points, interest, BrownPairs(p1, p2, None))
        subsets.append(BrownSubset(name, root / name))
        descriptors[name] = (points[:, None] * 10.0 + rng.random((300, 4))).astype(np.float32)
    return BrownSet("brown", tuple(subsets)), descriptors


def _rows(name, data, descriptors, trained_on=frozenset(), training=""):
    bench = benchmark(name)
    subject = Subject("hardnet", "liberty-aug", Distance.L2, "patches")
    features = BrownFeatures(descriptors, trained_on, training, "patches resized 64 -> 32 px (bilinear)")
    return bench.evaluate(features, data, subject, None)


def test_rows_cells_flags_and_mean(tiny):
    data, descriptors = tiny
    rows = _rows("fpr95", data, descriptors, frozenset({"liberty"}), "Brown liberty, augmented")
    assert [(r.subset, r.variant) for r in rows] == [
        ("liberty", "liberty->liberty"),
        ("notredame", "liberty->notredame"),
        ("yosemite", "liberty->yosemite"),
        ("mean", "mean"),
    ]
    assert all(r.value == 0.0 and r.metric == "fpr95" and r.protocol == "fpr95" for r in rows)
    assert "the test subset" in rows[0].notes and "the test subset" not in rows[1].notes
    assert all("64 -> 32 px" in r.notes for r in rows)
    assert "mean of the cells not trained on the test subset" in rows[3].notes
    hand = _rows("fpr95", data, descriptors)  # hand-crafted: columns are the test subsets
    assert [r.variant for r in hand] == ["liberty", "notredame", "yosemite", "mean"]
    assert not any("test subset" in r.notes for r in hand)
    everything = _rows("fpr95", data, descriptors, frozenset({"liberty", "notredame", "yosemite"}), "6Brown")
    assert all("all Brown subsets" in r.notes for r in everything[:3])


def test_fpr95_rows_follow_the_distances(tiny):
    data, descriptors = tiny
    # move one point's patches apart: its matching pair becomes the farthest of all -> the 95 %
    # threshold is still reached before it, so FPR95 stays 0; move six apart: 6 of 100 > 5 %
    moved = {k: v.copy() for k, v in descriptors.items()}
    moved["liberty"][[1, 4, 7, 10, 13, 16]] += 1000.0
    rows = _rows("fpr95", data, moved)
    assert rows[0].value > 0.0 and rows[1].value == 0.0
    assert rows[3].value == pytest.approx(rows[0].value / 3)


def test_snn_rows_name_the_mode(tiny):
    data, descriptors = tiny
    bench_rows = {spec: _rows(spec, data, descriptors) for spec in ("brown-snn-map", "brown-snn-map:mode=fixed")}
    published, fixed = bench_rows["brown-snn-map"], bench_rows["brown-snn-map:mode=fixed"]
    assert {r.metric for r in published} == {"map-published"} and {r.metric for r in fixed} == {"map-fixed"}
    assert fixed[0].value == 1.0  # every anchor's true hardest negative is farther than its positives
    assert "anchors not mined (published rule)" in published[0].notes
    with pytest.raises(InputError, match="valid modes"):
        benchmark("brown-snn-map:mode=other")


def test_registered_for_brown_datasets():
    classes = registered()
    assert classes["fpr95"].accepts == ("brown",) == classes["brown-snn-map"].accepts


def test_run_prints_both_tables(data_dir, tmp_path):
    # a tiny subset in the real layout, run end to end through the command line
    rng = np.random.default_rng(1)
    points = np.arange(520) // 4
    patches = np.clip(rng.normal(128, 40, (130, 64, 64))[points] + rng.normal(0, 12, (520, 64, 64)), 0, 255)
    interest = np.stack([points // 40, *np.zeros((4, 520))], 1)
    p1 = np.r_[np.arange(0, 520, 4), np.arange(0, 516, 4)]
    p2 = np.r_[np.arange(1, 520, 4), np.arange(4, 520, 4)]
    write_subset(data_dir / "brown" / "liberty", patches.astype(np.uint8), points, interest, BrownPairs(p1, p2, None))
    from desc_bench.cli import main

    args = ["run", "-d", "sift-opencv", "--dataset", "brown-liberty", "--protocol", "fpr95,brown-snn-map:mode=fixed"]
    result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "runs"), "--quiet", "--time-batch", "0"])
    assert result.exit_code == 0, result.output
    assert "FPR95 (%, lower is better" in result.output and "SNN-mAP (%, fixed mining" in result.output
    record = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())
    metrics = {(r["protocol"], r["metric"], r["subset"]) for r in record["results"]}
    assert ("fpr95", "fpr95", "liberty") in metrics and ("brown-snn-map", "map-fixed", "mean") in metrics
    assert all(r["error"] is None and 0.0 <= r["value"] <= 1.0 for r in record["results"])
