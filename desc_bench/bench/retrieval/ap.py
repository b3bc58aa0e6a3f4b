"""Average precision as the Oxford Buildings / Paris code computes it, and the revisited protocols.

:func:`average_precision` is ``compute_ap.cpp`` (Philbin et al.; Oxford Buildings ground truth
tools): walking the ranked list, junk images are skipped entirely (they take no rank), and at every
remaining position ``AP += (recall - old_recall) * (old_precision + precision) / 2`` with
``old_precision`` starting at 1 (a trapezoid under the precision-recall curve, not VLFeat's AP).
Positives that are never ranked contribute nothing (recall stops short of 1).

revisitop's ``compute_map`` (Radenovic et al., CVPR 2018) computes the same number from the ranks
of the positives after removing junk; :func:`revisited` builds its Easy / Medium / Hard ground
truths (Easy: ok = easy, junk += hard; Medium: ok = easy + hard; Hard: ok = hard, junk += easy)
and :func:`mean_ap` excludes queries without positives, as compute_map does. Both equalities are
pinned in tests/bench/test_retrieval_ap.py on hand-built rankings.

Ranking: :func:`rank` sorts scores descending with a stable sort, so ties keep database order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

PROTOCOLS = ("easy", "medium", "hard")


@dataclass(frozen=True)
class Truth:
    """Ground truth of one query: database indices of positives (good + ok) and of junk."""

    positives: frozenset[int]
    junk: frozenset[int] = frozenset()

    @classmethod
    def of(cls, positives: Iterable[int], junk: Iterable[int] = ()) -> Truth:
        return cls(frozenset(int(i) for i in positives), frozenset(int(i) for i in junk))


def rank(scores: np.ndarray) -> np.ndarray:
    """Database indices by descending score; ties keep database order (stable sort)."""
    return np.argsort(-np.asarray(scores, np.float64), kind="mergesort")


def average_precision(ranked: Sequence[int] | np.ndarray, truth: Truth) -> float:
    """compute_ap.cpp: trapezoid AP over ``ranked`` (database indices, best first), junk skipped.

    Vectorised: the positions of the positives among the non-junk results give the precision
    after each positive, ``(j + 1) / (r + 1)``, and before it, ``j / r`` (1 at rank 0).
    """
    if not truth.positives:
        raise ValueError("a query without positives has no average precision")
    ranked = np.asarray(ranked, np.int64)
    if truth.junk:
        ranked = ranked[~np.isin(ranked, np.fromiter(truth.junk, np.int64))]
    hits = np.flatnonzero(np.isin(ranked, np.fromiter(truth.positives, np.int64)))
    if len(hits) == 0:
        return 0.0
    j = np.arange(len(hits), dtype=np.float64)
    after = (j + 1) / (hits + 1)
    before = np.where(hits == 0, 1.0, j / np.maximum(hits, 1))
    return float(np.sum((before + after) / 2) / len(truth.positives))


def revisited(easy: Iterable[int], hard: Iterable[int], junk: Iterable[int]) -> dict[str, Truth]:
    """The Easy / Medium / Hard ground truths of one revisited query (revisitop example_evaluate)."""
    easy, hard, junk = list(easy), list(hard), list(junk)
    return {
        "easy": Truth.of(easy, [*junk, *hard]),
        "medium": Truth.of([*easy, *hard], junk),
        "hard": Truth.of(hard, [*junk, *easy]),
    }


def mean_ap(rankings: Sequence[np.ndarray], truths: Sequence[Truth]) -> tuple[float, np.ndarray]:
    """(mAP, per-query APs with NaN for queries without positives, which the mean excludes)."""
    if len(rankings) != len(truths):
        raise ValueError(f"{len(rankings)} rankings for {len(truths)} queries")
    aps = np.array([average_precision(r, t) if t.positives else np.nan for r, t in zip(rankings, truths)])
    valid = ~np.isnan(aps)
    if not valid.any():
        raise ValueError("no query has a positive image: the mAP is undefined")
    return float(aps[valid].mean()), aps
