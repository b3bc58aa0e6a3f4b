"""Image-pair protocols on sequences with homographies (HPatches sequences, Oxford affine).

Every descriptor runs through ``descriptor.compute_dense(image, frames)`` at frames from a named
detector (:mod:`desc_bench.bench.detectors`); the rows' ``mode`` says how it ran ("keypoints",
"dense-sampled" or "patches-around-frames"). Pairs are (1, k), k = 2..6, ``x_k ~ H_1k @ x_1``.

- ``mma`` (D2-Net, Dusmanu et al., CVPR 2019): own keypoints per image at full resolution, mutual
  nearest neighbours (L2-normalised float descriptors; Hamming for binary ones), error
  ``||H x_a - x_b||``, per pair the fraction of matches with error ``<=`` t (0 without matches), mean
  over pairs, t = 1..10 px, overall / i / v.
- ``pck-gift`` (GIFT, Liu et al., NeurIPS 2019): both images resized so the longest side is 480
  (``int`` truncation of the size, one ratio for x and y, H rescaled); keypoints kept where their
  warp lands inside the other image; exact nearest neighbour in both directions; correct if the
  error is strictly ``<`` t; PCK averaged over the two directions, then over pairs; t = 5, 2, 1. As
  in GIFT's code, a pair left without keypoints is skipped (the notes count them).
- ``pck-msnet`` (MSNet, lin-zju/my-descriptor-space): longest side 640 (rounded size, per-axis
  ratios applied to H); Harris (2, 3, 0.04) above its 90th percentile and mapping inside image 2;
  ``budget`` (1,000) drawn with a seeded generator; image-2 keypoints are the integer-truncated warps;
  descriptors bilinearly sampled; exact one-directional nearest neighbour among the warped
  keypoints; correct if ``||kp2[nn] - kp2[i]|| <= t``, t = 3 (the published code's effective value;
  it used approximate FLANN search, we search exactly).
- ``oxford-ms`` (Mikolajczyk et al., IJCV 2005): frames with a centre in the common region;
  circular regions of radius ``size / 2`` (DoG; a fixed 10 px without a scale), those of image k
  mapped into image 1 by the local affine approximation of ``H^-1``; overlap error
  ``1 - |A and B| / |A or B|`` after scaling both shapes (not the centre offset) so that A's radius
  is 30 px; geometric matches: error < 0.4, one-to-one (greedy by error); descriptor matches: each
  frame of image 1 to its nearest neighbour in image k; matching score = |descriptor matches that
  are geometric matches| / min(|A|, |B|); repeatability = |geometric matches| / min(|A|, |B|).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..adapters.base import Descriptor, Distance, Frames
from ..adapters.prepare import dense_mode
from ..errors import DescBenchError, InputError, UnknownNameError
from ..records.schema import ResultRow
from . import detectors as det

# ------------------------------------------------------------------------------------ protocols


@dataclass(frozen=True)
class Protocol:
    name: str
    task: str  # "mma", "pck", "matching-score"
    metric: str  # metric prefix: "mma", "pck"
    thresholds: tuple[float, ...]
    detector: str
    summary: str


PROTOCOLS = {
    "mma": Protocol(
        "mma", "mma", "mma", tuple(range(1, 11)), "dog", "D2-Net mean matching accuracy, mutual NN, thresholds 1..10 px"
    ),
    "pck-gift": Protocol(
        "pck-gift",
        "pck",
        "pck",
        (5, 2, 1),
        "dog",
        "GIFT PCK at 480 px, both-direction NN, t = 5, 2, 1 (paper: SuperPoint detections)",
    ),
    "pck-msnet": Protocol(
        "pck-msnet", "pck", "pck", (3,), "harris", "MSNet PCK at 640 px, Harris samples, one-direction NN, t = 3"
    ),
    "oxford-ms": Protocol(
        "oxford-ms",
        "matching-score",
        "matching-score",
        (0.4,),
        "dog",
        "Mikolajczyk matching score and repeatability, overlap error < 40 %",
    ),
}
HEADLINE = {"mma": 3, "pck-gift": 5, "pck-msnet": 3}

GIFT_SIZE = 480
MSNET_SIZE = 640
OVERLAP_RADIUS = 30.0  # normalised region radius (Mikolajczyk)
DEFAULT_RADIUS = 10.0  # region radius for frames without a scale
OVERLAP_GRID = 64  # samples per side when integrating an overlap numerically


def protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise UnknownNameError("pair protocol", name, list(PROTOCOLS))
    return PROTOCOLS[name]


# --------------------------------------------------------------------------------- geometry


def warp_points(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Apply a 3x3 homography to ``(N, 2)`` points."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    h = np.concatenate([xy, np.ones((len(xy), 1))], axis=1) @ np.asarray(H, np.float64).T
    return h[:, :2] / h[:, 2:]


def inside(xy: np.ndarray, width: int, height: int) -> np.ndarray:
    return (xy[:, 0] >= 0) & (xy[:, 0] < width) & (xy[:, 1] >= 0) & (xy[:, 1] < height)


def resize_gift(image: np.ndarray, longest: int = GIFT_SIZE) -> tuple[np.ndarray, float]:
    """GIFT: one ratio ``longest / max(h, w)``, new size truncated to int, bilinear."""
    h, w = image.shape[:2]
    ratio = longest / max(h, w)
    size = (int(w * ratio), int(h * ratio))
    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR), ratio


def resize_msnet(image: np.ndarray, longest: int = MSNET_SIZE) -> tuple[np.ndarray, float, float]:
    """MSNet: rounded new size, bilinear; returns the image and its actual x and y ratios."""
    h, w = image.shape[:2]
    ratio = longest / max(h, w)
    nh, nw = int(round(h * ratio)), int(round(w * ratio))
    return cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR), nw / w, nh / h


# ---------------------------------------------------------------------------------- matching


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


# ------------------------------------------------------------------------- per-pair metrics


def mma_pair(xy_a: np.ndarray, xy_b: np.ndarray, matches: np.ndarray, H: np.ndarray, thresholds) -> np.ndarray:
    """Fraction of matches with reprojection error ``<=`` t for each threshold (0 without matches)."""
    if len(matches) == 0:
        return np.zeros(len(thresholds))
    err = np.linalg.norm(warp_points(H, xy_a[matches[:, 0]]) - xy_b[matches[:, 1]], axis=1)
    return np.array([np.mean(err <= t) for t in thresholds])


def pck_gift_pair(xy0, xy1, d0, d1, H, thresholds, distance: Distance) -> np.ndarray:
    """GIFT PCK of one pair (keypoints already restricted to the common region)."""
    nn01 = nearest(d0, d1, distance)
    nn10 = nearest(d1, d0, distance)
    err01 = np.linalg.norm(warp_points(H, xy0) - xy1[nn01], axis=1)
    err10 = np.linalg.norm(warp_points(np.linalg.inv(H), xy1) - xy0[nn10], axis=1)
    return np.array([(np.mean(err01 < t) + np.mean(err10 < t)) / 2.0 for t in thresholds])


def msnet_correspondences(image0: np.ndarray, shape1, H: np.ndarray, budget: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """MSNet's ground-truth sampling: Harris pixels of image 0 whose truncated warp is inside image 1."""
    h0, w0 = image0.shape[:2]
    h1, w1 = shape1[:2]
    xs, ys = np.meshgrid(np.arange(w0), np.arange(h0))
    grid = np.stack([xs, ys], axis=2).reshape(-1, 1, 2).astype(np.float32)
    flow = np.trunc(cv2.perspectiveTransform(grid, np.asarray(H, np.float64))).astype(np.int64).reshape(h0, w0, 2)
    valid = (flow[..., 0] >= 0) & (flow[..., 0] < w1) & (flow[..., 1] >= 0) & (flow[..., 1] < h1)
    kps0 = det.sample_mask(valid & det.harris_mask(image0), budget, rng)
    kps1 = flow[kps0[:, 1], kps0[:, 0]]
    return kps0, kps1


