"""Matching: distance matrices (L2, optionally on L2-normalised rows; L1; Hamming on packed bytes),
exact nearest neighbours (first index on ties, as argmin and the HPatches code), mutual nearest
neighbours and the ratio test; and describing an image at frames into CPU tensors."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..adapters.base import Descriptor, Distance, Frames


def describe(descriptor: Descriptor, image: np.ndarray, frames: Frames) -> torch.Tensor:
    """``(N, dim)`` descriptors on the CPU (float32, or uint8 for binary descriptors)."""
    if len(frames) == 0:
        dtype = torch.uint8 if descriptor.distance is Distance.HAMMING else torch.float32
        return torch.zeros(0, descriptor.dim, dtype=dtype)
    return descriptor.compute_dense(image, frames).detach().cpu()


def _bits(x: torch.Tensor) -> torch.Tensor:
    shifts = torch.arange(8, dtype=torch.uint8)
    return ((x.unsqueeze(-1) >> shifts) & 1).reshape(x.shape[0], -1).float()


def distance_matrix(a: torch.Tensor, b: torch.Tensor, distance: Distance, normalise: bool = False) -> torch.Tensor:
    """``(Na, Nb)`` distances. L2 (optionally on L2-normalised rows), L1, or Hamming on packed bytes."""
    if distance is Distance.HAMMING:
        ba, bb = _bits(a), _bits(b)
        return ba.sum(1, keepdim=True) + bb.sum(1)[None] - 2.0 * ba @ bb.T
    a, b = a.float(), b.float()
    if normalise:
        a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    return torch.cdist(a, b, p=1.0 if distance is Distance.L1 else 2.0)


def nearest(a: torch.Tensor, b: torch.Tensor, distance: Distance, normalise: bool = False) -> np.ndarray:
    """Index in ``b`` of each row's exact nearest neighbour (first on ties)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, np.int64)
    return distance_matrix(a, b, distance, normalise).argmin(dim=1).numpy()


def mutual_nearest(a: torch.Tensor, b: torch.Tensor, distance: Distance, normalise: bool = True) -> np.ndarray:
    """``(M, 2)`` index pairs (i, j) that are each other's nearest neighbour."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((0, 2), np.int64)
    d = distance_matrix(a, b, distance, normalise)
    ab, ba = d.argmin(dim=1).numpy(), d.argmin(dim=0).numpy()
    i = np.nonzero(ba[ab] == np.arange(len(ab)))[0]
    return np.stack([i, ab[i]], axis=1)


def ratio_matches(
    a: torch.Tensor, b: torch.Tensor, distance: Distance, ratio: float, normalise: bool = True
) -> np.ndarray:
    """``(M, 2)`` index pairs (i, nn(i)) passing Lowe's ratio test: nearest distance strictly below
    ``ratio`` x the second nearest (rows of ``a`` with a single candidate in ``b`` are kept)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((0, 2), np.int64)
    d = distance_matrix(a, b, distance, normalise)
    if len(b) == 1:
        return np.stack([np.arange(len(a)), np.zeros(len(a), np.int64)], axis=1)
    best = torch.topk(d, 2, dim=1, largest=False)
    keep = (best.values[:, 0] < ratio * best.values[:, 1]).numpy()
    i = np.nonzero(keep)[0]
    return np.stack([i, best.indices[i, 0].numpy()], axis=1).astype(np.int64)
