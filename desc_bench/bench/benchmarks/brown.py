"""Brown / UBC PhotoTour benchmarks: ``fpr95`` (the HardNet table) and ``brown-snn-map`` (revisited).

``fpr95``: the false positive rate at 95 % recall on a subset's test pairs (m50_100000_100000_0.txt,
100,000 pairs, half matching), as HardNet's ``EvalMetrics.ErrorRateAt95Recall`` computes it
(DagnyT/hardnet@35bc1d7): pairs sorted by ascending descriptor distance; ``t`` = the first index at
which the cumulative number of matching pairs reaches 0.95 x (all matching pairs); FPR = (non-matching
pairs before ``t``) / (all non-matching pairs). Never the false discovery rate FP / (FP + TP) of older
code (MatchNet, TFeat). See :func:`fpr95` for the tie rule.

``brown-snn-map``: :mod:`desc_bench.bench.benchmarks.brown_snn`.
"""

from __future__ import annotations

import numpy as np

from ...errors import InputError

RECALL = 0.95


def fpr95(distances, is_match, recall: float = RECALL) -> float:
    """False positive rate at ``recall`` (0.95) of pair ``distances`` ``(M,)`` with labels ``is_match`` ``(M,)``.

    HardNet: ``labels = labels[argsort(distances)]; t = argmax(cumsum(labels) >= 0.95 * sum(labels));
    FPR = sum(labels[:t] == 0) / sum(labels == 0)``. HardNet's ``np.argsort`` is not stable, so pairs
    at equal distances fall in an arbitrary order; here the order is fixed by the **pessimistic tie
    rule**: among equal distances, non-matching pairs come before matching ones (a stable sort on
    (distance, is_match)), so a non-matching pair tied with the threshold pair counts as a false
    positive. Without ties the value is HardNet's exactly.

    Raises InputError on shape mismatch, non-finite distances, or no matching / no non-matching pair
    (the rate is undefined; HardNet would print 0 or divide by zero).
    """
    d = np.asarray(distances, dtype=np.float64).ravel()
    y = np.asarray(is_match).ravel().astype(bool)
    if d.shape != y.shape:
        raise InputError(f"fpr95: {d.size} distances but {y.size} labels")
    if not np.isfinite(d).all():
        raise InputError("fpr95: distances contain NaN or infinite values")
    positives = int(y.sum())
    negatives = y.size - positives
    if positives == 0 or negatives == 0:
        raise InputError(f"fpr95 needs matching and non-matching pairs; got {positives} and {negatives}")
    labels = y[np.lexsort((y, d))]  # by distance, then non-matching (False) first: pessimistic ties
    cumulative = np.cumsum(labels)
    t = int(np.argmax(cumulative >= recall * positives))  # first index reaching the recall (a positive)
    false_positives = t - int(cumulative[t]) + 1  # non-matching pairs in labels[:t]
    return false_positives / negatives
