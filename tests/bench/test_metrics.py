"""Ranking metrics and distances against hand-computed cases and a literal loop reference."""

from __future__ import annotations

import numpy as np
import pytest

from desc_bench.adapters.base import Distance
from desc_bench.bench import metrics as M
from desc_bench.errors import InputError


def loop_tpfp(scores, labels, numpos=None):
    """The official tpfp, written literally as loops (append -inf positives, stable sort, drop tail)."""
    scores, labels = list(map(float, scores)), list(map(int, labels))
    p = sum(labels)
    n = len(labels) - p
    if numpos is not None:
        scores += [-np.inf] * (numpos - p)
        labels += [1] * (numpos - p)
        p = numpos
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # Python's sort is stable
    order = [i for i in order if scores[i] > -np.inf]
    tp, fp = [0], [0]
    for i in order:
        tp.append(tp[-1] + (labels[i] == 1))
        fp.append(fp[-1] + (labels[i] == 0))
    return tp, fp, p, n


def loop_ap(scores, labels, numpos=None):
    tp, fp, p, _ = loop_tpfp(scores, labels, numpos)
    rec = [t / max(p, 1e-10) for t in tp]
    prec = [max(t, 1e-10) / max(t + f, 1e-10) for t, f in zip(tp, fp)]
    return sum((rec[i + 1] - rec[i]) * (prec[i + 1] + prec[i]) / 2 for i in range(len(rec) - 1))


def loop_auc(scores, labels):
    tp, fp, p, n = loop_tpfp(scores, labels)
    tpr = [t / p for t in tp]
    fpr = [f / n for f in fp]
    return sum((fpr[i + 1] - fpr[i]) * (tpr[i + 1] + tpr[i]) / 2 for i in range(len(tpr) - 1))


def test_perfect_and_reversed_rankings():
    labels = np.array([1, 1, 0, 0])
    assert M.average_precision([4, 3, 2, 1], labels) == pytest.approx(1.0)
    assert M.roc_auc([4, 3, 2, 1], labels) == pytest.approx(1.0)
    assert M.roc_auc([1, 2, 3, 4], labels) == pytest.approx(0.0)
    assert M.vlfeat_ap([4, 3, 2, 1], labels) == pytest.approx(1.0)


def test_hand_computed_trapezoid_ap():
    # ranked: neg, pos, neg, pos -> tp 0,0,1,1,2 fp 0,1,1,2,2, p = 2
    # precision 1, 1e-10, 1/2, 1/3, 2/4; recall 0, 0, .5, .5, 1
    # trapezoid: .5 * (1e-10 + .5)/2 + .5 * (1/3 + .5)/2
    ap = M.average_precision([4, 3, 2, 1], [0, 1, 0, 1])
    assert ap == pytest.approx(0.5 * (1e-10 + 0.5) / 2 + 0.5 * (1 / 3 + 0.5) / 2, abs=1e-12)
    # VLFeat: mean of precision at the positives: (1/2 + 2/4) / 2
    assert M.vlfeat_ap([4, 3, 2, 1], [0, 1, 0, 1]) == pytest.approx(0.5)


def test_ties_keep_array_order():
    # all scores equal: stable sort keeps the order, so negatives first count against the descriptor
    neg_first = M.average_precision([0, 0, 0, 0], [0, 0, 1, 1])
    pos_first = M.average_precision([0, 0, 0, 0], [1, 1, 0, 0])
    assert pos_first == pytest.approx(1.0)
    assert neg_first < 0.5
    assert neg_first == pytest.approx(loop_ap([0, 0, 0, 0], [0, 0, 1, 1]), abs=1e-12)
    assert M.roc_auc([0, 0, 0, 0], [0, 0, 1, 1]) == pytest.approx(0.0)
    assert M.roc_auc([0, 0, 0, 0], [1, 1, 0, 0]) == pytest.approx(1.0)