def pck_msnet_pair(kps1: np.ndarray, nn: np.ndarray, thresholds) -> np.ndarray:
    err = np.linalg.norm((kps1[nn] - kps1).astype(np.float64), axis=1)
    return np.array([np.mean(err <= t) for t in thresholds]) if len(err) else np.zeros(len(thresholds))


# -------------------------------------------------------------------- ellipse overlap (Oxford)


def frame_shapes(frames: Frames, default_radius: float = DEFAULT_RADIUS) -> np.ndarray:
    """``(N, 2, 2)`` region shapes Sigma (the region is ``(x - c)^T Sigma^-1 (x - c) <= 1``): circles
    of radius ``size / 2`` (OpenCV's diameter convention), or ``default_radius`` without a scale."""
    radius = np.full(len(frames), default_radius) if frames.scale is None else frames.scale / 2.0
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

        def inside_ellipse(c, inv):
            dx, dy = X - c[sl, 0, None, None], Y - c[sl, 1, None, None]  # noqa: B023
            q = (
                inv[sl, 0, 0, None, None] * dx * dx  # noqa: B023
                + 2 * inv[sl, 0, 1, None, None] * dx * dy  # noqa: B023
                + inv[sl, 1, 1, None, None] * dy * dy  # noqa: B023
            )
            return q <= 1.0

        a, b = inside_ellipse(ca, ia), inside_ellipse(cb, ib)
        inter = (a & b).sum(axis=(1, 2))
        union = (a | b).sum(axis=(1, 2))
        out[sl] = 1.0 - inter / np.maximum(union, 1)
    return out


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


