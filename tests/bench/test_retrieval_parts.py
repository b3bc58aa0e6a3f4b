"""Vocabulary, inverted file and spatial verification of bow-retrieval on hand-built inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from desc_bench.bench.retrieval import vocabulary
from desc_bench.bench.retrieval.index import InvertedFile
from desc_bench.bench.retrieval.verify import Frames2D, SVParams, rerank, tentative, verify
from desc_bench.errors import InputError


def test_vocabulary_is_cached_by_content(tmp_path, monkeypatch):
    x = np.random.default_rng(0).normal(size=(600, 8)).astype(np.float32)
    first, key = vocabulary.train_vocabulary(x, 16, 5, 0, tmp_path)
    assert (tmp_path / f"vocabulary-{key}.npz").is_file()
    import faiss

    monkeypatch.setattr(faiss, "Kmeans", None)  # a second training would fail: the file is used
    again, same = vocabulary.train_vocabulary(x, 16, 5, 0, tmp_path)
    assert same == key and np.array_equal(first, again)
    assert vocabulary.vocabulary_key(x[:-1], 16, 5, 0) != key and vocabulary.vocabulary_key(x, 17, 5, 0) != key
    with pytest.raises(InputError, match="cannot make 1000 words"):
        vocabulary.train_vocabulary(x, 1000, 5, 0)


def test_assignment_exact_and_hnsw():
    rng = np.random.default_rng(1)
    centroids = rng.normal(size=(256, 16)).astype(np.float32)
    x = centroids[rng.integers(0, 256, 800)] + rng.normal(0, 0.05, (800, 16)).astype(np.float32)
    exact = vocabulary.assign(centroids, x)
    expected = np.argmin(((x[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert np.array_equal(exact, expected)
    approx = vocabulary.assign(vocabulary.assigner(centroids, "hnsw"), x)
    assert np.mean(approx == exact) > 0.95
    bits = vocabulary.as_float(np.array([[0b10000001]], np.uint8))
    assert bits.tolist() == [[1, 0, 0, 0, 0, 0, 0, 1]]


def test_tf_idf_inverted_file():
    # image 0: words 0,0,1; image 1: word 1; image 2: word 2. idf: log(3/1), log(3/2), log(3/1)
    index = InvertedFile([np.array([0, 0, 1]), np.array([1]), np.array([2])], 4)
    w0 = np.array([2 / 3 * math.log(3), 1 / 3 * math.log(1.5), 0, 0])
    np.testing.assert_allclose(index.vectors[0].toarray().ravel(), w0 / np.linalg.norm(w0))
    scores = index.search(index.vector(np.array([0])))
    assert scores[0] == pytest.approx(w0[0] / np.linalg.norm(w0)) and scores[1] == 0 and scores[2] == 0
    assert index.search(index.vector(np.array([3]))).tolist() == [0, 0, 0]  # a word in no database image


def _rotated(n=40, angle=30.0, scale=1.5, seed=0):
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 300, (n, 2))
    t = np.deg2rad(angle)
    a = scale * np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    moved = xy @ a.T + [40, -10]
    q = Frames2D(xy, np.full(n, 4.0), rng.uniform(0, 360, n))
    d = Frames2D(moved, q.scale * scale, q.angle + angle)  # OpenCV: angles add, sizes scale
    return q, d


def test_single_correspondence_hypotheses_find_a_similarity():
    q, d = _rotated()
    words = np.arange(40)
    pairs = tentative(words, words, 5)
    assert pairs.tolist() == [[i, i] for i in range(40)]
    assert verify(q, d, pairs, SVParams(error=2.0))[0] == 40
    wrong = Frames2D(d.xy, d.scale, d.angle - 60)  # orientations that disagree: one inlier each at most
    assert verify(q, wrong, pairs, SVParams(error=2.0, refine=0))[0] == 0
    shuffled = Frames2D(d.xy[::-1].copy(), d.scale, d.angle)
    assert verify(q, shuffled, pairs, SVParams(error=2.0))[0] < 5


def test_burst_words_and_rerank():
    assert len(tentative(np.array([7] * 6), np.array([7]), 5)) == 0  # word seen 6 times in the query
    assert tentative(np.array([1, 2]), np.array([2, 2, 1]), 5).tolist() == [[0, 2], [1, 0], [1, 1]]
    order = np.array([4, 3, 2, 1, 0])
    assert rerank(order, {2: 10, 1: 12, 0: 50}, 4).tolist() == [1, 2, 4, 3, 0]
