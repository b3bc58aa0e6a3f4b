"""Bootstrap intervals of *pooled* statistics, recomputed on resampled units at evaluation time.

The one home of the interval machinery: the settings (:class:`Bootstrap`, from ``--ci-resamples``
and ``--ci-seed``), the seeded generator of each row (the run's seed and the row's key, so the same
seed gives the same interval whatever else the record holds), the percentile interval, and the
resampling of statistics that are not a mean of per-unit values (results/stats.py resamples the
rows that are, with the same settings and generator).

A pooled statistic (one AP over the pairs of all sequences, an FPR at 95 % recall) is resampled by
its independent *units*: each resample draws ``U`` units with replacement (a cluster bootstrap: the
items of a unit drawn ``c`` times count ``c`` times, as multinomial weights ``counts (B, U)``) and
the statistic is recomputed from the distances the benchmark already has (never from descriptors),
``B`` resamples at once (:func:`pooled_interval`). Strata (e.g. matching and non-matching pairs)
are resampled each within itself.

Ranked-list metrics (:class:`RankedList`): the list is sorted once by score with the protocol's tie
rule; each resample's true and false positives along it are per-unit counts of consecutive rank
bins times the unit weights (one matrix product), then cumulative sums at the bin ends. With at
most :data:`MAX_BINS` items every item is its own bin and the recomputation is exact; longer lists
(the real HPatches: 1.2 M pairs) use that many bins of equal size (the AP then is the trapezoid
over 1024 knots of the curve) and the interval is shifted by the
difference between the exact value and the binned one on the original sample.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..records.schema import ResultRow

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
DEFAULT_SEED = 0
MIN_UNITS = 2  # fewer units: no interval (a bootstrap of one value says nothing)
MAX_BINS = 1024  # ranked lists longer than this are resampled in this many rank bins
BLOCK = 1 << 22  # elements of the largest (resamples x items) array built at once
CACHE_BLOCK = 1 << 17  # (resamples x bins) cells of a ranked list's curves computed at once
SMALL = 1e-10  # the HPatches code's guard against 0/0


@dataclass(frozen=True)
class Bootstrap:
    """How a run's intervals are made: ``resamples`` (0: none), confidence ``level``, ``seed``."""

    resamples: int = DEFAULT_RESAMPLES
    level: float = DEFAULT_LEVEL
    seed: int = DEFAULT_SEED

    def __post_init__(self):
        check_settings(self.resamples, self.level)


def check_settings(resamples: int, level: float = DEFAULT_LEVEL) -> None:
    if resamples < 0 or (0 < resamples < 100):
        raise InputError(f"--ci-resamples must be 0 (no intervals) or at least 100, got {resamples}")
    if not 0 < level < 1:
        raise InputError(f"confidence level must be between 0 and 1, got {level}")


def generator(seed: int, key: tuple) -> np.random.Generator:
    """The generator of one row's bootstrap: from the run's seed and the row's key."""
    return np.random.default_rng([int(seed), zlib.crc32(repr(key).encode())])


def percentile(values: np.ndarray, level: float, point: float) -> tuple[float, float]:
    """The percentile interval of the resampled ``values``, widened to hold ``point`` (rounding)."""
    low, high = np.percentile(values, [50 * (1 - level), 50 * (1 + level)])
    return (min(float(low), point), max(float(high), point))