def matching_score_pair(
    frames_a: Frames, frames_b: Frames, d_a, d_b, H, shape_a, shape_b, distance: Distance
) -> tuple[float, float, int]:
    """(matching score, repeatability, correspondences) of one Oxford pair."""
    keep_a = inside(warp_points(H, frames_a.xy), shape_b[1], shape_b[0])
    Hinv = np.linalg.inv(H)
    keep_b = inside(warp_points(Hinv, frames_b.xy), shape_a[1], shape_a[0])
    ca, sa = frames_a.xy[keep_a], frame_shapes(frames_a)[keep_a]
    cb, sb = warp_ellipses(Hinv, frames_b.xy[keep_b], frame_shapes(frames_b)[keep_b])
    denominator = min(len(ca), len(cb))
    if denominator == 0:
        return 0.0, 0.0, 0
    matches, _ = geometric_matches(ca, sa, cb, sb)
    nn = nearest(d_a[torch.from_numpy(np.nonzero(keep_a)[0])], d_b[torch.from_numpy(np.nonzero(keep_b)[0])], distance)
    geometric = set(map(tuple, matches.tolist()))
    correct = sum((a, int(b)) in geometric for a, b in enumerate(nn))
    return correct / denominator, len(matches) / denominator, len(matches)


# ------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class PairResult:
    """Metric values of one pair (``values`` in the order of ``metrics``)."""

    sequence: str
    kind: str  # "i", "v" or ""
    target: int
    metrics: tuple[str, ...]
    values: tuple[float, ...]
    extra: tuple[tuple[str, float], ...] = ()  # e.g. (("matches", 312.0),)


def _fmt(t: float) -> str:
    return f"{t:g}"


