"""Geometry shared by datasets and benchmarks (bottom layer, numpy only): applying homographies,
inside-image tests, and the elliptical regions of the Oxford protocol (shapes, their local affine
warps, overlap errors and one-to-one geometric matches, after Mikolajczyk et al., IJCV 2005)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OVERLAP_RADIUS = 30.0  # normalised region radius (Mikolajczyk)
DEFAULT_RADIUS = 10.0  # region radius for frames without a scale
MAX_CENTRE_DISTANCE = 4.0  # c_eoverlap compares regions whose centres are < 4 r_A apart
PRUNE_MARGIN = 0.15  # slack of the continuous bounds used only to skip hopeless pairs
GRID_BUDGET = 250_000  # lattice points per chunk of the overlap integration
FAR = np.float32(1e18)  # a lattice coordinate outside every region


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


def region_radius(shapes: np.ndarray) -> np.ndarray:
    """``(N,)`` radius of the disc of the same area as each region: ``det(Sigma)^(1/4)``, computed as
    repeatability.m does (``sqrt(d1 d2)``, the semi-axes from the eigenvalues of ``Sigma^-1``)."""
    e = np.linalg.eigvalsh(np.linalg.inv(np.asarray(shapes, np.float64).reshape(-1, 2, 2)))
    return np.sqrt((1.0 / np.sqrt(e[:, 0])) * (1.0 / np.sqrt(e[:, 1])))


def box_half_sizes(shapes: np.ndarray) -> np.ndarray:
    """``(N, 2)`` half width and half height of each region's axis-aligned bounding box:
    ``sqrt(Sigma_xx)``, ``sqrt(Sigma_yy)``."""
    shapes = np.asarray(shapes, np.float64).reshape(-1, 2, 2)
    return np.sqrt(np.stack([shapes[:, 0, 0], shapes[:, 1, 1]], axis=1))


def box_inside(centres: np.ndarray, shapes: np.ndarray, width: int, height: int) -> np.ndarray:
    """Regions whose bounding box lies strictly inside ``(0, width) x (0, height)``, the common-part
    test of repeatability.m (``x - bx > 0``, ``x + bx < width``, and the same in y)."""
    c = np.asarray(centres, np.float64).reshape(-1, 2)
    half = box_half_sizes(shapes)
    low, high = c - half, c + half
    return (low[:, 0] > 0) & (high[:, 0] < width) & (low[:, 1] > 0) & (high[:, 1] < height)


def _f32(x) -> np.ndarray:
    return np.asarray(x, np.float64).astype(np.float32)


@dataclass(frozen=True)
class _Normalised:
    """Pairs (A, B) prepared as c_eoverlap prepares them, in its float32 arithmetic."""

    ma: np.ndarray  # (P, 3) A's inverse shape (a, b, c) scaled to radius 30
    mb: np.ndarray  # (P, 3) B's, scaled by the same factor
    dx: np.ndarray  # (P,) centre offset B - A (not scaled)
    dy: np.ndarray


def _scaled_inverse(shapes: np.ndarray, fac: np.ndarray) -> np.ndarray:
    """``(P, 3)`` float32 ``fac * (a, b, c)`` of ``Sigma^-1 = [[a, b], [b, c]]`` (fac float32)."""
    m = np.linalg.inv(np.asarray(shapes, np.float64).reshape(-1, 2, 2))
    abc = np.stack([m[:, 0, 0], m[:, 1, 0], m[:, 1, 1]], axis=1)
    return (fac.astype(np.float64)[:, None] * abc).astype(np.float32)


def _box32(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """c_eoverlap's float32 bounding-box half sizes of the ellipses ``(a, b, c)``."""
    a, b, c = m[:, 0], m[:, 1], m[:, 2]
    det = a * c - b * b
    return np.sqrt(c / det), np.sqrt(a / det)


