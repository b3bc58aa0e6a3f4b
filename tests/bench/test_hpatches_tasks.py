"""HPatches tasks against hand-computed cases and a literal loop-based reference of the official code."""

from __future__ import annotations

import numpy as np
import pytest

from desc_bench.adapters.base import Distance
from desc_bench.bench import hpatches_tasks as ht
from desc_bench.datasets.base import PATCH_TYPES, Split
from desc_bench.datasets.tasks import TaskFiles, generate_task_files
from desc_bench.errors import DatasetError, InputError, UnknownNameError

NOISES = ("e", "h", "t")
NAMES = {"e": "easy", "h": "hard", "t": "tough"}


# ---- literal reference (loops, following the official python code step by step) ------------------
def ref_ap(scores, labels, numpos=None, vlfeat=False):
    scores, labels = [float(s) for s in scores], [int(l) for l in labels]  # noqa: E741
    p = sum(labels)
    if numpos is not None:
        scores += [-np.inf] * (numpos - p)
        labels += [1] * (numpos - p)
        p = numpos
    order = [i for i in sorted(range(len(scores)), key=lambda i: -scores[i]) if scores[i] > -np.inf]
    tp, fp = [0], [0]
    for i in order:
        tp.append(tp[-1] + labels[i])
        fp.append(fp[-1] + 1 - labels[i])
    rec = [t / p for t in tp]
    prec = [max(t, 1e-10) / max(t + f, 1e-10) for t, f in zip(tp, fp)]
    if vlfeat:
        return sum(prec[i] for i in range(1, len(tp)) if tp[i] > tp[i - 1]) / p
    return sum((rec[i + 1] - rec[i]) * (prec[i + 1] + prec[i]) / 2 for i in range(len(rec) - 1))


def ref_auc(scores, labels):
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    p = sum(labels)
    n = len(labels) - p
    tp = fp = 0
    area = 0.0
    for i in order:
        if labels[i]:
            tp += 1
        else:
            area += (tp / p) / n  # a step right at height tpr (trapezoid of a horizontal step)
            fp += 1
    return area


def dist(a, b, distance):
    if distance == "hamming":
        return float(np.unpackbits(np.bitwise_xor(a, b)).sum())
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.sqrt(((a - b) ** 2).sum())) if distance == "l2" else float(np.abs(a - b).sum())


def typ(noise, t):
    return "ref" if t == 0 else f"{noise}{t}"


def ref_verification(descs, tasks, split, distance):
    out = {}
    files = {k: tasks.pairs(k, split) for k in ("pos", "neg_intra", "neg_inter")}
    for noise in NOISES:
        d = {}
        for k, p in files.items():
            names = p.sequences
            d[k] = [
                dist(
                    descs[names[p.s1[r]]][typ(noise, p.t1[r])][p.idx1[r]],
                    descs[names[p.s2[r]]][typ(noise, p.t2[r])][p.idx2[r]],
                    distance,
                )
                for r in range(len(p))
            ]
        for v in ("intra", "inter"):
            dd = d[f"neg_{v}"] + d["pos"]
            ll = [0] * len(d[f"neg_{v}"]) + [1] * len(d["pos"])
            n_imb = len(d["pos"]) + int(len(d["pos"]) * 0.2)
            out[noise, v, "auc"] = ref_auc([-x for x in dd], ll)
            out[noise, v, "ap"] = ref_ap([-x for x in dd[:n_imb]], ll[:n_imb])
    return out


def ref_matching(descs, test, distance):
    out = {}
    for seq in test:
        ref = descs[seq]["ref"]
        for noise in NOISES:
            aps = []
            for i in range(1, 6):
                img = descs[seq][f"{noise}{i}"]
                D = np.array([[dist(a, b, distance) for b in img] for a in ref])
                nn = np.argmin(D, axis=1)
                correct = nn == np.arange(len(ref))
                aps.append(ref_ap(-D[np.arange(len(ref)), nn], correct, numpos=len(ref)))
            out[seq, noise] = np.mean(aps)
    return out


def ref_retrieval(descs, tasks, split, distance, pools):
    q, d = tasks.queries(split), tasks.distractors(split)
    qn, dn = q.names(), d.names()
    out = {}
    for noise in NOISES:
        for k in pools:
            out[noise, k] = []
    for r in range(len(q)):
        qd = descs[qn[r]]["ref"][q.idx[r]]
        row = np.array([dist(qd, descs[dn[j]]["ref"][d.idx[j]], distance) for j in range(len(d))])
        row = row[dn != qn[r]]
        for noise in NOISES:
            pos = [dist(qd, descs[qn[r]][f"{noise}{i}"][q.idx[r]], distance) for i in range(1, 6)]
            D_ = np.concatenate((pos, row))
            gt = np.r_[np.ones(5), np.zeros(len(row))]
            for k in pools:
                out[noise, k].append(ref_ap(-D_[:k], gt[:k]))
    return {key: float(np.mean(v)) for key, v in out.items()}


