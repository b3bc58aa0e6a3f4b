"""Intervals of pooled statistics (bench/bootstrap.py): coverage on simulated data with a known
truth, exactness of the recomputation, and the same seed giving the same interval."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from desc_bench.bench.benchmarks.brown import fpr95
from desc_bench.bench.bootstrap import (
    MAX_BINS,
    Bootstrap,
    RankedList,
    fpr_at_recall_resamples,
    fpr_interval,
    pooled_interval,
)
from desc_bench.bench.estimators import error_auc, error_auc_shares
from desc_bench.bench.metrics import block, block_ap, block_auc


def clustered_pairs(rng, units: int, per_unit: int = 30):
    """Pair distances grouped in units, each unit with its own difficulty (positives shifted by it):
    items of a unit are not independent, so only a bootstrap over units covers the truth."""
    shift = rng.normal(0.0, 0.8, units)
    unit_of = np.repeat(np.arange(units), per_unit)
    d_pos = rng.normal(0.0, 1.0, units * per_unit) + shift[unit_of]
    d_neg = rng.normal(2.0, 1.0, units * per_unit)
    return d_pos, d_neg, unit_of


def pooled_ap(d_pos, d_neg):
    return block_ap(block(-d_neg), block(-d_pos))


def ranked(d_pos, d_neg, unit_of, units, **kw):
    labels = np.r_[np.zeros(len(d_neg), bool), np.ones(len(d_pos), bool)]
    return RankedList.of(-np.r_[d_neg, d_pos], labels, np.r_[unit_of, unit_of], units, **kw)


def test_ranked_list_recomputes_the_protocols_ap_and_auc_exactly():
    rng = np.random.default_rng(0)
    d_pos, d_neg = np.round(rng.normal(0, 1, 700), 1), np.round(rng.normal(1.5, 1, 900), 1)  # many exact ties
    unit_of = rng.integers(0, 7, 900)
    ones = np.ones((1, 7), np.float32)
    for python in (True, False):  # python: ties to the negatives, trapezoid AP; matlab: to the positives, VLFeat
        r = ranked(d_pos, d_neg[:700], unit_of[:700], 7, negatives_first=python, bins=10**6)
        kind = "trapezoid" if python else "vlfeat"
        neg, pos = block(-d_neg[:700]), block(-d_pos)
        assert r.ap(ones, kind)[0] == pytest.approx(block_ap(neg, pos, python, kind), abs=1e-6)
        assert r.auc(ones)[0] == pytest.approx(block_auc(neg, pos, python), abs=1e-6)
    # weights count a unit's items that often: weight 2 on a unit is the list with its items twice
    counts = np.ones((1, 7), np.float32)
    counts[0, 3] = 2
    twice = unit_of[:700] == 3
    r = ranked(d_pos, d_neg[:700], unit_of[:700], 7, bins=10**6)
    expected = block_auc(block(-np.r_[d_neg[:700], d_neg[:700][twice]]), block(-np.r_[d_pos, d_pos[twice]]))
    assert r.auc(counts)[0] == pytest.approx(expected, abs=1e-6)


def test_each_resample_is_computed_from_its_own_weights_alone():
    """Resamples are computed in blocks that fit in the CPU cache: a resample's AP and AUC are the
    same alone as among 300 others (3 blocks of a 1024-bin list), and its curves are the cumulative
    sums of its steps exactly."""
    rng = np.random.default_rng(3)
    d_pos, d_neg, unit_of = clustered_pairs(rng, 9, per_unit=400)
    r = ranked(d_pos, d_neg, unit_of, 9)
    assert r.items == MAX_BINS
    counts = rng.multinomial(9, np.full(9, 1 / 9), 300).astype(np.float32)
    for value in (lambda c: r.ap(c), lambda c: r.ap(c, "vlfeat"), r.auc):
        together = value(counts)
        assert together.shape == (300,)
        assert np.array_equal(together, np.concatenate([value(counts[i : i + 1]) for i in range(300)]))
    tp, fp, step = r.curves(counts)
    assert np.array_equal(tp, np.cumsum(step, axis=1)) and np.array_equal(fp, np.cumsum(counts @ r.neg.T, axis=1))


def test_cluster_bootstrap_of_a_pooled_ap_covers_the_truth_about_95_percent():
    """80 simulated datasets of 30 units: the 95 % interval of the pooled AP covers the AP of a very
    large sample (the truth) in about 95 % of them; resampling the items instead (ignoring the units)
    covers it far less often, so the tolerance can fail."""
    rng = np.random.default_rng(1)
    truth = pooled_ap(*clustered_pairs(rng, 8000)[:2])
    ci = Bootstrap(200, 0.95, 0)
    trials, units = 80, 30
    covered = naive = 0
    for trial in range(trials):
        d_pos, d_neg, unit_of = clustered_pairs(rng, units)
        r = ranked(d_pos, d_neg, unit_of, units, bins=256)
        value = pooled_ap(d_pos, d_neg)
        low, high = pooled_interval(r.ap, units, ci, (trial,), "sequence", "AP", value=value).interval
        covered += low <= truth <= high
        if trial % 2:  # each pair its own unit: the wrong bootstrap here (on half the trials)
            items = np.arange(len(unit_of))
            r_items = ranked(d_pos, d_neg, items, len(items), bins=64)
            low, high = pooled_interval(r_items.ap, len(items), ci, (trial,), "pair", "AP", value=value).interval
            naive += low <= truth <= high
    assert 0.87 <= covered / trials <= 1.0, covered / trials
    assert naive / (trials // 2) < 0.8, naive / (trials // 2)


def test_fpr95_resamples_match_a_brute_force_bootstrap():
    """The O(resamples) draw has the distribution of recomputing fpr95 on resampled pairs."""
    rng = np.random.default_rng(2)
    d = np.r_[rng.normal(0, 1, 150), rng.normal(1.5, 1, 150)]
    y = np.r_[np.ones(150, bool), np.zeros(150, bool)]
    fast = fpr_at_recall_resamples(d, y, 0.95, 4000, rng)
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
    slow = []
    for _ in range(1500):
        pick = np.r_[rng.choice(pos, len(pos)), rng.choice(neg, len(neg))]
        slow.append(fpr95(d[pick], y[pick]))
    assert np.mean(fast) == pytest.approx(np.mean(slow), abs=0.01)
    assert np.std(fast) == pytest.approx(np.std(slow), rel=0.12)
    assert np.percentile(fast, 97.5) == pytest.approx(np.percentile(slow, 97.5), abs=0.03)


def test_fpr95_interval_covers_the_true_rate_about_95_percent():
    """Matching distances N(0, 1), non-matching N(2, 1): FPR95 = Phi(1.645 - 2) = 0.361."""
    truth = norm.cdf(norm.ppf(0.95) - 2.0)
    rng = np.random.default_rng(3)
    ci = Bootstrap(400, 0.95, 0)
    trials, covered = 200, 0
    for trial in range(trials):
        d = np.r_[rng.normal(0, 1, 1000), rng.normal(2, 1, 1000)]
        y = np.r_[np.ones(1000, bool), np.zeros(1000, bool)]
        low, high = fpr_interval([(d, y)], 0.95, ci, (trial,), fpr95(d, y)).interval
        covered += low <= truth <= high
    assert 0.9 <= covered / trials <= 0.99, covered / trials


def test_same_seed_same_interval_other_seed_or_row_other_interval():
    rng = np.random.default_rng(4)
    d_pos, d_neg, unit_of = clustered_pairs(rng, 12)
    r = ranked(d_pos, d_neg, unit_of, 12)

    def interval(seed, key):
        return pooled_interval(r.ap, 12, Bootstrap(300, 0.95, seed), key, "sequence", "AP").interval

    assert interval(0, ("row",)) == interval(0, ("row",))
    assert interval(0, ("row",)) != interval(1, ("row",)) and interval(0, ("row",)) != interval(0, ("other",))
    assert pooled_interval(r.ap, 12, Bootstrap(0), ("row",), "sequence", "AP") is None  # --ci-resamples 0
    assert pooled_interval(r.ap, 1, Bootstrap(), ("row",), "sequence", "AP") is None  # one unit: nothing to resample


def test_each_errors_share_of_the_auc_averages_to_the_auc():
    errors = np.r_[np.random.default_rng(5).exponential(3.0, 60), [np.inf] * 4, [0.0, 2.0, 2.0]]
    assert np.allclose(error_auc_shares(errors, (1, 3, 5)).mean(axis=1), error_auc(errors, (1, 3, 5)), atol=1e-12)


def test_resampling_auc_shares_is_close_to_recomputing_the_auc():
    """The AUC rows resample each pair's share; recomputing error_auc on the resampled errors differs
    by the neighbours' part of the trapezoids only: at 100 pairs under 0.01 on every resample."""
    rng = np.random.default_rng(6)
    errors = np.where(rng.random(100) < 0.1, np.inf, rng.exponential(4.0, 100))
    shares = error_auc_shares(errors, (10,))[0]
    picks = rng.integers(0, 100, (300, 100))
    exact = np.array([error_auc(errors[p], (10,))[0] for p in picks])
    resampled = shares[picks].mean(axis=1)
    assert np.abs(exact - resampled).max() < 0.01
    assert np.percentile(exact, [2.5, 97.5]) == pytest.approx(np.percentile(resampled, [2.5, 97.5]), abs=0.005)