def resample_counts(strata: Sequence[np.ndarray], units: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """``(size, units)`` float32: how often each unit is drawn in each resample; each stratum (an array
    of unit indices) is drawn with replacement as many times as it has units."""
    counts = np.zeros(size * units, np.int64)
    offsets = np.arange(size, dtype=np.int64)[:, None] * units
    for members in strata:
        picks = members[rng.integers(0, len(members), (size, len(members)))]
        counts += np.bincount((picks + offsets).ravel(), minlength=size * units)
    return counts.reshape(size, units).astype(np.float32)


@dataclass(frozen=True)
class Pooled:
    """A pooled row's interval and how it was made (the row's notes say it)."""

    interval: tuple[float, float]
    units: int
    kind: str  # "sequence", "pair", ...
    resamples: int
    how: str  # e.g. "AP recomputed"

    def note(self) -> str:
        return f"interval: bootstrap over {self.units} {self.kind}s, {self.how}, {self.resamples} resamples"


def pooled_interval(
    statistic: Callable[[np.ndarray], np.ndarray],
    units: int,
    ci: Bootstrap | None,
    key: tuple,
    kind: str,
    how: str,
    items: int = 1,
    strata: Sequence[np.ndarray] | None = None,
    value: float | None = None,
) -> Pooled | None:
    """The percentile interval of ``statistic(counts (B, units)) -> (B,)`` over ``ci.resamples``
    resamples of the units (of each stratum), in blocks of about :data:`BLOCK` / ``items`` resamples.
    ``value``: the row's exact value; the resampled values are shifted by its difference from the
    statistic of the original sample (all counts 1), which is 0 unless the statistic is binned.
    None: no settings, 0 resamples or fewer than 2 units."""
    if ci is None or ci.resamples <= 0 or units < MIN_UNITS:
        return None
    strata = [np.arange(units)] if strata is None else [np.asarray(s) for s in strata]
    original = float(statistic(np.ones((1, units), np.float32))[0])
    point = original if value is None else float(value)
    shift = point - original
    rng = generator(ci.seed, key)
    step = max(1, min(ci.resamples, BLOCK // max(1, items)))
    sizes = [min(step, ci.resamples - s) for s in range(0, ci.resamples, step)]
    values = np.concatenate([statistic(resample_counts(strata, units, size, rng)) for size in sizes])
    return Pooled(percentile(values + shift, ci.level, point), units, kind, ci.resamples, how)


def with_pooled(row: ResultRow, pooled: Pooled | None) -> ResultRow:
    """The row with the pooled interval, its notes saying how it was made (unchanged for None)."""
    if pooled is None:
        return row
    notes = "; ".join(n for n in (row.notes, pooled.note()) if n)
    return dataclasses.replace(row, interval=pooled.interval, notes=notes)


# ---- ranked lists ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class RankedList:
    """A list of labelled items ranked once, as per-unit counts of rank bins: ``pos``/``neg``
    ``(K, U)`` float32 (K <= MAX_BINS; one item per bin when the list is that short)."""

    pos: np.ndarray
    neg: np.ndarray

    @classmethod
    def of(cls, scores, labels, unit_of, units: int, negatives_first: bool = True, bins: int = MAX_BINS) -> RankedList:
        """Rank by decreasing score; an exact tie between labels goes to the negatives
        (``negatives_first``, the python protocol) or to the positives (MATLAB)."""
        scores, labels, unit_of = np.asarray(scores, np.float64), np.asarray(labels, bool), np.asarray(unit_of)
        order = np.lexsort((labels if negatives_first else ~labels, -scores))
        n = len(order)
        bins = min(n, bins)
        cell = (np.arange(n, dtype=np.int64) * bins // max(n, 1)) * units + unit_of[order]
        y = labels[order]
        pos = np.bincount(cell[y], minlength=bins * units).reshape(bins, units).astype(np.float32)
        neg = np.bincount(cell[~y], minlength=bins * units).reshape(bins, units).astype(np.float32)
        return cls(pos, neg)

    @functools.cached_property
    def _cumulative(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-unit counts of the items ranked up to each bin end, ``(K, U)`` positives and negatives."""
        return np.cumsum(self.pos, axis=0), np.cumsum(self.neg, axis=0)

    def curves(self, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cumulative weighted true and false positives at the bin ends ``(B, K)`` (float32: exact
        integers below 2**24), and the steps of the true positives.

        The cumulative sums are products with the per-unit cumulative counts (made once per list):
        every term and partial sum is an integer below 2**24, so this equals the cumulative sum of
        the steps exactly, at the cost of one matrix product instead of a slow pass along the rows."""
        cum_pos, cum_neg = self._cumulative
        return counts @ cum_pos.T, counts @ cum_neg.T, counts @ self.pos.T

    def ap(self, counts: np.ndarray, kind: str = "trapezoid") -> np.ndarray:
        """``(B,)`` AP of each resample: trapezoid over (recall, precision) with precision(0) = 1
        (the python protocol) or ``"vlfeat"``: the precision at each positive, weighted."""

        def ap(counts: np.ndarray) -> np.ndarray:
            tp, fp, step = self.curves(counts)
            precision = np.maximum(tp, SMALL) / np.maximum(tp + fp, SMALL)
            if kind != "vlfeat":  # the mean of the precisions at both ends of each step
                precision = (precision + np.hstack((np.ones((len(tp), 1), np.float32), precision[:, :-1]))) / 2
            return np.einsum("bk,bk->b", step, precision, dtype=np.float64) / np.maximum(tp[:, -1], SMALL)

        return self._by_rows(ap, counts)

    def auc(self, counts: np.ndarray) -> np.ndarray:
        """``(B,)`` ROC AUC of each resample (trapezoid over (fpr, tpr)): over the negatives' steps, the
        true positives above them (and half of those tied in their bin)."""

        def auc(counts: np.ndarray) -> np.ndarray:
            tp, fp, step = self.curves(counts)
            fp_step = counts @ self.neg.T  # exactly np.diff(fp, prepend=0): integers below 2**24
            area = np.einsum("bk,bk->b", fp_step, tp - step / 2, dtype=np.float64)
            return area / np.maximum(tp[:, -1], SMALL) / np.maximum(fp[:, -1], SMALL)

        return self._by_rows(auc, counts)

    def _by_rows(self, statistic: Callable[[np.ndarray], np.ndarray], counts: np.ndarray) -> np.ndarray:
        """``statistic`` of blocks of resamples of about :data:`CACHE_BLOCK` (resample, bin) cells: each
        resample's value is computed from its own row alone, and blocks that fit in the CPU cache are
        several times faster than one pass over all (B, K) arrays (each op a trip to main memory)."""
        rows = max(1, CACHE_BLOCK // max(1, self.items))
        if len(counts) <= rows:
            return statistic(counts)
        return np.concatenate([statistic(counts[s : s + rows]) for s in range(0, len(counts), rows)])

    @property
    def items(self) -> int:
        return len(self.pos)


# ---- a rate at a recall ---------------------------------------------------------------------------
def fpr_at_recall_resamples(distances, is_match, recall: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """``(size,)`` FPR at ``recall`` of pair resamples, matching and non-matching pairs each drawn with
    replacement (stratified), the ranking fixed by (distance, non-matching first) as
    :func:`~desc_bench.bench.benchmarks.brown.fpr95`.

    Exact in distribution and O(size): the threshold is the ``q = ceil(recall P)``-th drawn positive in
    rank order, whose index is ``ceil(P U)`` with ``U ~ Beta(q, P + 1 - q)`` (the q-th of P uniform
    draws); the false positives are the draws of the N negatives that fall among the ``m`` ranked before
    it: ``Binomial(N, m / N)``.
    """
    d = np.asarray(distances, np.float64)
    y = np.asarray(is_match, bool)
    order = np.lexsort((y, d))
    ranked = y[order]
    n_pos, n_neg = int(ranked.sum()), int((~ranked).sum())
    negatives_before = np.cumsum(~ranked)[ranked]  # (P,) negatives ranked before each positive
    q = int(np.ceil(recall * n_pos))  # the first count c >= recall * P (fpr95's comparison)
    index = np.ceil(rng.beta(q, n_pos + 1 - q, size) * n_pos).astype(np.int64).clip(1, n_pos)
    return rng.binomial(n_neg, negatives_before[index - 1] / n_neg) / n_neg


def fpr_interval(samples, recall: float, ci: Bootstrap | None, key: tuple, value: float) -> Pooled | None:
    """The interval of the mean FPR at ``recall`` of ``samples`` (``(distances, is_match)`` per test
    subset, each resampled on its own: :func:`fpr_at_recall_resamples`); None without settings."""
    if ci is None or ci.resamples <= 0:
        return None
    rng = generator(ci.seed, key)
    values = np.mean([fpr_at_recall_resamples(d, y, recall, ci.resamples, rng) for d, y in samples], axis=0)
    how = "matching and non-matching pairs resampled each, FPR95 recomputed"
    return Pooled(percentile(values, ci.level, value), sum(len(d) for d, _ in samples), "pair", ci.resamples, how)
