"""bow-retrieval on a small generated retrieval-synth: spatial verification and query expansion
never lose to the stage before them, for SIFT and RootSIFT (the Done-when test of issue 15).

With the default top (1000) the whole small database is verified, so query expansion can only
reorder the unverified tail (the verified images keep their places): here it ties with SV."""

from __future__ import annotations

from dataclasses import replace

import faiss
import pytest

from desc_bench.adapters.registry import descriptor
from desc_bench.bench.benchmarks import bow_retrieval
from desc_bench.bench.benchmarks.base import Context, benchmark
from desc_bench.bench.features import FeatureStore, feature_key
from desc_bench.bench.runner import subject_of
from desc_bench.datasets.retrieval import REVISITED
from desc_bench.datasets.synth.retrieval_synth import Layout, generate_synthetic, open_synthetic
from desc_bench.errors import InputError

SMALL = Layout(landmarks=3, views=4, queries=1, distractor_views=2, distractors=2, train_views=1, size=(320, 240))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The small collection plus an unreadable database image (which must stay, without features)."""
    folder = generate_synthetic(tmp_path_factory.mktemp("retrieval"), SMALL)
    broken = folder / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    data = open_synthetic(folder, words=256)
    return replace(data, images=(*data.images, broken))


def _revisited(data):
    """The same queries under the revisited protocols: easy = the first half of the positives, hard =
    the rest (so Medium is the original ground truth) and a copy whose Hard protocol has no positives."""
    queries = []
    for q in data.queries:
        positives, junk = q.truth["original"]
        half = len(positives) // 2
        easy, hard = positives[:half], positives[half:]
        truth = {"easy": (easy, junk + hard), "medium": (positives, junk), "hard": ((), junk + positives)}
        queries.append(replace(q, truth=truth))
    return replace(data, protocols=REVISITED, queries=tuple(queries))


@pytest.mark.parametrize("name", ["sift-opencv", "rootsift-opencv"])
def test_sv_and_qe_do_not_lose(small, name, tmp_path, monkeypatch):
    bench = benchmark("bow-retrieval:budget=250")
    desc = descriptor(name)
    store = FeatureStore(tmp_path, feature_key(desc, small.name, small.version, "cpu"))
    messages = []
    features = bench.features(desc, small, store, Context(progress=False, log=messages.append))
    assert any("broken.jpg" in m and "without features" in m for m in messages)
    assert len(features["database"]) == len(small.images) and len(features["database"][-1].words) == 0
    rows = bench.evaluate(features, small, subject_of(desc, bench), Context(progress=False))
    value = {r.metric: r.value for r in rows}
    assert set(value) == {"bow", "bow+sv", "bow+sv+qe"}
    assert 0.2 < value["bow"] <= value["bow+sv"] <= value["bow+sv+qe"] <= 1.0, value
    assert value["bow+sv"] > value["bow"]  # verification really re-ranks
    assert all(r.units.kind == "query" and r.units.mean() == pytest.approx(r.value) for r in rows)  # CI units
    n = len(small.images)  # a partial database is marked, so it never passes for the full set
    partial = bench.evaluate(features, replace(small, expected_images=n + 5), subject_of(desc, bench), Context())
    assert all(r.variant.endswith(f":incomplete={n}of{n + 5}") and r.notes.startswith("incomplete") for r in partial)
    notes = rows[0].notes
    expected = ("detector=dog", "budget=250", "words=256", "vocabulary=retrieval-synth/train", "sv_error=12.5px")
    for part in (*expected, "top=1000", "qe_size=5", "qe_inliers=20"):
        assert part in notes
    assert rows[0].variant == "det=dog:budget=250:words=256"
    if name == "sift-opencv":
        # resumable at every stage: features, vocabulary and assignments all come from the store
        monkeypatch.setattr(bow_retrieval, "assign", None)
        monkeypatch.setattr(bow_retrieval.det, "detect", None)
        monkeypatch.setattr(faiss, "Kmeans", None)
        again = bench.features(desc, small, store, Context(progress=False))
        assert [a.words.tolist() for a in again["database"]] == [a.words.tolist() for a in features["database"]]
        monkeypatch.undo()
        revisited = bench.evaluate(features, _revisited(small), subject_of(desc, bench), Context(progress=False))
        by = {(r.subset, r.metric): r for r in revisited}
        assert {s for s, _ in by} == set(REVISITED)
        for metric in value:
            assert by["medium", metric].value == pytest.approx(value[metric])  # the original ground truth
            assert by["hard", metric].value is None and "no query has a positive" in by["hard", metric].error
        few = benchmark("bow-retrieval:budget=250:top=3")  # verifies only the top 3: rows of their own
        rows = few.evaluate(features, small, subject_of(desc, few), Context(progress=False))
        assert rows[0].variant == "det=dog:budget=250:words=256:top=3" and "top=3 " in rows[0].notes
        assert {r.metric: r.value for r in rows}["bow"] == value["bow"]


def test_bad_options_are_refused():
    with pytest.raises(InputError, match="words"):
        benchmark("bow-retrieval:words=1")
    with pytest.raises(InputError, match="top"):
        benchmark("bow-retrieval:top=0")
