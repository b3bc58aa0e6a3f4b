"""Geometry shared by datasets and benchmarks (bottom layer, numpy only): applying homographies,
inside-image tests, and the elliptical regions of the Oxford protocol (shapes, their local affine
warps, overlap errors and one-to-one geometric matches, after Mikolajczyk et al., IJCV 2005)."""

from __future__ import annotations

import numpy as np

OVERLAP_RADIUS = 30.0  # normalised region radius (Mikolajczyk)
DEFAULT_RADIUS = 10.0  # region radius for frames without a scale
OVERLAP_GRID = 64  # samples per side when integrating an overlap numerically


def warp_points(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Apply a 3x3 homography to ``(N, 2)`` points."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    h = np.concatenate([xy, np.ones((len(xy), 1))], axis=1) @ np.asarray(H, np.float64).T
    return h[:, :2] / h[:, 2:]


def inside(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    return (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)


def frame_shapes(scale: np.ndarray | None, count: int, default_radius: float = DEFAULT_RADIUS) -> np.ndarray:
    """``(N, 2, 2)`` region shapes Sigma (the region is ``(x - c)^T Sigma^-1 (x - c) <= 1``): circles
    of radius ``scale / 2`` (OpenCV's keypoint size is a diameter), or ``default_radius`` without one."""
    radius = np.full(count, default_radius) if scale is None else np.asarray(scale, np.float64) / 2.0
    return (radius**2)[:, None, None] * np.eye(2)[None]


def homography_jacobian(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """``(N, 2, 2)`` Jacobian of the homography at each point."""
    H = np.asarray(H, np.float64)
    x, y = xy[:, 0], xy[:, 1]
    u = H[0, 0] * x + H[0, 1] * y + H[0, 2]
    v = H[1, 0] * x + H[1, 1] * y + H[1, 2]
    w = H[2, 0] * x + H[2, 1] * y + H[2, 2]
    J = np.empty((len(xy), 2, 2))
    J[:, 0, 0] = (H[0, 0] * w - u * H[2, 0]) / w**2
    J[:, 0, 1] = (H[0, 1] * w - u * H[2, 1]) / w**2
    J[:, 1, 0] = (H[1, 0] * w - v * H[2, 0]) / w**2
    J[:, 1, 1] = (H[1, 1] * w - v * H[2, 1]) / w**2
    return J


def warp_ellipses(H: np.ndarray, centres: np.ndarray, shapes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map ellipses through H with its local affine approximation: ``Sigma' = J Sigma J^T``."""
    J = homography_jacobian(H, centres)
    return warp_points(H, centres), J @ shapes @ np.transpose(J, (0, 2, 1))


def overlap_errors(ca, sa, cb, sb, radius: float = OVERLAP_RADIUS, grid: int = OVERLAP_GRID) -> np.ndarray:
    """Overlap error ``1 - IoU`` of ellipse pairs (centres ``(P, 2)``, shapes ``(P, 2, 2)``), after
    scaling both shapes about their centres by ``radius / r_A`` with ``r_A = det(Sigma_A)^(1/4)``
    (the centre offset is not scaled). The areas are integrated on a ``grid`` x ``grid`` lattice of
    cell centres over the pair's bounding box."""
    ca, cb = np.asarray(ca, np.float64).reshape(-1, 2), np.asarray(cb, np.float64).reshape(-1, 2)
    sa, sb = np.asarray(sa, np.float64).reshape(-1, 2, 2), np.asarray(sb, np.float64).reshape(-1, 2, 2)
    if len(ca) == 0:
        return np.zeros(0)
    factor = radius / np.linalg.det(sa) ** 0.25
    sa, sb = sa * (factor**2)[:, None, None], sb * (factor**2)[:, None, None]
    ia, ib = np.linalg.inv(sa), np.linalg.inv(sb)
    half_a = np.sqrt(np.stack([sa[:, 0, 0], sa[:, 1, 1]], 1))  # bounding-box half sizes
    half_b = np.sqrt(np.stack([sb[:, 0, 0], sb[:, 1, 1]], 1))
    lo = np.minimum(ca - half_a, cb - half_b)
    hi = np.maximum(ca + half_a, cb + half_b)
    steps = (np.arange(grid) + 0.5) / grid
    out = np.empty(len(ca))
    for start in range(0, len(ca), 1024):
        sl = slice(start, start + 1024)
        gx = lo[sl, 0, None] + (hi[sl, 0] - lo[sl, 0])[:, None] * steps  # (P, G)
        gy = lo[sl, 1, None] + (hi[sl, 1] - lo[sl, 1])[:, None] * steps
        X, Y = gx[:, None, :], gy[:, :, None]  # (P, 1, G), (P, G, 1)

        a, b = _inside_ellipse(X, Y, ca[sl], ia[sl]), _inside_ellipse(X, Y, cb[sl], ib[sl])
        inter = (a & b).sum(axis=(1, 2))
        union = (a | b).sum(axis=(1, 2))
        out[sl] = 1.0 - inter / np.maximum(union, 1)
    return out


def _inside_ellipse(X: np.ndarray, Y: np.ndarray, c: np.ndarray, inv: np.ndarray) -> np.ndarray:
    """``(P, G, G)`` lattice points ``(X, Y)`` inside the ellipses (centres ``c``, inverse shapes ``inv``)."""
    dx, dy = X - c[:, 0, None, None], Y - c[:, 1, None, None]
    q = inv[:, 0, 0, None, None] * dx * dx + 2 * inv[:, 0, 1, None, None] * dx * dy + inv[:, 1, 1, None, None] * dy * dy
    return q <= 1.0


def lens_area(r1, r2, d) -> np.ndarray:
    """Area of the intersection of two discs of radii ``r1``, ``r2`` whose centres are ``d`` apart."""
    r1, r2, d = np.broadcast_arrays(np.asarray(r1, float), np.asarray(r2, float), np.asarray(d, float))
    out = np.zeros(r1.shape)
    small = np.minimum(r1, r2)
    contained = d <= np.abs(r1 - r2)
    out[contained] = np.pi * small[contained] ** 2
    part = ~contained & (d < r1 + r2)
    a, b, c = r1[part], r2[part], d[part]
    alpha = np.arccos(np.clip((c**2 + a**2 - b**2) / (2 * c * a), -1, 1))
    beta = np.arccos(np.clip((c**2 + b**2 - a**2) / (2 * c * b), -1, 1))
    kite = 0.5 * np.sqrt(np.clip((-c + a + b) * (c + a - b) * (c - a + b) * (c + a + b), 0, None))
    out[part] = a**2 * alpha + b**2 * beta - kite
    return out


def geometric_matches(ca, sa, cb, sb, max_error: float = 0.4) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matches ``(M, 2)`` between regions A and B (B already in A's image) with overlap
    error < ``max_error``, chosen greedily by increasing error; returns the matches and errors."""
    if len(ca) == 0 or len(cb) == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    factor = OVERLAP_RADIUS / np.linalg.det(sa) ** 0.25  # (Na,)
    area_a, area_b = np.sqrt(np.linalg.det(sa)), np.sqrt(np.linalg.det(sb))
    reach_a = np.sqrt(np.linalg.eigvalsh(sa)[:, -1]) * factor
    reach_b = np.sqrt(np.linalg.eigvalsh(sb)[:, -1])
    dist = np.linalg.norm(ca[:, None] - cb[None], axis=2)
    ratio = np.minimum(area_a[:, None], area_b[None]) / np.maximum(area_a[:, None], area_b[None])
    # IoU <= area ratio, and disjoint regions cannot match: prune before integrating
    i, j = np.nonzero((ratio > 1.0 - max_error) & (dist < reach_a[:, None] + reach_b[None] * factor[:, None]))
    # IoU <= lens(bounding discs) / max(area): a cheap exact bound that prunes most candidates
    bound = lens_area(reach_a[i], reach_b[j] * factor[i], dist[i, j]) / (
        np.pi * np.maximum(area_a[i], area_b[j]) * factor[i] ** 2
    )
    keep = bound > 1.0 - max_error
    i, j = i[keep], j[keep]
    if len(i) == 0:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    err = overlap_errors(ca[i], sa[i], cb[j], sb[j])
    keep = err < max_error
    i, j, err = i[keep], j[keep], err[keep]
    order = np.argsort(err, kind="stable")
    used_a, used_b, matches, errors = set(), set(), [], []
    for n in order:
        if i[n] not in used_a and j[n] not in used_b:
            used_a.add(i[n])
            used_b.add(j[n])
            matches.append((i[n], j[n]))
            errors.append(err[n])
    return np.array(matches, np.int64).reshape(-1, 2), np.array(errors)
