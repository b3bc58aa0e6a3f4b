"""Visual vocabularies: k-means with faiss (Johnson et al.; faiss-cpu from PyPI, its GPU build where
installed), cached by content, and hard assignment of descriptors to their nearest word (exact, or
approximate with HNSW for large vocabularies).

The cache file name hashes the training descriptors' bytes, the number of words and iterations, the
seed and the faiss version, so any change retrains; files are written atomically.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ...errors import DescriptorUnavailableError, InputError
from ...io.atomic import write_npz


def _faiss():
    try:
        import faiss
    except ImportError:
        raise DescriptorUnavailableError(
            "the bow-retrieval benchmark needs faiss: pip install 'desc-bench[retrieval]' (faiss-cpu)"
        ) from None
    return faiss


def as_float(descriptors: np.ndarray) -> np.ndarray:
    """float32 rows for k-means: binary (uint8 packed) descriptors become their 0/1 bits, so that
    squared L2 between them is the Hamming distance."""
    x = np.asarray(descriptors)
    if x.dtype == np.uint8:
        x = np.unpackbits(x, axis=1)
    return np.ascontiguousarray(x, dtype=np.float32)


def vocabulary_key(x: np.ndarray, words: int, iterations: int, seed: int) -> str:
    h = hashlib.sha256(np.ascontiguousarray(x).tobytes())
    h.update(f"{x.shape}:{words}:{iterations}:{seed}:faiss-{_faiss().__version__}".encode())
    return h.hexdigest()[:16]


def train_vocabulary(
    x: np.ndarray, words: int, iterations: int = 20, seed: int = 0, cache: Path | None = None, log=lambda _: None
) -> tuple[np.ndarray, str]:
    """(centroids ``(words, dim)`` float32, content key) by k-means on ``x``; loaded from ``cache``
    (a folder) when the same descriptors, sizes and seed were trained before."""
    x = as_float(x)
    if words < 2:
        raise InputError(f"bow-retrieval: words must be at least 2, got {words}")
    if len(x) < words:
        raise InputError(
            f"bow-retrieval: {len(x)} training descriptors cannot make {words} words; lower words= or raise --budget"
        )
    key = vocabulary_key(x, words, iterations, seed)
    path = None if cache is None else Path(cache) / f"vocabulary-{key}.npz"
    if path is not None and path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                centroids = data["centroids"]
            if centroids.shape == (words, x.shape[1]):
                return centroids, key
        except (OSError, ValueError, KeyError):
            log(f"warning: damaged vocabulary file {path}; training it again")
    faiss = _faiss()
    kmeans = faiss.Kmeans(x.shape[1], words, niter=iterations, seed=seed, verbose=False, gpu=_gpus(faiss))
    kmeans.train(x)
    centroids = np.ascontiguousarray(kmeans.centroids, np.float32)
    if path is not None:
        write_npz(path, {"centroids": centroids})
    return centroids, key


def _gpus(faiss) -> int | bool:
    count = getattr(faiss, "get_num_gpus", lambda: 0)()
    return count if count > 0 else False


ASSIGNMENTS = ("exact", "hnsw")
HNSW_M, HNSW_EF_SEARCH = 32, 64


def assigner(centroids: np.ndarray, method: str = "exact"):
    """A faiss index over the words: ``exact`` (IndexFlatL2) or ``hnsw`` (approximate nearest word,
    IndexHNSWFlat M=32, efSearch=64: the role of Philbin et al.'s randomised kd-trees for large
    vocabularies)."""
    if method not in ASSIGNMENTS:
        raise InputError(f"bow-retrieval: assignment must be one of {', '.join(ASSIGNMENTS)}, got {method!r}")
    faiss = _faiss()
    dim = centroids.shape[1]
    index = faiss.IndexFlatL2(dim) if method == "exact" else faiss.IndexHNSWFlat(dim, HNSW_M)
    if method == "hnsw":
        index.hnsw.efSearch = HNSW_EF_SEARCH
    index.add(np.ascontiguousarray(centroids, np.float32))
    return index


def assign(centroids_or_index, descriptors: np.ndarray) -> np.ndarray:
    """Index of each descriptor's nearest word (hard assignment), int64 ``(N,)``; takes the
    centroids (exact search) or an index from :func:`assigner`."""
    x = as_float(descriptors)
    if len(x) == 0:
        return np.zeros(0, np.int64)
    index = centroids_or_index
    if isinstance(index, np.ndarray):
        index = assigner(index)
    _, nearest = index.search(x, 1)
    return nearest[:, 0].astype(np.int64)