def test_numpos_padding_counts_missing_positives():
    # 2 of 4 positives retrieved (both at the top): recall reaches only 0.5
    ap = M.average_precision([3, 2, 1], [1, 1, 0], numpos=4)
    assert ap == pytest.approx(0.5)
    assert ap == pytest.approx(loop_ap([3, 2, 1], [1, 1, 0], numpos=4))
    assert M.vlfeat_ap([3, 2, 1], [1, 1, 0], numpos=4) == pytest.approx(0.5)
    c = M.tpfp([3, 2, 1], [1, 1, 0], numpos=4)
    assert c.p == 4 and list(c.tp) == [0, 1, 2, 2] and list(c.fp) == [0, 0, 0, 1]
    with pytest.raises(InputError, match="numpos"):
        M.tpfp([1, 2], [1, 1], numpos=1)


def test_minus_inf_scores_are_never_retrieved():
    c = M.tpfp([1.0, -np.inf, 0.5], [1, 1, 0])
    assert list(c.order) == [0, 2]
    assert c.p == 2


def test_bad_inputs():
    with pytest.raises(InputError, match="same length"):
        M.average_precision([1, 2, 3], [0, 1])
    with pytest.raises(InputError, match="0/1"):
        M.average_precision([1, 2], [0, 2])
    with pytest.raises(InputError, match="NaN"):
        M.roc_auc([np.nan, 1], [0, 1])


@pytest.mark.parametrize("seed", range(5))
def test_vectorised_equals_loop_reference_with_ties(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, size=300).astype(float)  # many ties
    labels = rng.random(300) < 0.3
    assert M.average_precision(scores, labels) == pytest.approx(loop_ap(scores, labels), abs=1e-9)
    assert M.roc_auc(scores, labels) == pytest.approx(loop_auc(scores, labels), abs=1e-9)
    numpos = int(labels.sum()) + 17
    assert M.average_precision(scores, labels, numpos) == pytest.approx(loop_ap(scores, labels, numpos), abs=1e-9)


@pytest.mark.parametrize("seed", range(3))
def test_ap_from_ranks_matches_full_lists(seed):
    rng = np.random.default_rng(seed)
    n, p = 200, 5
    scores = rng.integers(0, 30, size=n).astype(float)
    labels = np.zeros(n, dtype=bool)
    labels[:p] = True  # positives first: ties favour them, as in retrieval
    c = M.tpfp(scores, labels)
    ranks = np.flatnonzero(labels[c.order]) + 1
    assert M.ap_from_ranks(ranks, p) == pytest.approx(M.average_precision(scores, labels), abs=1e-12)
    assert M.ap_from_ranks(ranks, p, "vlfeat") == pytest.approx(M.vlfeat_ap(scores, labels), abs=1e-12)


def test_distances_l2_l1():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(7, 16)).astype(np.float32)
    b = rng.normal(size=(9, 16)).astype(np.float32)
    ref = np.sqrt(((a[:, None].astype(np.float64) - b[None]) ** 2).sum(-1))
    np.testing.assert_allclose(M.pairwise_distances(a, b, Distance.L2), ref, rtol=1e-10)
    np.testing.assert_allclose(M.pairwise_distances(a, b, "l2", squared=True), ref**2, rtol=1e-10)
    np.testing.assert_allclose(M.rowwise_distances(a, b[:7], Distance.L2), np.diag(ref[:, :7]), rtol=1e-12)
    ref1 = np.abs(a[:, None].astype(np.float64) - b[None]).sum(-1)
    np.testing.assert_allclose(M.pairwise_distances(a, b, Distance.L1), ref1, rtol=1e-12)
    np.testing.assert_allclose(M.rowwise_distances(a, b[:7], Distance.L1), np.diag(ref1[:, :7]), rtol=1e-12)