# ---- fixtures -------------------------------------------------------------------------------------
SEQS = ("i_a", "v_b", "i_c", "v_d")
COUNTS = {"i_a": 14, "v_b": 11, "i_c": 9, "v_d": 12}


def make_descs(distance, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for s in SEQS:
        if distance == "hamming":
            base = rng.integers(0, 256, size=(COUNTS[s], 2), dtype=np.uint8)
            out[s] = {
                t: base
                ^ (rng.random((COUNTS[s], 2)) < 0.1 * (t != "ref")).astype(np.uint8)
                * rng.integers(0, 256, (COUNTS[s], 2), dtype=np.uint8)
                for t in PATCH_TYPES
            }
        else:  # small integer values: many exact ties
            base = rng.integers(0, 4, size=(COUNTS[s], 3)).astype(np.float32)
            out[s] = {
                t: base + (t != "ref") * rng.integers(-1, 2, size=base.shape).astype(np.float32) for t in PATCH_TYPES
            }
    return out


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp("tasks")
    generate_task_files(
        root, {"x": Split("x", SEQS)}, COUNTS, n_pairs=300, n_queries=12, n_distractors=25, progress=False
    )
    return TaskFiles(root)


def value(scores, task, metric, noise, subset="all", variant=""):
    [s] = [
        s for s in scores if (s.task, s.metric, s.noise, s.subset, s.variant) == (task, metric, noise, subset, variant)
    ]
    return s.value


# ---- tests ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("distance", ["l2", "l1", "hamming"])
def test_verification_equals_loop_reference(tasks, distance):
    descs = make_descs(distance)
    scores = ht.evaluate_verification(descs, tasks, Split("x", SEQS), distance)
    ref = ref_verification(descs, tasks, "x", distance)
    for (noise, v, metric), expected in ref.items():
        assert value(scores, "verification", metric, NAMES[noise], variant=v) == pytest.approx(expected, abs=1e-6)
    mean6 = np.mean([ref[n, v, "ap"] for n in NOISES for v in ("intra", "inter")])
    assert ht.headline(scores, "verification").value == pytest.approx(mean6, abs=1e-6)


@pytest.mark.parametrize("distance", ["l2", "hamming"])
def test_matching_equals_loop_reference(distance):
    descs = make_descs(distance, seed=1)
    scores = ht.evaluate_matching(descs, Split("x", SEQS), distance)
    ref = ref_matching(descs, SEQS, distance)
    for noise in NOISES:
        for subset, members in (("all", SEQS), ("i", ("i_a", "i_c")), ("v", ("v_b", "v_d"))):
            expected = np.mean([ref[s, noise] for s in members])
            assert value(scores, "matching", "map", NAMES[noise], subset) == pytest.approx(expected, abs=1e-6)
    expected = np.mean([np.mean([ref[s, n] for s in SEQS]) for n in NOISES])
    assert ht.headline(scores, "matching").value == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("distance", ["l2", "hamming"])
def test_retrieval_equals_loop_reference(tasks, distance):
    descs = make_descs(distance, seed=2)
    pools = (6, 10, 20, 25, 10_000)  # 10,000 > list length: the whole list, as the official slicing
    scores = ht.evaluate_retrieval(descs, tasks, Split("x", SEQS), distance, pool_sizes=pools)
    ref = ref_retrieval(descs, tasks, "x", distance, pools)
    for noise in NOISES:
        for k in pools:
            got = value(scores, "retrieval", "map", NAMES[noise], variant=f"pool={k}")
            assert got == pytest.approx(ref[noise, k], abs=1e-6)
        expected = np.mean([ref[noise, k] for k in pools])
        assert value(scores, "retrieval", "map", NAMES[noise], variant="pool=mean") == pytest.approx(expected, abs=1e-6)


def test_matching_by_hand():
    # ref 0, 10, 20; image 0, 21, 19 -> nn: row0 -> 0 (d 0, right); row1 -> 2 (d 9, wrong);
    # row2 -> tie at d 1 between 1 and 2, the first wins (wrong). Ranked: right, wrong, wrong, numpos 3:
    # recall 0, 1/3, 1/3, 1/3; precision 1, 1, 1/2, 1/3 -> AP = 1/3 * (1 + 1) / 2 = 1/3
    ref = np.array([[0.0], [10.0], [20.0]], dtype=np.float32)
    img = np.array([[0.0], [21.0], [19.0]], dtype=np.float32)
    descs = {"v_x": {t: (ref if t == "ref" else img) for t in PATCH_TYPES}}
    scores = ht.evaluate_matching(descs, Split("x", ("v_x",)), "l2")
    assert value(scores, "matching", "map", "easy", "v") == pytest.approx(1 / 3)
    assert [s.subset for s in scores if s.noise == "mean"] == ["all", "v"]


def test_verification_ties_count_against_the_descriptor(tasks):
    # all descriptors equal: every distance is 0, negatives come first and stay first
    descs = {s: {t: np.zeros((COUNTS[s], 4), np.float32) for t in PATCH_TYPES} for s in SEQS}
    py = ht.evaluate_verification(descs, tasks, Split("x", SEQS), "l2")
    assert value(py, "verification", "auc", "easy", variant="intra") == pytest.approx(0.0)
    assert value(py, "verification", "ap", "mean", variant="mean") < 0.2
    ml = ht.evaluate_verification(descs, tasks, Split("x", SEQS), "l2", protocol="matlab")
    assert value(ml, "verification", "auc", "easy", variant="intra") == pytest.approx(1.0)
    assert value(ml, "verification", "ap", "mean", variant="mean") == pytest.approx(1.0)


def test_matlab_retrieval_uses_all_distractors_and_vlfeat_ap(tasks):
    descs = make_descs("l2", seed=3)
    scores = ht.evaluate_retrieval(descs, tasks, Split("x", SEQS), "l2", protocol="matlab")
    q, d = tasks.queries("x"), tasks.distractors("x")
    qn, dn = q.names(), d.names()
    for noise in NOISES:
        aps = []
        for r in range(len(q)):
            qd = descs[qn[r]]["ref"][q.idx[r]]
            row = [dist(qd, descs[dn[j]]["ref"][d.idx[j]], "l2") ** 2 for j in range(len(d)) if dn[j] != qn[r]]
            pos = [dist(qd, descs[qn[r]][f"{noise}{i}"][q.idx[r]], "l2") ** 2 for i in range(1, 6)]
            aps.append(ref_ap(-np.r_[pos, row], np.r_[np.ones(5), np.zeros(len(row))], vlfeat=True))
        got = value(scores, "retrieval", "map", NAMES[noise], variant="pool=all")
        assert got == pytest.approx(np.mean(aps), abs=1e-6)
    assert ht.headline(scores, "retrieval").variant == "pool=all"


def test_evaluate_all_and_errors(tasks):
    descs = make_descs("l2")
    scores = ht.evaluate_all(descs, tasks, Split("x", SEQS), "l2", progress=False, pool_sizes=(10, 20))
    assert {s.task for s in scores} == set(ht.TASKS)
    assert all(0.0 <= s.value <= 1.0 for s in scores)
    with pytest.raises(UnknownNameError, match="protocol"):
        ht.evaluate_all(descs, tasks, Split("x", SEQS), "l2", protocol="octave")
    with pytest.raises(UnknownNameError, match="task"):
        ht.evaluate_all(descs, tasks, Split("x", SEQS), "l2", which=("classification",))
    missing = {k: v for k, v in descs.items() if k != "v_d"}
    with pytest.raises(InputError, match="v_d"):
        ht.evaluate_matching(missing, Split("x", SEQS), "l2")
    short = {k: {t: a[:5] for t, a in v.items()} for k, v in descs.items()}
    with pytest.raises(DatasetError, match="regenerate"):
        ht.evaluate_verification(short, tasks, Split("x", SEQS), "l2")
    with pytest.raises(InputError, match="uint8"):
        ht.evaluate_matching(descs, Split("x", SEQS), Distance.HAMMING)
    with pytest.raises(InputError, match="pool sizes"):
        ht.evaluate_retrieval(descs, tasks, Split("x", SEQS), "l2", pool_sizes=(5,))


# ---- issue 18 (speed paths), issue 12 items 4 and 6 (degenerate and out-of-range descriptors) -----
def make_float_descs(seed=0, dim=8, noise=0.6, dtype=np.float32):
    """Real-valued descriptors (no exact ties): a shared base per patch plus per-type noise."""
    rng = np.random.default_rng(seed)
    out = {}
    for s in SEQS:
        base = rng.normal(size=(COUNTS[s], dim))
        out[s] = {t: (base + noise * (t != "ref") * rng.normal(size=base.shape)).astype(dtype) for t in PATCH_TYPES}
    return out


def all_values(scores):
    return {(s.task, s.metric, s.noise, s.subset, s.variant): s.value for s in scores}


def test_real_valued_descriptors_equal_loop_references(tasks):
    descs = make_float_descs(seed=4)
    split = Split("x", SEQS)
    ver = ht.evaluate_verification(descs, tasks, split, "l2")
    for (noise, v, metric), expected in ref_verification(descs, tasks, "x", "l2").items():
        assert value(ver, "verification", metric, NAMES[noise], variant=v) == pytest.approx(expected, abs=1e-9)
    mat = ht.evaluate_matching(descs, split, "l2")
    ref = ref_matching(descs, SEQS, "l2")
    for noise in NOISES:
        expected = np.mean([ref[s, noise] for s in SEQS])
        assert value(mat, "matching", "map", NAMES[noise]) == pytest.approx(expected, abs=1e-9)
    pools = (6, 10, 20, 10_000)
    ret = ht.evaluate_retrieval(descs, tasks, split, "l2", pool_sizes=pools)
    ref = ref_retrieval(descs, tasks, "x", "l2", pools)
    for noise in NOISES:
        for k in pools:
            assert value(ret, "retrieval", "map", NAMES[noise], variant=f"pool={k}") == pytest.approx(
                ref[noise, k], abs=1e-9
            )
    assert all(s.note == "" for s in ver + mat + ret)  # regular descriptors carry no note


@pytest.mark.parametrize("seed", [2, 5])
@pytest.mark.parametrize("protocol", ["python", "matlab"])
def test_retrieval_screened_and_dense_counting_agree(tasks, monkeypatch, seed, protocol):
    from desc_bench.bench import hpatches_retrieval as hr

    split, pools = Split("x", SEQS), (6, 10, 20, 10_000)
    for descs in (make_descs("l2", seed=seed), make_float_descs(seed=seed)):
        results = []
        for share in (0, 10**9):  # 0: always the screened sparse count; 10**9: always the dense count
            monkeypatch.setattr(hr, "DENSE_SHARE", share)
            scores = ht.evaluate_retrieval(descs, tasks, split, "l2", pool_sizes=pools, protocol=protocol, chunk=5)
            results.append([(s.value, s.note) for s in scores])
        assert results[0] == results[1]


def test_any_finite_range_gives_the_same_numbers(tasks):
    # issue 12 item 6: descriptors near 1e30 overflowed float32 in the nearest-neighbour GEMM
    split = Split("x", SEQS)
    descs = make_float_descs(seed=6)
    base = all_values(ht.evaluate_all(descs, tasks, split, "l2", progress=False, pool_sizes=(10, 20)))
    for factor, dtype in ((2.0**100, np.float32), (2.0**-100, np.float32), (2.0**900, np.float64)):
        scaled = {s: {t: (a.astype(dtype) * factor) for t, a in v.items()} for s, v in descs.items()}
        assert np.isfinite(next(iter(scaled["i_a"].values()))).all()
        got = all_values(ht.evaluate_all(scaled, tasks, split, "l2", progress=False, pool_sizes=(10, 20)))
        assert got == base, f"factor {factor}"  # a power of two: exactly the same rankings
    near_1e30 = {s: {t: a * np.float32(1e30) for t, a in v.items()} for s, v in descs.items()}
    got = all_values(ht.evaluate_all(near_1e30, tasks, split, "l2", progress=False, pool_sizes=(10, 20)))
    assert got == pytest.approx(base, abs=1e-9)
    assert headline_of(got, "matching") > 0.3  # was about 0.02 with the float32 overflow


def headline_of(values, task):
    keys = {"verification": ("ap", "mean", "all", "mean"), "matching": ("map", "mean", "all", "")}
    return values[(task, *keys[task])]


def test_non_finite_descriptors_are_refused(tasks):
    descs = make_float_descs(seed=7)
    descs["v_b"]["e2"][3, 1] = np.inf
    with pytest.raises(InputError, match="NaN or infinite"):
        ht.evaluate_matching(descs, Split("x", SEQS), "l2")


def test_constant_descriptor_is_flagged_degenerate(tasks):
    # issue 12 item 4: every patch the same vector scored retrieval 100 % (ties go to the positives)
    split = Split("x", SEQS)
    descs = {s: {t: np.full((COUNTS[s], 4), 0.25, np.float32) for t in PATCH_TYPES} for s in SEQS}
    scores = ht.evaluate_all(descs, tasks, split, "l2", progress=False, pool_sizes=(10, 20))
    assert ht.headline(scores, "retrieval").value == pytest.approx(1.0)  # the official tie rule is kept
    assert all(s.note.startswith("degenerate:") for s in scores)
    fields = ht.row_fields(ht.headline(scores, "retrieval"), "weights saw HPatches")
    assert fields["notes"].startswith("weights saw HPatches; degenerate:") and "note" not in fields


def test_ties_deciding_the_number_are_flagged(tasks):
    # two distinct vectors only: most distances tie exactly, so the tie rule decides retrieval
    split = Split("x", SEQS)
    rng = np.random.default_rng(8)
    descs = {s: {t: rng.integers(0, 2, size=(COUNTS[s], 1)).astype(np.float32) for t in PATCH_TYPES} for s in SEQS}
    scores = ht.evaluate_retrieval(descs, tasks, split, "l2", pool_sizes=(10, 20))
    top = ht.headline(scores, "retrieval")
    assert top.note.startswith("degenerate: exact distance ties decide this number")