def evaluate_pairs(
    descriptor: Descriptor,
    pairset,
    protocol_name: str,
    *,
    detector: str | None = None,
    budget: int = 1000,
    thresholds=None,
    seed: int = 0,
    progress: bool = True,
) -> list[ResultRow]:
    """Evaluate one descriptor on every pair of ``pairset`` with a named protocol.

    Returns aggregate rows (subset "all", "i", "v"; Oxford also one per sequence) and per-pair rows
    (subset = sequence, variant ending in ``pair=1-k``). A descriptor failure gives error rows.
    """
    spec = protocol(protocol_name)
    detector = detector or spec.detector
    if detector not in det.DETECTORS:
        raise UnknownNameError("detector", detector, list(det.DETECTORS))
    if spec.name == "pck-msnet" and detector != "harris":
        raise InputError("pck-msnet samples its own Harris keypoints; use detector 'harris'")
    thresholds = tuple(thresholds) if thresholds else spec.thresholds
    base = f"det={detector}:budget={budget}"
    common = dict(
        descriptor=descriptor.describe(),
        weights=descriptor.weights_label,
        dataset=pairset.name,
        split="all",
        protocol=spec.name,
        task=spec.task,
        mode=dense_mode(descriptor),
    )
    notes = f"detector={detector} budget={budget} seed={seed}"
    try:
        runner = {"mma": _run_mma, "pck-gift": _run_pck_gift, "pck-msnet": _run_pck_msnet, "oxford-ms": _run_oxford}[
            spec.name
        ]
        results, extra_notes = runner(descriptor, pairset, detector, budget, thresholds, seed, progress)
    except (DescBenchError, RuntimeError, ValueError) as exc:
        metrics = _metric_names(spec, thresholds)
        return [
            ResultRow(
                **common,
                metric=m,
                value=None,
                subset="all",
                variant=base,
                error=f"{type(exc).__name__}: {exc}",
                notes=notes,
            )
            for m in metrics
        ]
    if extra_notes:
        notes = f"{notes} {extra_notes}"
    return _rows(spec, results, common, base, notes, _metric_names(spec, thresholds))


def _metric_names(spec: Protocol, thresholds) -> list[str]:
    if spec.name == "oxford-ms":
        return ["matching-score", "repeatability"]
    return [f"{spec.metric}@{_fmt(t)}" for t in thresholds]


def _rows(
    spec: Protocol, results: list[PairResult], common: dict, base: str, notes: str, names: list[str]
) -> list[ResultRow]:
    rows: list[ResultRow] = []
    if not results:
        return [
            ResultRow(
                **common,
                metric=m,
                value=None,
                subset="all",
                variant=base,
                notes=notes,
                error="no pair could be evaluated (no keypoints in the common region)",
            )
            for m in names
        ]
    metrics = results[0].metrics
    groups = {"all": results}
    for kind in ("i", "v"):
        chosen = [r for r in results if r.kind == kind]
        if chosen:
            groups[kind] = chosen
    if spec.name == "oxford-ms":
        for name in dict.fromkeys(r.sequence for r in results):
            groups[name] = [r for r in results if r.sequence == name]
    for subset, chosen in groups.items():
        values = np.array([r.values for r in chosen])
        for m, metric in enumerate(metrics):
            rows.append(
                ResultRow(
                    **common,
                    metric=metric,
                    value=float(values[:, m].mean()),
                    subset=subset,
                    variant=base,
                    notes=f"{notes} pairs={len(chosen)}",
                )
            )
    for r in results:
        variant = f"{base}:pair=1-{r.target}"
        for metric, value in zip(r.metrics, r.values):
            rows.append(ResultRow(**common, metric=metric, value=float(value), subset=r.sequence, variant=variant))
        for metric, value in r.extra:
            rows.append(ResultRow(**common, metric=metric, value=float(value), subset=r.sequence, variant=variant))
    return rows


def _progress(items, progress: bool, label: str):
    if not progress:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=label, leave=False)


@dataclass(frozen=True)
class _DescribedPair:
    """Pair (1, k) of a sequence with each image's frames and descriptors (image 1 described once)."""

    seq: object
    k: int
    image_a: np.ndarray
    frames_a: Frames
    d_a: torch.Tensor
    image_b: np.ndarray
    frames_b: Frames
    d_b: torch.Tensor


