"""Homography estimation on image pairs, with the detector held fixed and the estimator on record.

Keypoints come from a named detector (``detector=dog|harris|superpoint``, or ``own``: the descriptor's own
``detect``), so that the descriptor is what is compared; matches are mutual nearest neighbours (``matcher=mutual``) or
Lowe's ratio test (``matcher=ratio:ratio=0.8``); the estimator (bench/estimators.py) and its threshold, iterations,
confidence and seed are in every row's notes. Two variants, as the upstream code does it:

- ``variant=superpoint`` (rpautrat/SuperPoint ``compute_homography``): each image made grey with
  ``tf.image.rgb_to_grayscale`` of OpenCV's BGR array (the upstream quirk, kept), resized (bilinear, TF1 sampling)
  to cover 480x640 and centre-cropped, H adapted as the upstream ``_adapt_homography_to_preprocessing``; detections
  at integer pixels, box NMS 8 (IoU 0.1), the ``budget`` best kept, then only the "shared points" whose warp lies
  inside the other image; BFMatcher cross-check (mutual NN on raw descriptors); OpenCV RANSAC defaults (3 px, 2000,
  0.995); correct iff the mean error of the corners (0,0), (w-1,0), (0,h-1), (w-1,h-1) is <= eps, eps = 1, 3, 5; no
  match or no estimate is incorrect.
- ``variant=gluefactory`` (cvg/glue-factory ``eval/hpatches.py``): short side 480 (kornia's bilinear antialiased
  resize, written out), ``H = T1 H T0^-1``; mutual NN on L2-normalised descriptors; OpenCV RANSAC 0.5 px, 3000
  iterations, 0.995 (the official configs); corner error on (0,0), (W,0), (W,H), (0,H), failure infinite; AUC@1/3/5
  px (``cal_error_auc``) and mAA, their mean. ``threshold=-1`` sweeps 0.5..3.0 and keeps the best mAA: the rows then
  say the threshold was tuned on the test set.

Both report all / i / v and the mean RANSAC inlier and match counts. ``seeds=N`` runs each estimate with seeds ``seed
.. seed+N-1`` (value: the mean; notes: the spread); with one seed, the means over pairs and the AUCs (each pair's
share of the area) carry their sequences as bootstrap units.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ...adapters.base import Distance, Frames
from ...errors import InputError, UnknownNameError
from ...records.schema import ResultRow
from .. import detectors as det
from .. import estimators as est
from ..features import Extraction, ImageFeatures, source_fingerprint
from ..matching import describe, mutual_nearest, ratio_matches
from .base import Headline, TableSpec, grouped_units
from .pairs import PairBenchmark, PairOptions, coverage

VARIANTS = ("superpoint", "gluefactory")  # "both" (the default) runs the two
MATCHERS = ("mutual", "ratio")
SP_SIZE = (480, 640)  # height, width
SP_NMS = 8
SP_EPS = (1, 3, 5)
GF_SIDE = 480
GF_AUC = (1, 3, 5)
PER_PAIR = ("inliers", "matches", "maa", *(f"correct@{e}" for e in SP_EPS), *(f"auc@{t}" for t in GF_AUC))


SWEEP = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
# (threshold px, iterations, confidence) of each variant's upstream default estimator
DEFAULTS = {"superpoint": (3.0, 2000, 0.995), "gluefactory": (0.5, 3000, 0.995)}
_CODE = source_fingerprint([Path(__file__), Path(det.__file__)])


@dataclass(frozen=True)
class HomographyOptions(PairOptions):
    variant: str = "both"
    matcher: str = "mutual"
    ratio: float = 0.8
    estimator: str = "ransac"
    threshold: float = 0.0  # 0 = the variant's default; -1 = sweep (gluefactory), tuned on the test set
    iterations: int = 0  # 0 = the variant's default (PoseLib's own for estimator=poselib)
    confidence: float = 0.0  # 0 = the variant's default (PoseLib's own for estimator=poselib)
    seeds: int = 1

    def __post_init__(self):
        if self.detector == det.OWN:
            if self.budget is not None and self.budget < 1:
                raise InputError(f"--budget must be at least 1, got {self.budget}")
        else:
            super().__post_init__()
        if self.variant not in (*VARIANTS, "both"):
            raise UnknownNameError("homography variant", self.variant, [*VARIANTS, "both"])
        if self.matcher not in MATCHERS:
            raise UnknownNameError("matcher", self.matcher, list(MATCHERS))
        if not 0 < self.ratio <= 1:
            raise InputError(f"ratio must lie in (0, 1], got {self.ratio}")
        if self.seeds < 1:
            raise InputError(f"seeds must be at least 1, got {self.seeds}")
        if self.threshold == -1 and self.variant != "gluefactory":
            raise InputError("threshold=-1 (sweep) is glue-factory's option: add variant=gluefactory")
        for variant in self.variants:
            self.estimators(variant)  # validates method, threshold, iterations, confidence

    @property
    def variants(self) -> tuple[str, ...]:
        return VARIANTS if self.variant == "both" else (self.variant,)

    def estimators(self, variant: str, seed_offset: int = 0) -> list[est.Estimator]:
        """The estimator for each threshold tried (one, or the sweep), with seed ``seed + seed_offset``."""
        threshold, iterations, confidence = DEFAULTS[variant]
        if self.estimator == "poselib":
            iterations, confidence = est.POSELIB_DEFAULTS
        thresholds = SWEEP if self.threshold == -1 else (self.threshold or threshold,)
        return [
            est.Estimator(
                self.estimator, t, self.iterations or iterations, self.confidence or confidence, self.seed + seed_offset
            )
            for t in thresholds
        ]


# ------------------------------------------------------------------------------ preprocessing


def superpoint_gray(image: np.ndarray) -> np.ndarray:
    """``tf.image.rgb_to_grayscale`` of the BGR array OpenCV reads (weights applied to B, G, R), uint8."""
    image = np.asarray(image, np.float64)
    if image.ndim == 2:
        return np.asarray(image, np.uint8)
    g = 0.2989 * image[..., 2] + 0.5870 * image[..., 1] + 0.1140 * image[..., 0]
    return np.clip(np.round(g), 0, 255).astype(np.uint8)


def superpoint_resize(image: np.ndarray) -> tuple[np.ndarray, float]:
    """Cover 480x640 keeping the ratio (TF1 bilinear: ``src = dst * in / out``) and centre-crop; uint8."""
    h, w = image.shape[:2]
    s = max(SP_SIZE[0] / h, SP_SIZE[1] / w)
    nh, nw = int(h * s), int(w * s)
    M = np.array([[nw / w, 0, 0], [0, nh / h, 0]], np.float64)
    big = cv2.warpAffine(image.astype(np.float32), M, (nw, nh), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    y0, x0 = (nh - SP_SIZE[0]) // 2, (nw - SP_SIZE[1]) // 2
    crop = big[y0 : y0 + SP_SIZE[0], x0 : x0 + SP_SIZE[1]]
    return np.clip(crop, 0, 255).astype(np.uint8), s


def superpoint_homography(H: np.ndarray, size0: tuple[int, int], size1: tuple[int, int]) -> np.ndarray:
    """rpautrat/SuperPoint ``_adapt_homography_to_preprocessing``; sizes ``(width, height)``."""
    target = np.array(SP_SIZE, np.float64)

    def scale_pad(size):
        hw = np.array([size[1], size[0]], np.float64)
        s = float(np.max(target / hw))
        return s, int((hw[1] * s - target[1]) / 2.0), int((hw[0] * s - target[0]) / 2.0)

    s0, px0, py0 = scale_pad(size0)
    s1, px1, py1 = scale_pad(size1)
    translation = np.array([[1, 0, px0], [0, 1, py0], [0, 0, 1]], np.float64)
    warped_translation = np.array([[1, 0, -px1], [0, 1, -py1], [0, 0, 1]], np.float64)
    return warped_translation @ np.diag([s1, s1, 1.0]) @ H @ np.diag([1 / s0, 1 / s0, 1.0]) @ translation


def box_nms(xy: np.ndarray, size: float = SP_NMS, iou: float = 0.1) -> np.ndarray:
    """Indices kept by greedy NMS of ``size`` x ``size`` boxes (points in score order, best first):
    a box is dropped when its IoU with a kept one exceeds ``iou`` (``tf.image.non_max_suppression``).
    Only boxes closer than ``size`` overlap, so kept points are looked up in a grid of ``size`` cells."""
    keep: list[int] = []
    cells: dict[tuple[int, int], list[tuple[float, float]]] = {}
    area = size * size
    for i, (x, y) in enumerate(np.asarray(xy, np.float64).tolist()):
        cx, cy = int(x // size), int(y // size)
        suppressed = False
        for gx in (cx - 1, cx, cx + 1):
            for gy in (cy - 1, cy, cy + 1):
                for kx, ky in cells.get((gx, gy), ()):
                    inter = max(size - abs(kx - x), 0.0) * max(size - abs(ky - y), 0.0)
                    if inter / (2 * area - inter) > iou:
                        suppressed = True
                        break
                if suppressed:
                    break
            if suppressed:
                break
        if not suppressed:
            keep.append(i)
            cells.setdefault((cx, cy), []).append((x, y))
    return np.array(keep, np.int64)


def gluefactory_size(width: int, height: int) -> tuple[int, int]:
    """glue-factory ``get_new_image_size`` with ``side=short``: ``(width, height)``."""
    aspect = width / height
    if aspect >= 1.0:
        return int(GF_SIDE * aspect), GF_SIDE
    return GF_SIDE, int(GF_SIDE / aspect)


def _gaussian_taps(sigma: float) -> np.ndarray:
    size = int(max(4.0 * sigma, 3))
    size += 1 - size % 2
    n = np.arange(size, dtype=np.float32) - size // 2
    taps = np.exp(-(n**2) / np.float32(2.0 * sigma**2))
    return (taps / taps.sum()).astype(np.float32)


def gluefactory_resize(image: np.ndarray) -> np.ndarray:
    """glue-factory's ImagePreprocessor (``kornia.geometry.transform.resize``, bilinear, antialias) of
    the [0, 1] image, written out: when shrinking, a separable Gaussian blur (sigma ``(factor - 1) / 2``
    per axis, at least 0.001; taps ``int(max(4 sigma, 3))`` made odd; reflect padding), then
    ``F.interpolate(bilinear, align_corners=False)``; back to uint8 by rounding."""
    h, w = image.shape[:2]
    nw, nh = gluefactory_size(w, h)
    x = np.asarray(image, np.float32) / np.float32(255.0)
    factors = (h / nh, w / nw)
    if max(factors) > 1:
        ty = _gaussian_taps(max((factors[0] - 1.0) / 2.0, 0.001))
        tx = _gaussian_taps(max((factors[1] - 1.0) / 2.0, 0.001))
        x = cv2.sepFilter2D(x, cv2.CV_32F, tx, ty, borderType=cv2.BORDER_REFLECT_101)  # torch "reflect"
    x = torch.from_numpy(np.ascontiguousarray(x)).permute(2, 0, 1)[None]
    y = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
    return (y[0].permute(1, 2, 0).clamp(0, 1) * 255.0).round().to(torch.uint8).numpy()


# ------------------------------------------------------------------------------------ benchmark


class Homography(PairBenchmark):
    name = "homography"
    summary = "homography estimation: SuperPoint correctness @1/3/5 px, glue-factory corner AUC @1/3/5 px"
    tasks = ("homography",)
    Options = HomographyOptions
    headlines = (
        Headline("H correct@3", "homography", "correct@3", (("subset", "all"),), percent=False),
        Headline("H AUC@3", "homography", "auc@3", (("subset", "all"),), percent=False),
    )
    tables = (
        TableSpec(
            "Homography correctness (rpautrat/SuperPoint protocol)",
            metrics=("correct@1", "correct@3", "correct@5"),
            rows=("descriptor", "variant", "subset"),
            columns="metric",
            groups=("dataset",),
        ),
        TableSpec(
            "Homography corner-error AUC (cvg/glue-factory protocol)",
            metrics=("auc@1", "auc@3", "auc@5", "maa"),
            rows=("descriptor", "variant", "subset"),
            columns="metric",
            groups=("dataset",),
        ),
        TableSpec(
            "Homography: mean RANSAC inliers and matches per pair",
            metrics=("inliers", "matches"),
            rows=("descriptor", "variant", "subset"),
            columns="metric",
            groups=("dataset",),
            digits=1,
        ),
    )

    def variant_parts(self, variant: str = "superpoint") -> tuple[str, ...]:
        o = self.options
        th = "sweep" if o.threshold == -1 else f"{o.estimators(variant)[0].threshold:g}"
        matcher = f"ratio{o.ratio:g}" if o.matcher == "ratio" else "mutual"
        return (f"variant={variant}", f"matcher={matcher}", f"estimator={o.estimator}", f"th={th}")

    # ---- features ---------------------------------------------------------------------------
    def prepare(self, image: np.ndarray, variant: str) -> np.ndarray:
        if variant == "superpoint":
            return cv2.cvtColor(superpoint_resize(superpoint_gray(image))[0], cv2.COLOR_GRAY2RGB)
        return gluefactory_resize(image)

    def detect(self, descriptor, pixels: np.ndarray, variant: str) -> ImageFeatures:
        o = self.options
        if variant == "gluefactory":
            found = det.detect_with(descriptor, self.detector, pixels, self.budget, o.seed)
            return ImageFeatures(found.xy, describe(descriptor, pixels, found).numpy(), found.scale, found.angle)
        # SuperPoint's keypoint map: integer pixels (strongest per pixel), box NMS 8, the `budget` best, from all
        # SuperPoint detections or 1.5 x budget others (upstream's classical export: SIFT_create(nfeatures=1500))
        pool = None if self.detector in det.UNBOUNDED else int(1.5 * self.budget)
        found = det.detect_with(descriptor, self.detector, pixels, pool, o.seed)
        pix = np.floor(found.xy).astype(np.int64)
        _, first = np.unique(pix[:, 1] * SP_SIZE[1] + pix[:, 0], return_index=True)
        order = np.sort(first)
        order = order[box_nms(pix[order].astype(np.float64))][: self.budget]
        frames = Frames(
            found.xy[order],
            None if found.scale is None else found.scale[order],
            None if found.angle is None else found.angle[order],
        )
        values = describe(descriptor, pixels, frames).numpy()
        return ImageFeatures(pix[order].astype(np.float64), values, frames.scale, frames.angle)

    def features(self, descriptor, dataset, store, context):
        """``{variant: {(sequence, k): ImageFeatures}}``."""
        o = self.options
        out = {}
        for variant in o.variants:
            extraction = Extraction(f"homography-{variant}-{_CODE}", self.detector, self.budget, o.seed)
            out[variant] = {}
            for seq in self.sequences(dataset, context, f"{self.name} {variant} {descriptor.name}"):
                for k in range(1, len(seq.images) + 1):

                    def compute(s=seq, k=k, v=variant) -> ImageFeatures:
                        return self.detect(descriptor, self.prepare(s.image(k), v), v)

                    item = f"{seq.name}/{k}"
                    out[variant][seq.name, k] = store.image(item, [seq.images[k - 1]], compute, extraction)
        return out

    # ---- per pair ---------------------------------------------------------------------------
    def pair_geometry(self, seq, k: int, variant: str) -> tuple[np.ndarray, tuple[int, int], tuple[int, int]]:
        """(H between the prepared images, size of prepared image 1, size of prepared image k)."""
        H, size0, size1 = seq.homography(k), seq.image_size(1), seq.image_size(k)
        if variant == "superpoint":
            return superpoint_homography(H, size0, size1), SP_SIZE[::-1], SP_SIZE[::-1]
        n0, n1 = gluefactory_size(*size0), gluefactory_size(*size1)
        T0 = np.diag([n0[0] / size0[0], n0[1] / size0[1], 1.0])
        T1 = np.diag([n1[0] / size1[0], n1[1] / size1[1], 1.0])
        return T1 @ H @ np.linalg.inv(T0), n0, n1

    def match(self, a: ImageFeatures, b: ImageFeatures, distance: Distance, variant: str):
        """Matched points ``(M, 2)`` in both images."""
        o = self.options
        # SuperPoint matches raw descriptors (BFMatcher NORM_L2); glue-factory L2-normalised ones.
        normalise = distance is Distance.L2 and variant == "gluefactory"
        da, db = torch.from_numpy(a.descriptors), torch.from_numpy(b.descriptors)
        if o.matcher == "ratio":
            m = ratio_matches(da, db, distance, o.ratio, normalise)
        else:
            m = mutual_nearest(da, db, distance, normalise)
        return a.xy[m[:, 0]], b.xy[m[:, 1]]

    def shared(self, f: ImageFeatures, H: np.ndarray, size: tuple[int, int]) -> ImageFeatures:
        """SuperPoint's ``keep_shared_points``: keypoints whose warp lies in [0, w) x [0, h), in its
        order (ascending score, so the weakest first), which is the order RANSAC samples from."""
        w = est.warp(H, f.xy) if len(f) else f.xy
        keep = np.nonzero((w[:, 0] >= 0) & (w[:, 0] < size[0]) & (w[:, 1] >= 0) & (w[:, 1] < size[1]))[0][::-1]
        return ImageFeatures(f.xy[keep], f.descriptors[keep])

    def score(self, features, dataset, distance: Distance, variant: str) -> list[dict[str, Any]]:
        """One dict per pair: sequence, kind, target, matched points, H, sizes."""
        pairs = []
        for seq in dataset.sequences:
            for k in range(2, len(seq.images) + 1):
                H, size0, size1 = self.pair_geometry(seq, k, variant)
                a, b = features[seq.name, 1], features[seq.name, k]
                if variant == "superpoint":
                    a, b = self.shared(a, H, size1), self.shared(b, np.linalg.inv(H), size0)
                p0, p1 = self.match(a, b, distance, variant)
                pairs.append(dict(sequence=seq.name, kind=seq.kind, target=k, p0=p0, p1=p1, H=H, size=size0))
        return pairs

    @staticmethod
    def measure(pairs: list[dict[str, Any]], estimator: est.Estimator, variant: str) -> list[dict[str, float]]:
        """Per pair: corner error (inf on failure), inliers, matches."""
        corners = est.superpoint_corners if variant == "superpoint" else est.gluefactory_corners
        out = []
        for p in pairs:
            fit = est.estimate_homography(p["p0"], p["p1"], estimator)
            error = est.corner_error(fit.H, p["H"], corners(*p["size"]))
            out.append({"error": error, "inliers": float(fit.inliers.sum()), "matches": float(len(p["p0"]))})
        return out

    @staticmethod
    def aggregate(measured: list[dict[str, float]], variant: str) -> dict[str, float]:
        errors = [m["error"] for m in measured]
        values = {}
        if variant == "superpoint":
            for eps in SP_EPS:
                values[f"correct@{eps}"] = float(np.mean([e <= eps for e in errors]))
        else:
            aucs = est.error_auc(errors, GF_AUC)
            values.update({f"auc@{t}": a for t, a in zip(GF_AUC, aucs)})
            values["maa"] = float(np.mean(aucs))
        values["inliers"] = float(np.mean([m["inliers"] for m in measured]))
        values["matches"] = float(np.mean([m["matches"] for m in measured]))
        return values

    def units(self, variant: str, metric: str, sequences: list[str], measured: list[dict]):  # one seed: first run
        if self.options.seeds > 1 or metric not in PER_PAIR:
            return None
        if metric == "maa" or metric.startswith("auc@"):  # each pair's share of the trapezoid AUC
            shares = est.error_auc_shares([m["error"] for m in measured], GF_AUC)
            values = shares.mean(axis=0) if metric == "maa" else shares[GF_AUC.index(int(metric[4:]))]
        else:
            values = [self.aggregate([m], variant)[metric] for m in measured]
        return grouped_units("sequence", sequences, values)

    def evaluate(self, features, dataset, subject, context) -> list[ResultRow]:
        rows = []
        for variant in self.options.variants:
            rows += self.variant_rows(variant, features[variant], dataset, subject)
        return rows

    def variant_rows(self, variant: str, features, dataset, subject) -> list[ResultRow]:
        o = self.options
        pairs = self.score(features, dataset, subject.distance, variant)
        cov = coverage(dataset)
        base = ":".join((f"det={self.detector}", f"budget={self.budget_label}", *self.variant_parts(variant)))
        notes = f"variant={variant} detector={self.detector} budget={self.budget_label} matcher={o.matcher}"
        if o.matcher == "ratio":
            notes += f" ratio={o.ratio:g}"
        if cov.marker:
            base += f":{cov.marker}"
            notes = f"incomplete: {cov.describe()}; {notes}"
        if not pairs:
            return self.error_rows(subject.descriptor, subject.weights, dataset.name, "all", "no pair to evaluate")
        subsets = {"all": list(range(len(pairs)))}
        for kind in ("i", "v"):
            chosen = [i for i, p in enumerate(pairs) if p["kind"] == kind]
            if chosen:
                subsets[kind] = chosen
        per_seed: list[dict[str, dict[str, float]]] = []  # seed -> subset -> metric -> value
        first_run, first_estimator = [], None
        for offset in range(o.seeds):
            candidates = o.estimators(variant, offset)
            runs = [self.measure(pairs, e, variant) for e in candidates]
            scored = [{s: self.aggregate([r[i] for i in idx], variant) for s, idx in subsets.items()} for r in runs]
            # the sweep keeps the threshold with the best mAA over all pairs (glue-factory eval_poses)
            best = max(range(len(runs)), key=lambda j: scored[j]["all"].get("maa", 0.0)) if len(runs) > 1 else 0
            per_seed.append(scored[best])
            if offset == 0:
                first_run, first_estimator = runs[best], candidates[best]
        notes += f" {first_estimator.describe()}" + (f" seeds={o.seeds}" if o.seeds > 1 else "")
        if o.threshold == -1:
            notes += f" threshold tuned on the test set (sweep {','.join(f'{t:g}' for t in SWEEP)})"
        rows = []
        for subset, idx in subsets.items():
            seqs = len({pairs[i]["sequence"] for i in idx})
            for metric in per_seed[0][subset]:
                values = [s[subset][metric] for s in per_seed]
                spread = ""
                if o.seeds > 1:
                    spread = f" seed_std={np.std(values):.4g} seed_range={min(values):.4g}..{max(values):.4g}"
                units = self.units(variant, metric, [pairs[i]["sequence"] for i in idx], [first_run[i] for i in idx])
                rows.append(
                    self.row(
                        subject, dataset.name, "all", task="homography", metric=metric, value=float(np.mean(values)),
                        subset=subset, variant=base, notes=f"{notes}{spread} sequences={seqs} pairs={len(idx)}",
                        units=units,
                    )
                )  # fmt: skip
        for p, m in zip(pairs, first_run):
            for metric, value in (("corner_error", m["error"]), ("inliers", m["inliers"]), ("matches", m["matches"])):
                if np.isfinite(value):
                    rows.append(
                        self.row(
                            subject,
                            dataset.name,
                            "all",
                            task="homography",
                            metric=metric,
                            value=float(value),
                            subset=p["sequence"],
                            variant=f"{base}:pair=1-{p['target']}",
                            notes=f"{notes} pairs=1",
                        )
                    )
        return rows
