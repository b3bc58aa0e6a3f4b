"""Relative pose from matched keypoints, with the detector held fixed and the estimators on record.

Keypoints from a named detector (or ``detector=own``, the descriptor's own) at full resolution,
matched by mutual nearest neighbours (or the ratio test), on two-view datasets of kind ``pose``
(``pose-synth``; pairs with ``K0``, ``K1`` and ``X1 = R X0 + t``). Two protocols in one run, as
the upstream code computes them:

- GIFT (zju3dv/GIFT ``train/evaluation.py``, ``relative_pose_estimation``): fewer than 5 keypoints in
  either image or fewer than 5 matches -> 180 deg and 0 inliers; otherwise ``cv2.undistortPoints``
  with each K, ``findEssentialMat(focal=1, pp=(0,0), RANSAC, prob=0.999, threshold=3/f_avg)``
  (``f_avg`` the mean of the two ``fx``) and ``recoverPose(E)`` (when OpenCV returns several
  stacked solutions, the first: GIFT's call would fail on them; no E at all scores 180 deg); the rotation error
  ``compute_angle(R_gt^T R)``; inliers = findEssentialMat's mask. Columns: mean angle (``ang``),
  mean inliers, fraction below 5 / 10 / 20 deg. GIFT's code turns NaN angles (a cosine below -1
  from rounding, i.e. a rotation error near 180 deg) into 0, counted correct: ``gift_nan=zero``
  reproduces that quirk; the default (``gift_nan=clip``) clips the cosine, so such a pair is ~180 deg.
- glue-factory (cvg/glue-factory ``eval_relative_pose_robust``): the estimator named by the options
  (default OpenCV RANSAC 0.5 px, prob 0.99999, OpenCV's default 1000 iterations, on normalised
  points, threshold / mean focal, recoverPose on every E keeping the one with most inliers;
  :func:`~desc_bench.bench.estimators.estimate_relative_pose`);
  error ``max(rotation error, folded translation angle)``, failure infinite; pose AUC@5/10/20 deg.

``seeds=N`` repeats every estimate with seeds ``seed .. seed+N-1`` (OpenCV's generator is seeded):
the values are means over seeds, the notes give the spread.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ...adapters.base import Descriptor, Distance
from ...adapters.prepare import dense_mode
from ...errors import InputError, UnknownNameError
from ...io.progress import bar
from ...records.schema import ResultRow
from .. import detectors as det
from .. import estimators as est
from ..features import Extraction, ImageFeatures, source_fingerprint
from ..matching import describe, mutual_nearest, ratio_matches
from .base import Benchmark, Headline, TableSpec, TimingSample, per_unit

GIFT_THRESHOLDS = (5, 10, 20)
AUC_THRESHOLDS = (5, 10, 20)
GIFT_THRESHOLD_PX, GIFT_CONFIDENCE = 3.0, 0.999
_CODE = source_fingerprint([Path(__file__), Path(det.__file__)])


@dataclass(frozen=True)
class PoseOptions:
    detector: str = "dog"
    budget: int = 2000  # keypoints per image
    seed: int = 0
    matcher: str = "mutual"
    ratio: float = 0.8
    estimator: str = "ransac"  # of the glue-factory protocol
    threshold: float = 0.5  # px
    iterations: int = 0  # 0: the estimator's default as glue-factory runs it (OpenCV 1000, PoseLib 100000)
    confidence: float = 0.0  # 0: the estimator's default as glue-factory runs it (OpenCV 0.99999, PoseLib 0.9999)
    seeds: int = 1
    gift_nan: str = "clip"  # "zero": GIFT's NaN-to-0 quirk

    def __post_init__(self):
        if self.detector not in (*det.DETECTORS, det.OWN):
            raise UnknownNameError("detector", self.detector, [*det.DETECTORS, det.OWN])
        if self.budget < 5:
            raise InputError(f"budget must be at least 5 keypoints, got {self.budget}")
        if self.matcher not in ("mutual", "ratio"):
            raise UnknownNameError("matcher", self.matcher, ["mutual", "ratio"])
        if not 0 < self.ratio <= 1:
            raise InputError(f"ratio must lie in (0, 1], got {self.ratio}")
        if self.seeds < 1:
            raise InputError(f"seeds must be at least 1, got {self.seeds}")
        if self.gift_nan not in ("clip", "zero"):
            raise UnknownNameError("gift_nan", self.gift_nan, ["clip", "zero"])
        self.estimator_for(0)

    def estimator_for(self, offset: int) -> est.Estimator:
        # glue-factory's OpenCV estimator passes no maxIters (OpenCV's default, 1000) and prob 0.99999;
        # its PoseLib estimator passes only the threshold (PoseLib's own defaults)
        iterations, confidence = est.POSELIB_DEFAULTS if self.estimator == "poselib" else (1000, 0.99999)
        return est.Estimator(
            self.estimator,
            self.threshold,
            self.iterations or iterations,
            self.confidence or confidence,
            self.seed + offset,
        )


def gift_pose(pts0, pts1, K0, K1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """GIFT's ``estimate_relative_pose_from_correspondence``: (inlier mask, R)."""
    f_avg = (K0[0, 0] + K1[0, 0]) / 2
    p0 = np.ascontiguousarray(pts0, np.float32)[:, None]
    p1 = np.ascontiguousarray(pts1, np.float32)[:, None]
    n0 = cv2.undistortPoints(p0, cameraMatrix=np.asarray(K0, np.float64), distCoeffs=None)
    n1 = cv2.undistortPoints(p1, cameraMatrix=np.asarray(K1, np.float64), distCoeffs=None)
    cv2.setRNGSeed(seed)
    E, mask = cv2.findEssentialMat(
        n0, n1, focal=1.0, pp=(0.0, 0.0), method=cv2.RANSAC, prob=GIFT_CONFIDENCE, threshold=GIFT_THRESHOLD_PX / f_avg
    )
    if E is None:
        return np.zeros(len(p0), bool), None
    _, R, _, _ = cv2.recoverPose(E[:3], n0, n1)
    return mask[:, 0].astype(bool), R