def _described_pairs(descriptor, pairset, detector, budget, seed, progress, label):
    for seq in _progress(pairset.sequences, progress, f"{label} {descriptor.name}"):
        image_a = seq.image(1)
        frames_a = det.detect(detector, image_a, budget, seed)
        d_a = describe(descriptor, image_a, frames_a)
        for k in range(2, len(seq.images) + 1):
            image_b = seq.image(k)
            frames_b = det.detect(detector, image_b, budget, seed)
            yield _DescribedPair(
                seq, k, image_a, frames_a, d_a, image_b, frames_b, describe(descriptor, image_b, frames_b)
            )


def _run_mma(descriptor, pairset, detector, budget, thresholds, seed, progress):
    results = []
    metrics = tuple(f"mma@{_fmt(t)}" for t in thresholds)
    for p in _described_pairs(descriptor, pairset, detector, budget, seed, progress, "mma"):
        matches = mutual_nearest(p.d_a, p.d_b, descriptor.distance, normalise=descriptor.distance is Distance.L2)
        values = mma_pair(p.frames_a.xy, p.frames_b.xy, matches, p.seq.homography(p.k), thresholds)
        extra = (("matches", float(len(matches))), ("keypoints", float(min(len(p.frames_a), len(p.frames_b)))))
        results.append(PairResult(p.seq.name, p.seq.kind, p.k, metrics, tuple(values), extra))
    return results, "matching=mutual-nn"


def _subset(frames: Frames, keep: np.ndarray) -> Frames:
    return Frames(
        frames.xy[keep],
        None if frames.scale is None else frames.scale[keep],
        None if frames.angle is None else frames.angle[keep],
    )


def _run_pck_gift(descriptor, pairset, detector, budget, thresholds, seed, progress):
    results, skipped = [], 0
    metrics = tuple(f"pck@{_fmt(t)}" for t in thresholds)
    for seq in _progress(pairset.sequences, progress, f"pck-gift {descriptor.name}"):
        image0, ratio0 = resize_gift(seq.image(1))
        frames0 = det.detect(detector, image0, budget, seed)
        d0_all = describe(descriptor, image0, frames0)
        for k in range(2, len(seq.images) + 1):
            image1, ratio1 = resize_gift(seq.image(k))
            H = np.diag([ratio1, ratio1, 1.0]) @ seq.homography(k) @ np.diag([1 / ratio0, 1 / ratio0, 1.0])
            frames1 = det.detect(detector, image1, budget, seed)
            keep0 = inside(warp_points(H, frames0.xy), image1.shape[1], image1.shape[0])
            keep1 = inside(warp_points(np.linalg.inv(H), frames1.xy), image0.shape[1], image0.shape[0])
            if not keep0.any() or not keep1.any():
                skipped += 1
                continue
            d1 = describe(descriptor, image1, _subset(frames1, keep1))
            d0 = d0_all[torch.from_numpy(np.nonzero(keep0)[0])]
            values = pck_gift_pair(frames0.xy[keep0], frames1.xy[keep1], d0, d1, H, thresholds, descriptor.distance)
            extra = (("keypoints", float(min(keep0.sum(), keep1.sum()))),)
            results.append(PairResult(seq.name, seq.kind, k, metrics, tuple(values), extra))
    return results, f"size={GIFT_SIZE} matching=nn-both-directions skipped_pairs={skipped}"


def _run_pck_msnet(descriptor, pairset, detector, budget, thresholds, seed, progress):
    results = []
    metrics = tuple(f"pck@{_fmt(t)}" for t in thresholds)
    for seq in _progress(pairset.sequences, progress, f"pck-msnet {descriptor.name}"):
        image0, sx0, sy0 = resize_msnet(seq.image(1))
        for k in range(2, len(seq.images) + 1):
            image1, sx1, sy1 = resize_msnet(seq.image(k))
            H = np.diag([sx1, sy1, 1.0]) @ seq.homography(k) @ np.linalg.inv(np.diag([sx0, sy0, 1.0]))
            rng = np.random.default_rng([seed, k, *seq.name.encode()])
            kps0, kps1 = msnet_correspondences(image0, image1.shape, H, budget, rng)
            if len(kps0) == 0:
                values = np.zeros(len(thresholds))
            else:
                d0 = describe(descriptor, image0, Frames(kps0.astype(np.float64)))
                d1 = describe(descriptor, image1, Frames(kps1.astype(np.float64)))
                values = pck_msnet_pair(kps1, nearest(d0, d1, descriptor.distance), thresholds)
            results.append(
                PairResult(seq.name, seq.kind, k, metrics, tuple(values), (("keypoints", float(len(kps0))),))
            )
    return results, f"size={MSNET_SIZE} matching=nn-one-direction harris-percentile=90"