def test_integer_valued_l2_keeps_exact_ties():
    a = np.array([[1, 2, 3], [0, 0, 0]], dtype=np.float32)
    b = np.array([[1, 2, 4], [1, 2, 2], [1, 2, 3]], dtype=np.float32)
    d = M.pairwise_distances(a, b)
    assert d[0, 0] == d[0, 1] == 1.0 and d[0, 2] == 0.0


def test_hamming():
    a = np.array([[0b10110000, 0xFF], [0, 0]], dtype=np.uint8)
    b = np.array([[0b10110001, 0x0F], [0, 0], [0xFF, 0xFF]], dtype=np.uint8)
    d = M.pairwise_distances(a, b, Distance.HAMMING)
    # xor a0^b0 = 00000001 11110000 -> 5; a0^b1 -> 3 + 8; a0^b2 = 01001111 00000000 -> 5
    # a1^b0 -> popcount(10110001) + popcount(00001111) = 4 + 4; a1^b1 -> 0; a1^b2 -> 16
    expected = np.array([[5, 11, 5], [8, 0, 16]], dtype=float)
    np.testing.assert_array_equal(d, expected)
    np.testing.assert_array_equal(M.rowwise_distances(a, b[:2], Distance.HAMMING), [5, 0])
    with pytest.raises(InputError, match="uint8"):
        M.pairwise_distances(a.astype(np.float32), b, Distance.HAMMING)


# ---- two label blocks and gathered distances (issue 18: the HPatches tasks at speed) ----------------
@pytest.mark.parametrize("seed", range(6))
def test_block_ranking_equals_the_stable_sort_of_the_whole_list(seed):
    rng = np.random.default_rng(seed)
    n_neg, n_pos = rng.integers(0, 60, size=2)
    neg = rng.integers(0, 7, n_neg).astype(float)  # many exact ties between and within the labels
    pos = rng.integers(0, 7, n_pos).astype(float)
    neg[rng.random(n_neg) < 0.1] = -np.inf  # never retrieved
    pos[rng.random(n_pos) < 0.1] = -np.inf
    blocks = M.block(neg), M.block(pos)
    for negatives_first in (True, False):
        if negatives_first:
            scores, labels = np.r_[neg, pos], np.r_[np.zeros(n_neg), np.ones(n_pos)]
        else:
            scores, labels = np.r_[pos, neg], np.r_[np.ones(n_pos), np.zeros(n_neg)]
        assert M.block_ap(*blocks, negatives_first) == pytest.approx(loop_ap(scores, labels), abs=1e-12)
        assert M.block_ap(*blocks, negatives_first, "vlfeat") == pytest.approx(M.vlfeat_ap(scores, labels), abs=1e-12)
        if n_neg and n_pos:
            assert M.block_auc(*blocks, negatives_first) == pytest.approx(loop_auc(scores, labels), abs=1e-12)
    with pytest.raises(InputError, match="NaN"):
        M.block([0.0, np.nan])


@pytest.mark.parametrize("distance", ["l2", "l1", "hamming"])
def test_gathered_distances_equal_rowwise(distance):
    rng = np.random.default_rng(0)
    if distance == "hamming":
        table = rng.integers(0, 256, size=(50, 4), dtype=np.uint8)
    else:
        table = rng.normal(size=(50, 16)).astype(np.float32)
    left, r1, r2 = (rng.integers(0, 50, 333) for _ in range(3))
    expected = [M.rowwise_distances(table[left], table[r], distance) for r in (r1, r2)]
    order = np.argsort(left, kind="stable")
    for workers in (1, 3):
        got = M.gathered_distances(table, left, [r1, r2], distance, order=order, chunk=16, workers=workers)
        for g, e in zip(got, expected):
            np.testing.assert_array_equal(g, e)
    squared = M.gathered_distances(table, left, [r1], distance, squared=True)[0]
    np.testing.assert_allclose(squared, expected[0] ** 2 if distance == "l2" else expected[0], rtol=1e-12)
