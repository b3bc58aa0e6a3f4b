"""The bfloat16 screens give exactly the numbers of the float32 screens (the code before them) and of
brute-force float64 arithmetic, on randomized cases full of exact and near ties."""

from __future__ import annotations

import numpy as np
import pytest

from desc_bench.adapters.base import Distance
from desc_bench.bench import bf16_screen as B
from desc_bench.bench import hpatches_common as C
from desc_bench.bench import hpatches_matching as M
from desc_bench.bench import hpatches_tasks as ht
from desc_bench.datasets.base import PATCH_TYPES, Split
from desc_bench.datasets.tasks import TaskFiles, generate_task_files
from desc_bench.errors import InputError

# forced bfloat16 runs anywhere torch accumulates bfloat16 products in float32 (the bound's premise)
needs_bf16 = pytest.mark.skipif(not B.self_check(), reason="torch's bfloat16 product does not accumulate in float32")


def brute(a, b):
    d = ((a[:, None, :].astype(np.float64) - b[None].astype(np.float64)) ** 2).sum(axis=2)
    return d.argmin(axis=1)  # the first index on exact ties


def case(kind: str, rng):
    n, m, dim = int(rng.integers(1, 120)), int(rng.integers(1, 120)), int(rng.choice([8, 32, 128, 129]))
    if kind == "small-integers":  # many exact ties
        a = rng.integers(0, 4, (n, dim)).astype(np.uint8)
        return a, [rng.integers(0, 4, (m, dim)).astype(np.uint8) for _ in range(3)]
    if kind == "constant":  # every column ties: the rows go to the float32 screen
        return np.ones((n, dim), np.float32), [np.ones((m, dim), np.float32) for _ in range(2)]
    if kind == "near-duplicates":  # exact duplicates and columns within 1e-7..1e-2 of each other
        a = rng.standard_normal((n, dim)).astype(np.float32)
        base = np.concatenate([a[: m // 2], rng.standard_normal((m - m // 2, dim))]).astype(np.float32)
        images = []
        for _ in range(3):
            noisy = base + np.float32(10.0 ** -rng.uniform(2, 7)) * rng.standard_normal(base.shape).astype(np.float32)
            images.append(np.concatenate([noisy, noisy[: m // 3]]))
        return a, images
    if kind == "near-constant":
        c = rng.standard_normal(dim).astype(np.float32)
        a = c + np.float32(1e-3) * rng.standard_normal((n, dim)).astype(np.float32)
        return a, [c + np.float32(1e-3) * rng.standard_normal((m, dim)).astype(np.float32) for _ in range(3)]
    if kind == "huge-float64":
        return rng.standard_normal((n, dim)) * 1e30, [rng.standard_normal((m, dim)) * 1e30 for _ in range(2)]
    assert kind == "tiny"
    a = (rng.standard_normal((n, dim)) * 1e-30).astype(np.float32)
    return a, [(rng.standard_normal((m, dim)) * 1e-30).astype(np.float32) for _ in range(2)]


KINDS = ["small-integers", "constant", "near-duplicates", "near-constant", "huge-float64", "tiny"]


@needs_bf16
@pytest.mark.parametrize("kind", KINDS)
def test_nearest_bf16_equals_float32_and_brute_force(kind):
    rng = np.random.default_rng(KINDS.index(kind))
    for _ in range(6):
        a, images = case(kind, rng)
        new = M.nearest(a, images, Distance.L2, screen="bfloat16")
        old = M.nearest(a, images, Distance.L2, screen="float32")
        for (nn, d), (nn_old, d_old), b in zip(new, old, images):
            np.testing.assert_array_equal(nn, nn_old)
            np.testing.assert_array_equal(d, d_old)
            if kind != "huge-float64":  # squares of 1e30 overflow the brute force
                np.testing.assert_array_equal(nn, brute(a, b))


def test_screen_names_and_bits():
    with pytest.raises(InputError):
        B.chosen("float16")
    assert not B.chosen("float32")
    x = np.array([0.0, 1e-40, 0.3, 1.0, 1.0078125, 3.0e38, np.inf])
    bits = B.floor_bits(x)
    values = (bits.view(np.uint16).astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    assert (values <= x).all() and values[3] == 1.0 and values[4] == 1.0078125
    assert bits[-1] == B.INF_BITS - 1  # the largest finite value
    step = (bits[:-1].view(np.uint16).astype(np.uint32) + 1 << 16).view(np.float32).astype(np.float64)
    assert (step > x[:-1]).all()  # the largest such value


@needs_bf16
def test_bound_holds_on_random_products():
    for seed in range(3):
        assert B.self_check(seed)


def test_small_pages_restores_numpy_setting():
    toggle = np._core.multiarray._set_madvise_hugepage
    before = toggle(True)
    try:
        with C.small_pages():
            with C.small_pages():
                assert toggle(False) is False  # off inside (and nested)
            assert toggle(False) is False
        assert toggle(True) is True  # restored
    finally:
        toggle(before)


SEQS = ("i_a", "v_b", "i_c", "v_d", "v_e")
COUNTS = {"i_a": 40, "v_b": 33, "i_c": 27, "v_d": 36, "v_e": 2}


def tie_descs(seed):
    """Descriptors full of exact and near ties across patches, images and sequences."""
    rng = np.random.default_rng(seed)
    shared = rng.standard_normal((8, 16)).astype(np.float32)
    out = {}
    for s in SEQS:
        base = shared[rng.integers(0, 8, COUNTS[s])] + np.float32(1e-4) * rng.integers(0, 3, (COUNTS[s], 16))
        out[s] = {
            t: (base + (t != "ref") * np.float32(1e-6) * rng.standard_normal(base.shape)).astype(np.float32)
            for t in PATCH_TYPES
        }
    return out


@needs_bf16
@pytest.mark.parametrize("protocol", ["python", "matlab"])
def test_tasks_bf16_equal_float32(tmp_path, protocol):
    generate_task_files(
        tmp_path, {"x": Split("x", SEQS)}, COUNTS, n_pairs=200, n_queries=30, n_distractors=60, progress=False
    )
    tasks = TaskFiles(tmp_path)
    split = Split("x", SEQS)
    for seed in (0, 1):
        descs = tie_descs(seed)
        got = {}
        for screen in ("bfloat16", "float32"):
            got[screen] = ht.evaluate_matching(descs, split, "l2", protocol=protocol, screen=screen)
            got[screen] += ht.evaluate_retrieval(descs, tasks, split, "l2", (10, 50), protocol=protocol, screen=screen)
        assert [(s.value, s.note) for s in got["bfloat16"]] == [(s.value, s.note) for s in got["float32"]]