def _inside_quad(m: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``a x x + 2 b x y + c y y < 1`` with the quadratic form evaluated in c_eoverlap's float32
    order of operations; ``x`` is ``(P, L, 1)``, ``y`` ``(P, 1, L)``. Without a cross term (circles)
    the middle term is a signed zero, so leaving it out gives the same bits."""
    a, b, c = (m[:, k, None, None] for k in range(3))
    xx, yy = a * x * x, c * y * y
    if not b.any():
        return xx + yy < 1
    return (xx + np.float32(2) * b * x * y) + yy < 1


def _grid_errors(pairs: _Normalised) -> np.ndarray:
    """c_eoverlap's overlap error in percent (float32) of each normalised pair: the union bounding
    box (rounded outwards to integers) sampled with step ``min(side) / 50`` from its low corner,
    points strictly inside (``< 1``) counted, ``100 (1 - inter / union)``."""
    ax, ay = _box32(pairs.ma)
    bx, by = _box32(pairs.mb)
    dx, dy = pairs.dx, pairs.dy
    maxx, minx = np.ceil(np.maximum(ax, dx + bx)), np.floor(np.minimum(-ax, dx - bx))
    maxy, miny = np.ceil(np.maximum(ay, dy + by)), np.floor(np.minimum(-ay, dy - by))
    step = (np.minimum(maxx - minx, maxy - miny).astype(np.float64) / 50.0).astype(np.float32)
    out = np.empty(len(dx), np.float32)
    steps = (np.maximum(maxx - minx, maxy - miny) / step).astype(np.int64) + 3
    order = np.argsort(steps, kind="stable")
    start = 0
    while start < len(order):
        # chunks of about GRID_BUDGET lattice points (candidates sorted by grid size)
        count = max(1, int(GRID_BUDGET // int(steps[order[start]]) ** 2))
        sel = order[start : start + count]
        start += count
        length = int(steps[sel].max())
        xs, ys = _axis(minx[sel], step[sel], length, maxx[sel]), _axis(miny[sel], step[sel], length, maxy[sel])
        # points past the box's end (the C loop stops there) move far away: outside both ellipses
        xs[xs > maxx[sel, None]] = FAR
        ys[ys > maxy[sel, None]] = FAR
        X, Y = xs[:, :, None], ys[:, None, :]
        a = _inside_quad(pairs.ma[sel], X, Y)
        b = _inside_quad(pairs.mb[sel], X - dx[sel, None, None], Y - dy[sel, None, None])
        inter = np.count_nonzero(a & b, axis=(1, 2))
        union = np.count_nonzero(a, axis=(1, 2)) + np.count_nonzero(b, axis=(1, 2)) - inter
        ratio = inter.astype(np.float32) / union.astype(np.float32)
        out[sel] = (100.0 * (np.float32(1) - ratio).astype(np.float64)).astype(np.float32)
    return out


def _axis(low: np.ndarray, step: np.ndarray, length: int, high: np.ndarray) -> np.ndarray:
    """``(P, L)`` float32 ``low, low + step, ...`` accumulated one step at a time (the C loop's
    ``rx += dr``), at least until every row has passed ``high``."""
    while True:
        steps = np.empty((len(low), length), np.float32)
        steps[:, 0] = low
        steps[:, 1:] = step[:, None]
        values = np.add.accumulate(steps, axis=1, dtype=np.float32)
        if (values[:, -1] > high).all():
            return values
        length *= 2


def _normalise(ca, sa, cb, sb, rows, cols, fac) -> _Normalised:
    return _Normalised(
        _scaled_inverse(sa[rows], fac[rows]),
        _scaled_inverse(sb[cols], fac[rows]),
        _f32(cb[cols, 0] - ca[rows, 0]),
        _f32(cb[cols, 1] - ca[rows, 1]),
    )


def _factors(sa: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """c_eoverlap's float32 ``r_A``, and its factor ``1 / (radius / r_A)^2`` on ``Sigma^-1``."""
    r = _f32(region_radius(sa))
    fac = (np.float32(radius) / r).astype(np.float32)
    return r, (1.0 / (fac * fac).astype(np.float64)).astype(np.float32)


def overlap_errors(ca, sa, cb, sb, radius: float = OVERLAP_RADIUS) -> np.ndarray:
    """Overlap error ``1 - |A and B| / |A or B|`` of region pairs (centres ``(P, 2)``, shapes
    ``(P, 2, 2)``, B already in A's image), as Mikolajczyk's c_eoverlap computes it: both shapes
    scaled about their centres by ``radius / r_A`` (the centre offset is not scaled), the areas
    counted on its grid in float32 (see ``_grid_errors``). No distance cut here."""
    ca, cb = np.asarray(ca, np.float64).reshape(-1, 2), np.asarray(cb, np.float64).reshape(-1, 2)
    sa, sb = np.asarray(sa, np.float64).reshape(-1, 2, 2), np.asarray(sb, np.float64).reshape(-1, 2, 2)
    if len(ca) == 0:
        return np.zeros(0)
    index = np.arange(len(ca))
    _, fac = _factors(sa, radius)
    return _grid_errors(_normalise(ca, sa, cb, sb, index, index, fac)).astype(np.float64) / 100.0


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
    """One-to-one correspondences ``(M, 2)`` between regions A (image 1) and B (already projected
    into image 1) with overlap error < ``max_error``, as repeatability.m and c_eoverlap choose them:
    a pair is compared only when the centres are closer than ``4 r_A`` (r_A: A's radius before the
    normalisation), then greedily by ascending error (ties: lowest A, then lowest B index, the C
    loop's scan order). Returns the matches and their errors (fractions)."""
    ca, cb = np.asarray(ca, np.float64).reshape(-1, 2), np.asarray(cb, np.float64).reshape(-1, 2)
    sa, sb = np.asarray(sa, np.float64).reshape(-1, 2, 2), np.asarray(sb, np.float64).reshape(-1, 2, 2)
    empty = np.zeros((0, 2), np.int64), np.zeros(0)
    if len(ca) == 0 or len(cb) == 0:
        return empty
    r, fac = _factors(sa, OVERLAP_RADIUS)
    reach = (r * np.float32(MAX_CENTRE_DISTANCE)).astype(np.float32)
    # the C test in float32 (dist < 4 r_A), on the pairs a float64 test with slack leaves
    near = (cb[None, :, 0] - ca[:, None, 0]) ** 2 + (cb[None, :, 1] - ca[:, None, 1]) ** 2
    i, j = np.nonzero(near < (reach.astype(np.float64)[:, None] * 1.001 + 1e-3) ** 2)
    dx, dy = _f32(cb[j, 0] - ca[i, 0]), _f32(cb[j, 1] - ca[i, 1])
    inside = np.sqrt(dx * dx + dy * dy) < reach[i]
    i, j = i[inside], j[inside]
    # Only pairs that can reach an error below max_error need the grid (a speed-up, with margin):
    # IoU <= area ratio, and IoU <= lens of the bounding discs / larger area.
    area_a, area_b = np.sqrt(np.linalg.det(sa)), np.sqrt(np.linalg.det(sb))
    reach_a, reach_b = np.sqrt(np.linalg.eigvalsh(sa)[:, -1]), np.sqrt(np.linalg.eigvalsh(sb)[:, -1])
    dist = np.hypot(cb[j, 0] - ca[i, 0], cb[j, 1] - ca[i, 1])
    big = np.maximum(area_a[i], area_b[j])
    # in the normalised frame: both shapes scaled by `scale`, the centre offset `dist` is not
    scale = OVERLAP_RADIUS / region_radius(sa)[i]
    lens = lens_area(reach_a[i] * scale, reach_b[j] * scale, dist) / (np.pi * big * scale**2)
    possible = (np.minimum(area_a[i], area_b[j]) / big > 1.0 - max_error - PRUNE_MARGIN) & (
        lens > 1.0 - max_error - PRUNE_MARGIN
    )
    i, j = i[possible], j[possible]
    if len(i) == 0:
        return empty
    percent = _grid_errors(_normalise(ca, sa, cb, sb, i, j, fac))
    keep = percent < np.float32(round(max_error * 100.0, 9))
    i, j, percent = i[keep], j[keep], percent[keep]
    order = np.lexsort((j, i, percent))
    used_a, used_b, matches = set(), set(), []
    for n in order:
        if i[n] not in used_a and j[n] not in used_b:
            used_a.add(i[n])
            used_b.add(j[n])
            matches.append(n)
    chosen = np.array(matches, np.int64)
    return np.stack([i[chosen], j[chosen]], axis=1).reshape(-1, 2), percent[chosen].astype(np.float64) / 100.0
