"""The retrieval AP equals the official Oxford compute_ap.cpp and revisitop's compute_map.

The fixed numbers were produced by revisitop's python ``compute_map`` (filipradenovic/revisitop,
python/evaluate.py) and a line-by-line transcription of compute_ap.cpp run beside
desc_bench.bench.retrieval.ap on these rankings (and on 500 random rankings with junk, ties and
truncated lists: largest difference 6e-16); upstream code is not part of this repository.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from desc_bench.bench.retrieval.ap import Truth, average_precision, mean_ap, rank, revisited


def test_junk_is_skipped_and_the_trapezoid_is_official():
    # compute_map(arange(10), ok=[0, 2, 5], junk=[1, 3]) = 0.90277...
    assert average_precision(np.arange(10), Truth.of([0, 2, 5], [1, 3])) == pytest.approx(0.9027777777777777, abs=1e-12)


def test_ties_keep_database_order():
    scores = np.array([1, 3, 3, 2, 3, 0.0])
    assert rank(scores).tolist() == [1, 2, 4, 3, 0, 5]
    assert average_precision(rank(scores), Truth.of([1, 4], [2])) == pytest.approx(1.0)
    assert average_precision(rank(scores), Truth.of([4, 0])) == pytest.approx(0.24583333333333335, abs=1e-12)


def test_not_vlfeat_ap_and_unranked_positives_count_as_missed():
    # VLFeat AP (mean precision at the positives) of [0, 4] at ranks 2, 4 is (1/3 + 2/5) / 2 = 0.3667.
    ap = average_precision([3, 1, 0, 2, 4], Truth.of([0, 4]))
    assert ap == pytest.approx(0.24583333333333335, abs=1e-12)
    assert average_precision([3, 1, 0], Truth.of([0, 4])) == pytest.approx((1 / 3 * 0.5) / 2)
    assert average_precision([3, 1], Truth.of([0, 4])) == 0.0
    with pytest.raises(ValueError, match="without positives"):
        average_precision([0, 1], Truth.of([]))


def test_easy_medium_hard_as_revisitop():
    ranks = np.array([[0, 1, 2, 3, 4, 5, 6, 7], [7, 6, 5, 4, 3, 2, 1, 0], [2, 0, 4, 6, 1, 3, 5, 7]])
    gnd = [
        dict(easy=[0, 3], hard=[1], junk=[2]),
        dict(easy=[6], hard=[0, 5], junk=[7]),
        dict(easy=[], hard=[7], junk=[2]),
    ]
    expected = {  # revisitop compute_map: mAP and per-query APs
        "easy": (1.0, [1.0, 1.0, math.nan]),
        "medium": (0.6216931216931216, [1.0, 0.7936507936507936, 0.07142857142857142]),
        "hard": (0.5682539682539682, [1.0, 0.6333333333333333, 0.07142857142857142]),
    }
    for protocol, (m, aps) in expected.items():
        truths = [revisited(g["easy"], g["hard"], g["junk"])[protocol] for g in gnd]
        found, per_query = mean_ap(list(ranks), truths)
        assert found == pytest.approx(m, abs=1e-12), protocol
        np.testing.assert_allclose(per_query, aps, atol=1e-12)


def test_no_positive_anywhere_is_refused():
    with pytest.raises(ValueError, match="undefined"):
        mean_ap([np.arange(3)], [Truth.of([], [1])])