def _run_oxford(descriptor, pairset, detector, budget, thresholds, seed, progress):
    results = []
    metrics = ("matching-score", "repeatability")
    for p in _described_pairs(descriptor, pairset, detector, budget, seed, progress, "oxford-ms"):
        score, rep, count = matching_score_pair(
            p.frames_a,
            p.frames_b,
            p.d_a,
            p.d_b,
            p.seq.homography(p.k),
            p.image_a.shape,
            p.image_b.shape,
            descriptor.distance,
        )
        results.append(
            PairResult(p.seq.name, p.seq.kind, p.k, metrics, (score, rep), (("correspondences", float(count)),))
        )
    return results, f"overlap<0.4 radius={OVERLAP_RADIUS:g} matching=nn"


# ----------------------------------------------------------------------------------- tables


def _aggregate(rows, protocols, subsets=("all",)):
    """Aggregate rows of the given protocols (no per-pair rows, no errors)."""
    return [
        r
        for r in rows
        if r.protocol in protocols and r.error is None and ":pair=" not in r.variant and r.subset in subsets
    ]


def _label(row: ResultRow) -> str:
    return (
        row.descriptor
        if not row.variant
        else f"{row.descriptor} ({row.variant.replace('det=', '').replace(':budget=', ':')})"
    )


def _table(header, body) -> str:
    from tabulate import tabulate

    return tabulate(body, headers=header, tablefmt="github", floatfmt=".3f", missingval="-")


def pck_table(rows, subset: str = "all") -> str:
    """Markdown: one row per descriptor (and detector), for each dataset columns pck-5, pck-2, pck-1
    (GIFT's layout; the pck-msnet protocol adds its pck-3 column)."""
    chosen = _aggregate(rows, ("pck-gift", "pck-msnet"), (subset,))
    columns = []
    for r in chosen:
        key = (r.dataset, r.protocol, r.metric)
        if key not in columns:
            columns.append(key)
    columns.sort(key=lambda c: (c[0], c[1], -float(c[2].split("@")[1])))
    labels = list(dict.fromkeys(_label(r) for r in chosen))
    cell = {(_label(r), r.dataset, r.protocol, r.metric): r.value for r in chosen}
    header = ["descriptor"] + [
        f"{d} {m.replace('@', '-')}" + (" (msnet)" if p == "pck-msnet" else "") for d, p, m in columns
    ]
    body = [[label] + [cell.get((label, d, p, m)) for d, p, m in columns] for label in labels]
    return _table(header, body)


def mma_table(rows, threshold: int = 3) -> str:
    """Markdown: MMA at ``threshold`` px overall / illumination / viewpoint, per descriptor and dataset."""
    metric = f"mma@{threshold}"
    chosen = [r for r in _aggregate(rows, ("mma",), ("all", "i", "v")) if r.metric == metric]
    keys = list(dict.fromkeys((_label(r), r.dataset) for r in chosen))
    cell = {(_label(r), r.dataset, r.subset): r.value for r in chosen}
    header = ["descriptor", "dataset", f"MMA@{threshold} all", "i", "v"]
    body = [[label, ds] + [cell.get((label, ds, s)) for s in ("all", "i", "v")] for label, ds in keys]
    return _table(header, body)