def gift_summary(angles: list[float], inliers: list[float], nan: str) -> dict[str, float]:
    """GIFT's printed line: mean angle, mean inliers, fractions below 5 / 10 / 20 deg."""
    a = np.asarray(angles, np.float64)
    if nan == "zero":
        a[np.isnan(a)] = 0
    out = {"ang": float(np.mean(a)), "gift_inliers": float(np.mean(inliers))}
    out.update({f"correct@{t}": float(np.mean(a < t)) for t in GIFT_THRESHOLDS})
    return out


class RelativePose(Benchmark):
    name = "relative-pose"
    summary = "relative pose: GIFT rotation error / correct <5,10,20 deg and glue-factory pose AUC@5/10/20"
    accepts = ("pose",)
    Options = PoseOptions
    time_unit = "image"
    tasks = ("relative-pose",)
    headlines = (
        Headline("pose AUC@10", "relative-pose", "auc@10", percent=False),
        Headline("GIFT correct@10", "relative-pose", "correct@10", percent=False),
    )
    tables = (
        TableSpec(
            "Relative pose, GIFT protocol (rotation error, deg)",
            metrics=("ang", "gift_inliers", "correct@5", "correct@10", "correct@20"),
            rows=("descriptor", "variant"),
            columns="metric",
            groups=("dataset",),
        ),
        TableSpec(
            "Relative pose, glue-factory pose AUC (max of rotation and translation error, deg)",
            metrics=("auc@5", "auc@10", "auc@20", "inliers", "matches"),
            rows=("descriptor", "variant"),
            columns="metric",
            groups=("dataset",),
        ),
    )

    def mode(self, descriptor: Descriptor) -> str:
        return dense_mode(descriptor)

    def check_data(self, dataset: Any, context) -> None:
        super().check_data(dataset, context)
        if not dataset.complete:
            context.log(
                f"warning: {dataset.name} holds {len(dataset.pairs)} of {dataset.expected_pairs} pairs; "
                f"the {self.name} rows are marked incomplete"
            )

    def data_files(self, dataset: Any, context) -> list[Path]:
        return [path for pair in dataset.pairs for path in pair.images]

    def timing_sample(self, descriptor, dataset) -> TimingSample | None:
        if not dataset.pairs:
            return None
        o, pixels = self.options, dataset.pairs[0].image(0)
        found = det.detect_with(descriptor, o.detector, pixels, o.budget, o.seed)
        return TimingSample(pixels, found, f"{o.detector} {o.budget}")

    def features(self, descriptor, dataset, store, context):
        o = self.options
        extraction = Extraction(f"pose-full-{_CODE}", o.detector, o.budget, o.seed)
        out = {}
        for pair in bar(dataset.pairs, desc=f"{self.name} {descriptor.name}", unit="pair", enabled=context.progress):
            for k in (0, 1):

                def compute(p=pair, k=k) -> ImageFeatures:
                    pixels = p.image(k)
                    found = det.detect_with(descriptor, o.detector, pixels, o.budget, o.seed)
                    values = describe(descriptor, pixels, found).numpy()
                    return ImageFeatures(found.xy, values, found.scale, found.angle)

                out[pair.name, k] = store.image(f"{pair.name}/{k}", [pair.images[k]], compute, extraction)
        return out

    def match(self, a: ImageFeatures, b: ImageFeatures, distance: Distance) -> tuple[np.ndarray, np.ndarray]:
        da, db = torch.from_numpy(a.descriptors), torch.from_numpy(b.descriptors)
        normalise = distance is Distance.L2
        if self.options.matcher == "ratio":
            m = ratio_matches(da, db, distance, self.options.ratio, normalise)
        else:
            m = mutual_nearest(da, db, distance, normalise)
        return a.xy[m[:, 0]], b.xy[m[:, 1]]

    def measure(self, pair, a: ImageFeatures, b: ImageFeatures, distance: Distance, offset: int) -> dict[str, float]:
        """One pair at seed ``seed + offset``: GIFT angle and inliers; glue-factory error and inliers."""
        p0, p1 = self.match(a, b, distance)
        out = {"matches": float(len(p0))}
        if len(a) < 5 or len(b) < 5 or len(p0) < 5:
            out.update(gift_angle=180.0, gift_inliers=0.0)
        else:
            mask, R = gift_pose(p0, p1, pair.K0, pair.K1, self.options.seed + offset)
            angle = 180.0 if R is None else est.gift_rotation_error(pair.R, R)
            if self.options.gift_nan == "clip" and R is not None:
                angle = est.rotation_error(pair.R, R)
            out.update(gift_angle=angle, gift_inliers=float(mask.sum()))
        fit = est.estimate_relative_pose(p0, p1, pair.K0, pair.K1, self.options.estimator_for(offset))
        if fit.success:
            error = max(est.rotation_error(pair.R, fit.R), est.translation_error(pair.t, fit.t))
            out.update(error=error, inliers=float(fit.inliers.sum()))
        else:
            out.update(error=float("inf"), inliers=0.0)
        return out

    def per_pair_values(self, measured: list[dict[str, float]]) -> dict[str, list[float]]:
        """Per-pair values of the metrics that are means over pairs (GIFT's columns, inliers, matches, and
        each pair's share of the pose AUCs: :func:`~desc_bench.bench.estimators.error_auc_shares`); a metric
        with a non-finite pair value (a failed estimate kept as NaN) has none."""
        out: dict[str, list[float]] = {}
        for m in measured:
            one = gift_summary([m["gift_angle"]], [m["gift_inliers"]], self.options.gift_nan)
            one.update(inliers=m["inliers"], matches=m["matches"])
            for metric, value in one.items():
                out.setdefault(metric, []).append(float(value))
        shares = est.error_auc_shares([m["error"] for m in measured], AUC_THRESHOLDS)  # each pair's part of the AUC
        out.update({f"auc@{t}": list(share) for t, share in zip(AUC_THRESHOLDS, shares)})
        return {k: v for k, v in out.items() if np.all(np.isfinite(v))}

    def evaluate(self, features, dataset, subject, context) -> list[ResultRow]:
        o = self.options
        if not dataset.pairs:
            return self.error_rows(subject.descriptor, subject.weights, dataset.name, "all", "the dataset has no pair")
        per_seed, first = [], []
        for offset in range(o.seeds):
            measured = [
                self.measure(p, features[p.name, 0], features[p.name, 1], subject.distance, offset)
                for p in dataset.pairs
            ]
            angles, gift_inliers = [m["gift_angle"] for m in measured], [m["gift_inliers"] for m in measured]
            values = gift_summary(angles, gift_inliers, o.gift_nan)
            aucs = est.error_auc([m["error"] for m in measured], AUC_THRESHOLDS)
            values.update({f"auc@{t}": a for t, a in zip(AUC_THRESHOLDS, aucs)})
            values["inliers"] = float(np.mean([m["inliers"] for m in measured]))
            values["matches"] = float(np.mean([m["matches"] for m in measured]))
            per_seed.append(values)
            first = first or measured
        matcher = f"ratio{o.ratio:g}" if o.matcher == "ratio" else "mutual"
        variant = f"det={o.detector}:budget={o.budget}:matcher={matcher}:estimator={o.estimator}:th={o.threshold:g}"
        if o.gift_nan == "zero":
            variant += ":gift_nan=zero"
        if not dataset.complete:
            variant += f":incomplete={len(dataset.pairs)}of{dataset.expected_pairs}"
        gift = f"GIFT estimator: opencv ransac threshold={GIFT_THRESHOLD_PX:g}/f_avg confidence={GIFT_CONFIDENCE:g}"
        notes = (
            f"detector={o.detector} budget={o.budget} matcher={o.matcher} {o.estimator_for(0).describe()}; {gift}; "
            f"gift_nan={o.gift_nan}" + (f" seeds={o.seeds}" if o.seeds > 1 else "") + f" pairs={len(dataset.pairs)}"
        )
        rows = []
        per_pair = self.per_pair_values(first) if o.seeds == 1 else {}
        for metric in per_seed[0]:
            values = [s[metric] for s in per_seed]
            spread = ""
            if o.seeds > 1:
                spread = f" seed_std={np.std(values):.4g} seed_range={min(values):.4g}..{max(values):.4g}"
            units = None  # means over pairs (the AUCs: of each pair's share of the area) resample the pairs
            if metric in per_pair and np.isclose(np.mean(per_pair[metric]), values[0], rtol=0, atol=1e-9):
                units = per_unit("pair", dict(zip([p.name for p in dataset.pairs], per_pair[metric])))
            rows.append(
                self.row(
                    subject, dataset.name, "all", task="relative-pose", metric=metric,
                    value=float(np.mean(values)), variant=variant, notes=notes + spread, units=units,
                )
            )  # fmt: skip
        for pair, m in zip(dataset.pairs, first):
            for metric in ("gift_angle", "error", "inliers", "matches"):
                if np.isfinite(m[metric]):
                    rows.append(
                        self.row(
                            subject, dataset.name, "all", task="relative-pose", metric=metric, value=float(m[metric]),
                            subset=pair.name, variant=f"{variant}:pair={pair.name}", notes=notes,
                        )
                    )  # fmt: skip
        return rows
