"""The three HPatches patch tasks: verification, matching and retrieval (Balntas et al., CVPR 2017).

Inputs:
    descs   mapping sequence -> {patch type ("ref", "e1".."e5", "h1".."h5", "t1".."t5") -> (N, D) array},
            float32 (or any float/integer dtype), or uint8 packed bits for Hamming; N is the sequence's
            patch count and must be the same for all 16 types.
    tasks   :class:`~desc_bench.datasets.tasks.TaskFiles` (verification pairs, retrieval queries and
            distractors of the split).
    split   :class:`~desc_bench.datasets.base.Split` (or a split name found in ``tasks``).

Output: a list of :class:`Score` rows; values are fractions in 0..1 (the papers print 100x).

Protocols (see METRICS.md section 1):
    ``python`` (default): the official python code. Verification: [negatives; positives], score = -d,
        stable sort (ties count against the descriptor), balanced ROC AUC over all pairs, imbalanced
        AP (trapezoid) over all negatives and the first 20 % of positives; intra and inter negatives.
        Matching: nearest neighbour of each ref descriptor in image i, AP (trapezoid) with
        numpos = N; mean over (sequence, image) pairs; i/v breakdown by sequence prefix.
        Retrieval: per query the 5 positives (same patch, images 1..5) followed by the distractors of
        other sequences in file order; AP (trapezoid) over the first k entries for each pool size k.
        A pool larger than the list (5 + distractors of other sequences) is the whole list, exactly as
        the official slicing ``D[0:k]`` behaves; so with 20,000 distractors the 20,000 pool holds
        5 positives + 19,995 distractors, and a small dataset's large pools all equal its largest.
    ``matlab``: the MATLAB code used for the paper's figures. Squared L2, VLFeat AP (mean precision
        at each positive), [positives; negatives] (ties count for the descriptor), imbalanced
        = first floor(0.2 x #negatives) positives + all negatives; retrieval ranks all distractors
        (same-sequence ones ignored), variant "pool=all". Not comparable with ``python`` numbers.

Degenerate descriptors: a constant descriptor, or one whose number moves by 5 points or more when
exact ties are counted the other way, gets a ``note`` on its :class:`Score` rows ("degenerate: ...")
that the runner puts into the row notes; the number itself follows the protocol's tie rule.

Range: any finite descriptors are ranked correctly: float32 distance products are computed on
copies scaled by a power of two (exact, ranking unchanged), so values near 1e30 or 1e-30 neither
overflow nor underflow; non-finite descriptors are refused.

Implementation (``benchmarks/hpatches_tasks_speed.py`` times it at the real size): verification
gathers the pairs' rows from one stacked table per noise level, in the order of the first patch
(shared by the three pair files of the official generator), in cache-sized chunks shared by worker
threads, and ranks each label block on its own (:func:`~desc_bench.bench.metrics.block_ap`) instead
of sorting the whole list; matching and retrieval screen with bfloat16 products where the CPU has
them in hardware (:mod:`~desc_bench.bench.bf16_screen`, proven error bound), else with float32 GEMMs,
and decide what the screen leaves open by exact float64 differences (matching: near ties;
retrieval: the few distractors that can rank above a positive; :mod:`~desc_bench.bench.hpatches_matching`,
:mod:`~desc_bench.bench.hpatches_retrieval`). Both screens give the same numbers. numpy's huge-page
advice is off while the tasks run (:func:`~desc_bench.bench.hpatches_common.small_pages`).

Score rows:
    verification  metric "ap" (imbalanced) / "auc" (balanced); variant "intra" / "inter" / "mean";
                  noise easy/hard/tough/mean. Headline: ap, noise mean, variant mean (mean of 6).
    matching      metric "map"; subset all / i / v; variant "". Headline: noise mean, subset all.
    retrieval     metric "map"; variant "pool=K" and "pool=mean" (mean over the pool sizes).
                  Headline: noise mean, variant "pool=mean" (python) or "pool=all" (matlab).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..adapters.base import Distance
from ..datasets.base import NOISE_NAMES, NOISES
from ..datasets.tasks import PairList, TaskFiles
from ..errors import InputError, UnknownNameError
from .bootstrap import MAX_BINS, Bootstrap, Pooled, RankedList, pooled_interval
from .hpatches_common import (
    IMBALANCED_RATIO,
    N_POSITIVES,
    POOL_SIZES,
    PROTOCOLS,
    TASKS,
    Checked,
    Descs,
    Layout,
    Score,
    check_descs,
    check_protocol,
    check_refs,
    constant_descriptor,
    degenerate_note,
    needs_float64_scaling,
    power_of_two_scale,
    progress_bar,
    resolve_split,
    row_fields,
    small_pages,
)
from .hpatches_matching import evaluate_matching
from .hpatches_retrieval import evaluate_retrieval
from .metrics import block, block_ap, block_auc, gathered_distances

__all__ = [
    "IMBALANCED_RATIO",
    "N_POSITIVES",
    "POOL_SIZES",
    "PROTOCOLS",
    "TASKS",
    "Score",
    "evaluate_all",
    "evaluate_matching",
    "evaluate_retrieval",
    "evaluate_verification",
    "headline",
    "is_headline",
    "row_fields",
]

# (metric, noise, subset, variants) of the single number usually quoted for each task
HEADLINES = {
    "verification": ("ap", "mean", "all", ("mean",)),
    "matching": ("map", "mean", "all", ("",)),
    "retrieval": ("map", "mean", "all", ("pool=mean", "pool=all")),
}


def is_headline(task: str, metric: str, noise: str, subset: str, variant: str) -> bool:
    """Whether a score is the single number usually quoted for its task."""
    if task not in HEADLINES:
        return False
    want_metric, want_noise, want_subset, variants = HEADLINES[task]
    return (metric, noise, subset) == (want_metric, want_noise, want_subset) and variant in variants


def headline(scores: Sequence[Score], task: str) -> Score:
    """The single number usually quoted for a task (see the module docstring)."""
    if task not in HEADLINES:
        raise UnknownNameError("task", task, TASKS)
    for s in scores:
        if s.task == task and is_headline(s.task, s.metric, s.noise, s.subset, s.variant):
            return s
    raise InputError(f"no headline {task} score among the {len(scores)} scores given")


# ---- verification -------------------------------------------------------------------------------
PAIR_KINDS = ("pos", "neg_intra", "neg_inter")


def _verification_distances(
    chk: Checked, lists: dict[str, PairList], squared: bool, progress: bool
) -> dict[tuple[str, str], np.ndarray]:
    """(noise, pair kind) -> (M,) float64 distances of the pairs, in file order.

    Rows come from one stacked table per noise level (:class:`Layout`). The pairs are visited in
    the order of their first patch, so that side is read almost sequentially; pair files whose
    first patches are the same (the official generator gives all three the same ones) share its
    gather. Tables of 64-bit values are scaled by a power of two first (see power_of_two_scale).
    """
    layout = Layout.of(chk)
    rows = {
        kind: (
            layout.rows(chk, p.sequences, p.s1, p.t1, p.idx1),
            layout.rows(chk, p.sequences, p.s2, p.t2, p.idx2),
        )
        for kind, p in lists.items()
    }
    groups: list[tuple[np.ndarray, list[str]]] = []  # first patches -> the kinds that share them
    for kind, (first, _) in rows.items():
        for shared, kinds in groups:
            if np.array_equal(shared, first):
                kinds.append(kind)
                break
        else:
            groups.append((first, [kind]))
    orders = [np.argsort(first, kind="stable") for first, _ in groups]
    out, table = {}, None
    for noise in progress_bar(NOISES, progress, desc="verification distances"):
        table = layout.table(chk, noise, out=table)  # one buffer for the three noise levels
        if needs_float64_scaling(table.dtype) and chk.distance is not Distance.HAMMING:
            scale = power_of_two_scale(table)  # exact: ranking unchanged, no float64 overflow
            table = np.multiply(table, scale, out=table) if table.dtype == np.float64 else table * scale
        for (first, kinds), order in zip(groups, orders):
            found = gathered_distances(table, first, [rows[k][1] for k in kinds], chk.distance, squared, order)
            out.update({(noise, kind): d for kind, d in zip(kinds, found)})
    return out


class _Pooled:
    """The verification lists as :class:`~desc_bench.bench.bootstrap.RankedList` s (built on first use),
    each pair counted in the sequence of its first patch (the unit a cluster bootstrap resamples)."""

    def __init__(self, lists: dict[str, PairList], dists, python: bool, ci: Bootstrap):
        self.names = sorted({n for p in lists.values() for n in p.sequences})
        code = {n: i for i, n in enumerate(self.names)}
        self.units = {k: np.array([code[n] for n in p.sequences], np.int64)[p.s1] for k, p in lists.items()}
        self.dists, self.python, self.ci, self.made = dists, python, ci, {}
        self.spans: dict[tuple[str, str, str], tuple[int, int]] = {}  # (noise, variant, metric) -> list lengths

    def ranked(self, noise: str, variant: str, metric: str) -> RankedList:
        if (noise, variant, metric) not in self.made:
            n_neg, n_pos = self.spans[noise, variant, metric]
            kind = f"neg_{variant}"
            d_neg, d_pos = self.dists[noise, kind][:n_neg], self.dists[noise, "pos"][:n_pos]
            units = np.r_[self.units[kind][:n_neg], self.units["pos"][:n_pos]]
            labels = np.r_[np.zeros(len(d_neg), bool), np.ones(len(d_pos), bool)]
            made = RankedList.of(-np.r_[d_neg, d_pos], labels, units, len(self.names), self.python)
            self.made[noise, variant, metric] = made
        return self.made[noise, variant, metric]

    def interval(self, metric: str, parts: list[tuple[str, str]], value: float) -> Callable[[tuple], Pooled | None]:
        ap = "trapezoid" if self.python else "vlfeat"

        def statistic(counts):
            lists = [self.ranked(n, v, metric) for n, v in parts]
            return np.mean([r.ap(counts, ap) if metric == "ap" else r.auc(counts) for r in lists], axis=0)

        how = f"{'AP' if metric == 'ap' else 'AUC'} of the pooled pairs recomputed"
        items = MAX_BINS * len(parts)
        units = len(self.names)
        return lambda key: pooled_interval(statistic, units, self.ci, key, "sequence", how, items, value=value)


@small_pages()
def evaluate_verification(
    descs: Descs,
    tasks: TaskFiles,
    split,
    distance=Distance.L2,
    protocol: str = "python",
    progress: bool = False,
    ci: Bootstrap | None = None,
) -> list[Score]:
    """Patch verification: imbalanced AP and balanced ROC AUC, intra and inter negatives, per noise.
    With ``ci``, each score carries its interval (``Score.pooled``): a cluster bootstrap over
    sequences, the AP or AUC recomputed on each resample (bench/bootstrap.py)."""
    check_protocol(protocol)
    split = resolve_split(split, tasks)
    lists = {kind: tasks.pairs(kind, split.name) for kind in PAIR_KINDS}
    sequences = sorted({n for p in lists.values() for n in p.sequences})
    chk = check_descs(descs, sequences, distance)
    for kind, p in lists.items():
        where = str(tasks.path(kind, split.name))
        check_refs(chk, p.sequences, p.s1, p.idx1, where)
        check_refs(chk, p.sequences, p.s2, p.idx2, where)
    squared = protocol == "matlab" and chk.distance is Distance.L2
    dists = _verification_distances(chk, lists, squared, progress)
    python = protocol == "python"
    pooled = _Pooled(lists, dists, python, ci) if ci is not None and ci.resamples else None
    raw: dict[tuple[str, str, str], tuple[float, float]] = {}  # -> (protocol's tie rule, ties the other way)
    for noise in NOISES:
        d_pos = dists[noise, "pos"]
        pos = block(-d_pos)
        imbalanced_pos: dict[int, object] = {}
        for variant in ("intra", "inter"):
            d_neg = dists[noise, f"neg_{variant}"]
            neg = block(-d_neg)
            # python: [negatives; positives], ties to the negatives (first); matlab: [positives; negatives]
            raw[noise, variant, "auc"] = (block_auc(neg, pos, python), block_auc(neg, pos, not python))
            spans = {"auc": (len(d_neg), len(d_pos))}
            if python:  # AP over the first P + 0.2 P entries of [negatives; positives]
                n_imb = len(d_pos) + int(len(d_pos) * IMBALANCED_RATIO)
                neg_imb = neg if n_imb >= len(d_neg) else block(-d_neg[:n_imb])
                n_pos = max(0, n_imb - len(d_neg))
                kind = "trapezoid"
            else:  # VLFeat AP over [the first floor(0.2 N) positives; all negatives]
                neg_imb = neg
                n_pos = int(np.floor(len(d_neg) * IMBALANCED_RATIO))
                kind = "vlfeat"
            if n_pos not in imbalanced_pos:
                imbalanced_pos[n_pos] = pos if n_pos >= len(d_pos) else block(-d_pos[:n_pos])
            pos_imb = imbalanced_pos[n_pos]
            spans["ap"] = (neg_imb.total, n_pos)
            if pooled is not None:
                pooled.spans.update({(noise, variant, m): span for m, span in spans.items()})
            raw[noise, variant, "ap"] = (
                block_ap(neg_imb, pos_imb, python, kind),
                block_ap(neg_imb, pos_imb, not python, kind),
            )
    constant = constant_descriptor(chk)
    scores = []
    for metric in ("ap", "auc"):
        for noise in NOISES + ("mean",):
            for variant in ("intra", "inter", "mean"):
                ns = NOISES if noise == "mean" else (noise,)
                vs = ("intra", "inter") if variant == "mean" else (variant,)
                value, other = np.mean([raw[n, v, metric] for n in ns for v in vs], axis=0)
                note = degenerate_note(constant, float(value), float(other))
                name = NOISE_NAMES.get(noise, noise)
                interval = None if pooled is None else pooled.interval(metric, [(n, v) for n in ns for v in vs], value)
                scores.append(Score("verification", metric, name, "all", variant, float(value), note, pooled=interval))
    return scores


# ---- all ----------------------------------------------------------------------------------------
def evaluate_all(
    descs: Descs,
    tasks: TaskFiles,
    split,
    distance=Distance.L2,
    which: Sequence[str] = TASKS,
    protocol: str = "python",
    progress: bool = True,
    pool_sizes: Sequence[int] = POOL_SIZES,
    ci: Bootstrap | None = None,
) -> list[Score]:
    """Run the chosen tasks (verification, matching, retrieval) and return all their scores."""
    check_protocol(protocol)
    for task in which:
        if task not in TASKS:
            raise UnknownNameError("task", task, TASKS)
    split = resolve_split(split, tasks)
    scores: list[Score] = []
    if "verification" in which:
        scores += evaluate_verification(descs, tasks, split, distance, protocol=protocol, progress=progress, ci=ci)
    if "matching" in which:
        scores += evaluate_matching(descs, split, distance, protocol=protocol, progress=progress)
    if "retrieval" in which:
        scores += evaluate_retrieval(descs, tasks, split, distance, pool_sizes, protocol=protocol, progress=progress)
    return scores