def oxford_table(rows, metric: str = "matching-score") -> str:
    """Markdown: rows = descriptors, columns = the 8 Oxford sequences (pairs 1-2..1-6 averaged) and the mean."""
    from ..datasets.sequences import OXFORD_SEQUENCES

    chosen = [
        r
        for r in rows
        if r.protocol == "oxford-ms" and r.metric == metric and r.error is None and ":pair=" not in r.variant
    ]
    names = [s for s in OXFORD_SEQUENCES if any(r.subset == s for r in chosen)]
    names += [s for s in dict.fromkeys(r.subset for r in chosen) if s not in names and s not in ("all", "i", "v")]
    labels = list(dict.fromkeys(_label(r) for r in chosen))
    cell = {(_label(r), r.subset): r.value for r in chosen}
    header = ["descriptor"] + names + ["mean"]
    body = [[label] + [cell.get((label, s)) for s in names] + [cell.get((label, "all"))] for label in labels]
    return _table(header, body)


def plot_mma(rows, path) -> Path:
    """PNG of MMA curves over the thresholds (1..10 px): panels overall / illumination / viewpoint,
    one line per descriptor (and dataset when several), the same colour in every panel, the legend
    best first.

    Readable at a glance: the y axis (shared) is fitted to the data with a margin instead of 0..1,
    one legend for all panels sits below them, and the title names the dataset(s) and protocol.
    No global pyplot state is touched; the file is written atomically.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..io.atomic import atomic_path

    chosen = [r for r in _aggregate(rows, ("mma",), ("all", "i", "v")) if r.metric.startswith("mma@")]
    datasets = list(dict.fromkeys(r.dataset for r in chosen))
    curves: dict[tuple[str, str], list[tuple[float, float]]] = {}  # (subset, label) -> (threshold, value)
    for r in chosen:
        label = _label(r) + (f" [{r.dataset}]" if len(datasets) > 1 else "")
        curves.setdefault((r.subset, label), []).append((float(r.metric.split("@")[1]), r.value))
    labels = list(dict.fromkeys(label for _, label in curves))
    labels.sort(key=lambda label: -max(v for (_, other), pts in curves.items() if other == label for _, v in pts))
    colours = {label: f"C{i % 10}" for i, label in enumerate(labels)}
    values = [v for points in curves.values() for _, v in points]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    margin = max(0.03, 0.08 * (high - low))
    figure = Figure(figsize=(13, 4.6 + 0.3 * ((len(labels) + 3) // 4)), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, 3, sharey=True)
    titles = {"all": "Overall", "i": "Illumination", "v": "Viewpoint"}
    for ax, subset in zip(axes, ("all", "i", "v")):
        for label in labels:
            points = sorted(curves.get((subset, label), []))
            if points:
                ax.plot(*zip(*points), marker="o", markersize=4, linewidth=1.8, color=colours[label], label=label)
        ax.set_title(titles[subset], fontsize=12)
        ax.set_xlabel("threshold [px]", fontsize=11)
        ax.set_xlim(0.5, 10.5)
        ax.set_xticks(range(1, 11))
        ax.set_ylim(max(0.0, low - margin), min(1.0, high + margin))
        ax.tick_params(labelsize=10)
        ax.grid(alpha=0.3)
        if not any(s == subset for s, _ in curves):
            ax.text(0.5, 0.5, "no pairs", ha="center", va="center", transform=ax.transAxes, color="0.4")
    axes[0].set_ylabel("MMA (mean matching accuracy)", fontsize=11)
    if labels:
        handles = {h.get_label(): h for ax in axes for h in ax.get_lines()}
        figure.legend(
            [handles[label] for label in labels],
            labels,
            loc="outside lower center",
            ncols=min(len(labels), 4),
            fontsize=10,
            frameon=False,
        )
    where = ", ".join(datasets) or "no dataset"
    figure.suptitle(f"MMA on {where} (D2-Net protocol: mutual nearest neighbours)", fontsize=13)
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
    return path
