"""Bootstrap confidence intervals and paired differences over the per-unit values rows carry.

A row whose value is the (weighted) mean of independent units (HPatches and image-pair sequences;
:class:`~desc_bench.records.schema.Units`) gets a percentile bootstrap interval: the units are
resampled with replacement ``resamples`` times (scipy.stats.bootstrap, ``method="percentile"``)
and the weighted mean recomputed. Nothing is recomputed from descriptors. The generator of each
row is seeded from the run's seed and the row's key, so the same seed gives the same interval
whatever else the record holds. Rows whose value is a pooled statistic (an AP over the pairs of all
sequences, FPR95) carry no units: their benchmark gives them an interval at evaluation time
(desc_bench.bench.bootstrap, the one home of the settings, the generator and the percentile rule).

A paired difference (:func:`paired_difference`) resamples the *same* units for both descriptors
(units matched by name), so what the two share (an easy sequence is easy for both) cancels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..bench.bootstrap import DEFAULT_LEVEL, DEFAULT_RESAMPLES, DEFAULT_SEED, MIN_UNITS, check_settings, generator
from ..errors import InputError
from ..records.schema import Record, ResultRow, Units


def _weighted_mean(values, weights, axis=-1):
    return (values * weights).sum(axis=axis) / weights.sum(axis=axis)


def _paired_gap(a, b, wa, wb, axis=-1):
    return _weighted_mean(a, wa, axis) - _weighted_mean(b, wb, axis)


def _weights(units: Units) -> np.ndarray:
    return np.asarray(units.weights, dtype=np.float64) if units.weights else np.ones(len(units.values))


def _bootstrap(data: tuple, statistic, resamples: int, level: float, rng: np.random.Generator) -> tuple[float, float]:
    from scipy.stats import bootstrap

    res = bootstrap(
        data,
        statistic,
        n_resamples=resamples,
        confidence_level=level,
        method="percentile",
        paired=True,
        vectorized=True,
        rng=rng,
    )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    return low, high


def unit_interval(
    units: Units, resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = 0, key: tuple = ()
) -> tuple[float, float] | None:
    """The percentile bootstrap interval of the weighted mean of ``units`` (None: fewer than 2 units)."""
    if resamples <= 0 or len(units.values) < MIN_UNITS:
        return None
    values = np.asarray(units.values, dtype=np.float64)
    if np.all(values == values[0]):  # every resample gives the same mean
        return (float(values[0]), float(values[0]))
    low, high = _bootstrap((values, _weights(units)), _weighted_mean, resamples, level, generator(seed, key))
    mean = units.mean()  # rounding can put the point a hair outside a degenerate interval
    return (min(low, mean), max(high, mean))


def with_intervals(
    rows: Iterable[ResultRow], resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = 0
) -> list[ResultRow]:
    """The rows, each with units given its interval (rows without units are returned unchanged)."""
    out = []
    for row in rows:
        if row.error is None and row.units is not None:
            row = dataclasses.replace(row, interval=unit_interval(row.units, resamples, level, seed, row.key()))
        out.append(row)
    return out


def settings(resamples: int, level: float, seed: int) -> dict:
    """How a record's intervals were made (its metadata ``intervals``)."""
    return {
        "method": "percentile bootstrap over units",
        "pooled": "rows without units: the benchmark recomputes the statistic on resampled units (row notes)",
        "resamples": resamples,
        "level": level,
        "seed": seed,
    }


def add_intervals(
    record: Record, resamples: int = DEFAULT_RESAMPLES, level: float = DEFAULT_LEVEL, seed: int = DEFAULT_SEED
) -> Record:
    """Intervals on every row of ``record`` with units, and the settings in its metadata (in place)."""
    check_settings(resamples, level)
    record.results = with_intervals(record.results, resamples, level, seed)
    record.metadata["intervals"] = settings(resamples, level, seed) if resamples else None
    return record


def half_width(row: ResultRow) -> float | None:
    return None if row.interval is None else (row.interval[1] - row.interval[0]) / 2


# ---- paired differences -----------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    """``a - b`` on one row key, over the units both rows hold, with its paired bootstrap interval."""

    value: float
    low: float | None
    high: float | None
    units: int  # units both rows share
    kind: str

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and (self.low > 0 or self.high < 0)

    @property
    def verdict(self) -> str:
        if self.low is None:
            return "no interval"
        if not self.excludes_zero:
            return "not significant"
        return "A better" if self.value > 0 else "B better"


def paired_difference(
    a: Units,
    b: Units,
    resamples: int = DEFAULT_RESAMPLES,
    level: float = DEFAULT_LEVEL,
    seed: int = DEFAULT_SEED,
    key: tuple = (),
) -> Difference:
    """The difference of the weighted means of ``a`` and ``b`` over their shared units, resampling
    the same units for both. Refuses rows that share no unit or count units differently."""
    if a.kind != b.kind:
        raise InputError(f"cannot pair {a.kind} units with {b.kind} units")
    index_b = {n: i for i, n in enumerate(b.names)}
    shared = [(i, index_b[n]) for i, n in enumerate(a.names) if n in index_b]
    if not shared:
        raise InputError(f"the two rows share no {a.kind}: they were measured on different data")
    ia, ib = (np.array(x) for x in zip(*shared))
    va, vb = np.asarray(a.values)[ia], np.asarray(b.values)[ib]
    wa, wb = _weights(a)[ia], _weights(b)[ib]
    value = float(_paired_gap(va, vb, wa, wb))
    if resamples <= 0 or len(shared) < MIN_UNITS:
        return Difference(value, None, None, len(shared), a.kind)
    if np.allclose(va - vb, (va - vb)[0]) and np.allclose(wa, wb):
        gap = float((va - vb)[0])
        return Difference(value, min(gap, value), max(gap, value), len(shared), a.kind)
    low, high = _bootstrap((va, vb, wa, wb), _paired_gap, resamples, level, generator(seed, key))
    return Difference(value, min(low, value), max(high, value), len(shared), a.kind)
