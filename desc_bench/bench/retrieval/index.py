"""Bag-of-words vectors and the inverted file (Sivic & Zisserman 2003; Philbin et al. 2007).

tf-idf: ``w_id = (n_id / n_d) log(N / N_i)`` with ``n_id`` the occurrences of word i in image d,
``n_d`` the words of d, ``N`` the database size and ``N_i`` the database images containing i;
every vector is L2-normalised and images are ranked by dot product. The database matrix is a
``scipy.sparse`` CSR matrix (rows = images): multiplying it by a sparse query touches only the
posting lists of the query's words, which is what an inverted file does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp


def counts(words: np.ndarray, n_words: int) -> sp.csr_matrix:
    """``(1, n_words)`` word counts of one image."""
    values, freq = np.unique(np.asarray(words, np.int64), return_counts=True)
    return sp.csr_matrix((freq.astype(np.float64), (np.zeros(len(values), np.int64), values)), shape=(1, n_words))


def _normalise(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.csr_matrix(sp.diags(1.0 / norms) @ m)


class InvertedFile:
    """tf-idf weighted, L2-normalised database vectors; ``search`` returns dot-product scores."""

    def __init__(self, database_words: Sequence[np.ndarray], n_words: int):
        self.n_words = n_words
        tf = sp.vstack([counts(w, n_words) for w in database_words]).tocsr()
        lengths = np.asarray(tf.sum(axis=1)).ravel()
        lengths[lengths == 0] = 1.0
        tf = sp.csr_matrix(sp.diags(1.0 / lengths) @ tf)
        containing = np.bincount(tf.indices, minlength=n_words)
        self.idf = np.where(containing > 0, np.log(len(database_words) / np.maximum(containing, 1)), 0.0)
        self.vectors = _normalise(tf @ sp.diags(self.idf)).tocsr()
        self.postings = self.vectors.T.tocsr()  # word -> images (the inverted file proper)

    def vector(self, words: np.ndarray) -> sp.csr_matrix:
        """The query's tf-idf vector with the database idf, L2-normalised."""
        c = counts(words, self.n_words)
        total = c.sum()
        return _normalise(c.multiply(self.idf[None, :]) / (total if total else 1.0))

    def search(self, query: sp.csr_matrix) -> np.ndarray:
        """Dot product of ``query`` with every database vector, ``(N,)``."""
        return np.asarray((query @ self.postings).todense()).ravel()

    @staticmethod
    def average(vectors: Sequence[sp.csr_matrix]) -> sp.csr_matrix:
        """Average query expansion: the mean of the vectors, L2-normalised."""
        return _normalise(sp.csr_matrix(sp.vstack(vectors).mean(axis=0)))
