"""Published figures, as plain data: which descriptor, benchmark, protocol variant, data and value,
and the paper or repository table each one comes from (transcribed, never recomputed).

Every :class:`Figure` names the desc-bench descriptor (and weights) it corresponds to, or ``""``
when desc-bench has no counterpart (kept so that the registry covers its sources whole). Values
are fractions (mAP 0.2547 for 25.47 %) except where ``metric`` is not a fraction (pose angles in
degrees, inlier counts). ``setting`` says what variant of the protocol produced the figure (the
python or MATLAB HPatches code, 116 or 108 sequences, the estimator); ``tolerance`` is the
largest difference :mod:`desc_bench.results.published_check` accepts, in the value's own unit.

The Oxford5k / Paris6k figures use bow-retrieval's rows (task ``retrieval``, metric ``bow``,
``bow+sv`` or ``bow+sv+qe``, subset ``original``), GIFT's pose line relative-pose's (task
``relative-pose``, metrics ``ang``, ``gift_inliers``, ``correct@5/10/20`` on ``st-peters``); their
row variants (detector, budget, words; estimator) are not fixed here, so ``setting`` says what the
published figure used and the comparison names the row's own.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_TOLERANCE = 0.01  # one point of a percentage


@dataclass(frozen=True)
class Figure:
    published_as: str  # the descriptor's name in the source
    descriptor: str  # the desc-bench descriptor label ("" none)
    weights: str  # the desc-bench weights label ("" any)
    protocol: str  # the desc-bench benchmark name
    datasets: tuple[str, ...]  # desc-bench dataset names the figure applies to
    split: str
    task: str
    metric: str
    value: float
    noise: str = ""
    subset: str = "all"
    variant: str | None = ""  # the row's variant; None: any (image pairs: det=..:budget=..)
    sequences: int | None = None  # size of the data the figure was measured on (HPatches)
    tolerance: float = DEFAULT_TOLERANCE
    source: str = ""
    setting: str = ""  # the protocol variant, in words


# ---- HPatches patches, python protocol ----------------------------------------------------------
_IAGO = (
    "iago-suarez/hpatches-benchmark python results CSV (commit e13464ae), "
    "via ../shared/data/reference-numbers/hpatches_python_results_iago-suarez.csv"
)
_SPLIT_SEQUENCES = {"full": 116, "a": 40}
# published name, desc-bench descriptor, weights, split, verification mAP (mean of 6), matching
# mAP easy / hard / tough / mean (all in %)
_IAGO_ROWS = (
    ("32x32-CDbin-256", "", "", "full", 85.088, 62.538, 43.765, 26.679, 44.327),
    ("64x64-CDbin-256", "", "", "full", 85.322, 62.619, 44.129, 27.1, 44.616),
    ("BiSIFT", "", "", "full", 69.487, 49.611, 21.921, 9.749, 27.094),
    ("ConvOpt-120", "", "", "full", 77.115, 50.54, 25.679, 11.979, 29.399),
    ("DOAP-Lib-128f", "", "", "a", 87.475, 66.672, 49.109, 31.53, 49.104),
    ("DOAP-Lib-128f", "", "", "full", 88.367, 68.069, 51.869, 34.224, 51.387),
    ("DOAP-Lib-256b", "", "", "a", 81.64, 53.321, 32.923, 18.54, 34.928),
    ("DOAP-Lib-256b", "", "", "full", 82.806, 55.558, 35.845, 20.883, 37.429),
    ("DOAP-ST-Lib-256b", "", "", "a", 81.64, 53.321, 32.923, 18.54, 34.928),
    ("DOAP-ST-Lib-256b", "", "", "full", 82.806, 55.558, 35.845, 20.883, 37.429),
    ("LDAHashDIF128", "", "", "full", 62.685, 40.212, 15.8, 6.754, 20.922),
    ("LDAHashLDA128", "", "", "full", 60.137, 39.556, 14.687, 6.099, 20.114),
    ("LDB", "", "", "full", 60.21, 31.611, 9.965, 3.76, 15.112),
    ("SOSNet", "", "", "full", 88.48, 70.294, 54.461, 36.493, 53.749),
    ("binboost", "boostdesc-opencv", "", "full", 65.618, 29.945, 10.433, 3.889, 14.756),
    ("brief", "", "", "full", 56.882, 23.082, 6.29, 2.08, 10.484),
    ("cvBRISK", "", "", "full", 56.672, 21.272, 9.568, 4.396, 11.745),
    ("cvFREAK", "", "", "full", 61.95, 19.371, 6.045, 2.165, 9.194),
    ("cvLATCH-256", "", "", "full", 57.31, 30.936, 9.58, 3.56, 14.692),
    ("cvLATCH", "", "", "full", 59.857, 35.386, 11.698, 4.501, 17.195),
    ("cvRSIFT", "", "", "full", 67.334, 55.758, 27.922, 13.918, 32.533),
    ("hardnet+", "hardnet", "liberty-aug", "full", 88.429, 69.685, 53.341, 35.355, 52.794),
    ("orb", "", "", "a", 58.209, 30.042, 8.647, 2.889, 13.859),
    ("orb", "", "", "full", 59.109, 32.721, 9.878, 3.382, 15.327),
    ("rootsift", "rootsift-opencv", "", "a", 56.024, 48.151, 20.875, 9.351, 26.126),
    ("rootsift", "rootsift-opencv", "", "full", 58.526, 49.503, 22.075, 10.085, 27.221),
    ("sift", "sift-vlfeat", "", "a", 63.351, 45.318, 19.302, 8.629, 24.416),
    ("sift", "sift-vlfeat", "", "full", 65.122, 46.658, 20.397, 9.357, 25.471),
    ("tfeat-margin-star", "", "", "full", 81.897, 52.27, 30.091, 15.685, 32.682),
)
_PYSIFT = "ducha-aiki/pytorch-sift README (commit 00e726f8), HPatches matching mAP, split full"
_PYSIFT_ROWS = (  # published name, descriptor, easy, hard, tough, mean (fractions)
    ("OPENCV-SIFT", "sift-opencv", 0.47788, 0.20997, 0.0967711, 0.26154),
    ("VLFeat-SIFT", "sift-vlfeat", 0.466584, 0.203966, 0.0935743, 0.254708),
    ("PYTORCH-SIFT-VLFEAT-65", "sift-torch-vlfeat", 0.472563, 0.202458, 0.0910371, 0.255353),
    ("NUMPY-SIFT-VLFEAT-65", "", 0.449431, 0.197918, 0.0905395, 0.245963),
    ("PYTORCH-SIFT-MP-65", "sift-torch-mp", 0.430887, 0.184834, 0.0832707, 0.232997),
    ("NUMPY-SIFT-MP-65", "", 0.417296, 0.18114, 0.0820582, 0.226832),
)
_HARDNET_FIG = "DagnyT/hardnet README figure img/hardnet_hpatches.png (commit 35bc1d79), split full"
_HARDNET_ROWS = (  # published name, descriptor, weights, matching mAP, retrieval mAP (%)
    ("rSIFT", "rootsift-opencv", "", 27.22, 42.49),
    ("TFeat-M*", "", "", 32.64, 52.03),
    ("PCW", "", "", 33.66, 48.26),
    ("HardTFeat", "", "", 38.07, 55.12),
    ("L2Net", "", "", 40.82, 59.64),
    ("L2Net+", "", "", 45.04, 63.37),
    ("HardNetNIPS", "", "", 48.24, 65.26),
    ("HardNet+NIPS", "", "", 50.38, 66.82),
    ("HardNet", "hardnet", "liberty", 52.18, 69.44),
    ("HardNet+", "hardnet", "liberty-aug", 52.76, 69.66),
)
_IAGO_PDF = "iago-suarez/hpatches-benchmark python/hpatches_results.pdf (commit e13464ae), split a"
_IAGO_PDF_ROWS = (  # published name, descriptor, weights, verification, matching, retrieval mAP (%)
    ("Hardnet+", "hardnet", "liberty-aug", 87.77, 50.66, 69.27),
    ("BELID-256", "", "", 69.57, 19.28, 35.08),
    ("BELID-512", "", "", 69.42, 19.96, 35.71),
    ("BELID-128", "", "", 69.29, 16.87, 33.08),
    ("BELID-U-512", "", "", 66.92, 16.24, 31.32),
    ("BinBoost", "boostdesc-opencv", "", 64.72, 13.19, 32.64),
    ("SIFT", "sift-vlfeat", "", 63.35, 24.42, 42.10),
    ("ORB", "", "", 58.21, 13.86, 28.27),
    ("BRIEF", "", "", 56.56, 9.21, 24.96),
)
_NOTES = {  # what a reader must know about a descriptor mapping
    "rootsift-opencv": "published RootSIFT is the hpatches-benchmark baseline (VLFeat SIFT + RootSIFT); "
    "desc-bench's is OpenCV SIFT + RootSIFT",
    "boostdesc-opencv": "published BinBoost is the authors' code; desc-bench's is OpenCV contrib BinBoost-256",
}


def _hp(name, descriptor, weights, split, task, metric, noise, variant, value, source) -> Figure:
    setting = f"HPatches python protocol (hpatches-benchmark), split {split} ({_SPLIT_SEQUENCES[split]} sequences)"
    if descriptor in _NOTES:
        setting += "; " + _NOTES[descriptor]
    return Figure(
        name, descriptor, weights, "python", ("hpatches",), split, task, metric, value, noise, "all", variant,
        _SPLIT_SEQUENCES[split], source=source, setting=setting,
    )  # fmt: skip


def _hpatches() -> list[Figure]:
    out = []
    noises = ("easy", "hard", "tough", "mean")
    for name, desc, weights, split, verif, *match in _IAGO_ROWS:
        out.append(_hp(name, desc, weights, split, "verification", "ap", "mean", "mean", verif / 100, _IAGO))
        for noise, value in zip(noises, match):
            out.append(_hp(name, desc, weights, split, "matching", "map", noise, "", value / 100, _IAGO))
    for name, desc, *match in _PYSIFT_ROWS:
        for noise, value in zip(noises, match):
            out.append(_hp(name, desc, "", "full", "matching", "map", noise, "", value, _PYSIFT))
    for name, desc, weights, match, retrieval in _HARDNET_ROWS:
        out.append(_hp(name, desc, weights, "full", "matching", "map", "mean", "", match / 100, _HARDNET_FIG))
        out.append(
            _hp(name, desc, weights, "full", "retrieval", "map", "mean", "pool=mean", retrieval / 100, _HARDNET_FIG)
        )
    for name, desc, weights, verif, match, retrieval in _IAGO_PDF_ROWS:
        out.append(_hp(name, desc, weights, "a", "verification", "ap", "mean", "mean", verif / 100, _IAGO_PDF))
        out.append(_hp(name, desc, weights, "a", "matching", "map", "mean", "", match / 100, _IAGO_PDF))
        out.append(_hp(name, desc, weights, "a", "retrieval", "map", "mean", "pool=mean", retrieval / 100, _IAGO_PDF))
    return out


# ---- image pairs ------------------------------------------------------------------------------
_MSNET = "lin-zju/my-descriptor-space (MSNet) paper table, PCK All / Viewpoint / Illumination (METRICS.md 2)"
_MSNET_SETTING = (
    "MSNet protocol: all 116 sequences, longest side 640, 1000 Harris points, FLANN matcher "
    "(approximate, up to 0.03 per pair between runs), effective threshold 3 px"
)
_MSNET_ROWS = (("DAISY", "daisy-msnet", 0.592, 0.535, 0.647), ("SuperPoint", "superpoint", 0.646, 0.592, 0.702))
_MSNET_ROWS += (("MSNetV0", "msnet-v0", 0.626, 0.619, 0.644),)
_D2NET = "mihaidusmanu/d2-net hpatches_sequences notebook figure (commit 0a3356c6), read off the plot"


_GIFT_PCK = "zju3dv/GIFT README, eval_original output line (es superpoint_det gift_pretrain_desc match_v2)"
_GIFT_PCK_SETTING = (
    "GIFT protocol on ES-HPatches (its own resized copy, longest side 480): SuperPoint detections kept whole, "
    "mutual check off (match_v2: exact nearest neighbour both ways), error strictly < t"
)


def _pairs() -> list[Figure]:
    out = []
    for name, desc, every, view, illum in _MSNET_ROWS:
        for subset, value in (("all", every), ("v", view), ("i", illum)):
            out.append(
                Figure(
                    name,
                    desc,
                    "",
                    "pck-msnet",
                    ("hpatches-seq-full",),
                    "all",
                    "pck",
                    "pck@3",
                    value,
                    "",
                    subset,
                    None,
                    116,
                    source=_MSNET,
                    setting=_MSNET_SETTING,
                )  # fmt: skip
            )
    for metric, value in (("pck@5", 0.290), ("pck@2", 0.132), ("pck@1", 0.057)):
        out.append(
            Figure(
                "GIFT",
                "gift",
                "",
                "pck-gift",
                ("hpatches-seq-full-es",),
                "all",
                "pck",
                metric,
                value,
                "",
                "all",
                None,
                tolerance=0.02,
                source=_GIFT_PCK,
                setting=_GIFT_PCK_SETTING,
            )  # fmt: skip
        )
    for name, desc, value in (("SuperPoint", "superpoint", 0.65), ("HesAff+RootSIFT", "", 0.57)):
        out.append(
            Figure(
                name,
                desc,
                "",
                "mma",
                ("hpatches-seq",),
                "all",
                "mma",
                "mma@3",
                value,
                "",
                "all",
                None,
                108,
                tolerance=0.03,
                source=_D2NET,
                setting="D2-Net MMA: 108 sequences, each method's own keypoints, mutual NN; value +-0.02 (plot)",
            )  # fmt: skip
        )
    return out


# ---- Brown / PhotoTour ------------------------------------------------------------------------
_HARDNET_T1 = "HardNet paper (Mishchuk et al., NeurIPS 2017) Table 1, FPR95 % (METRICS.md 5)"
_BROWN = ("liberty", "notredame", "yosemite")
# descriptor, weights, train subset ("" hand-crafted), test subset, FPR95 (%)
_FPR_ROWS = (
    ("SIFT", "sift-vlfeat", "", "", "liberty", 29.84),
    ("SIFT", "sift-vlfeat", "", "", "notredame", 22.53),
    ("SIFT", "sift-vlfeat", "", "", "yosemite", 27.29),
    ("SIFT", "sift-vlfeat", "", "", "mean", 26.55),
    ("HardNet", "hardnet", "liberty", "liberty", "notredame", 0.62),
    ("HardNet", "hardnet", "liberty", "liberty", "yosemite", 2.14),
    ("HardNet", "", "", "notredame", "liberty", 1.47),
    ("HardNet", "", "", "notredame", "yosemite", 1.65),
    ("HardNet", "", "", "yosemite", "liberty", 2.67),
    ("HardNet", "", "", "yosemite", "notredame", 0.88),
    ("HardNet+", "hardnet", "liberty-aug", "liberty", "notredame", 0.53),
    ("HardNet+", "hardnet", "liberty-aug", "liberty", "yosemite", 1.96),
    ("HardNet+", "hardnet", "notredame-aug", "notredame", "liberty", 1.49),
    ("HardNet+", "hardnet", "notredame-aug", "notredame", "yosemite", 1.84),
    ("HardNet+", "hardnet", "yosemite-aug", "yosemite", "liberty", 2.51),
    ("HardNet+", "hardnet", "yosemite-aug", "yosemite", "notredame", 0.78),
    ("L2Net", "", "", "notredame", "liberty", 3.64),
    ("L2Net", "", "", "yosemite", "liberty", 5.29),
    ("L2Net", "", "", "liberty", "notredame", 1.15),
    ("L2Net", "", "", "yosemite", "notredame", 1.62),
    ("L2Net", "", "", "liberty", "yosemite", 4.43),
    ("L2Net", "", "", "notredame", "yosemite", 3.30),
)
_SNN = "ducha-aiki/brown_phototour_revisited README (0.3.0), SNN mAP %, published mining (METRICS.md 5)"
_SNN_ROWS = (  # published name, descriptor, yosemite, notredame, liberty (%)
    ("OpenCV SIFT 32px", "sift-opencv", 53.16, 45.93, 46.00),
    ("Kornia RootSIFT 32px", "", 58.24, 49.07, 49.65),
    ("skimage BRIEF 65px", "", 52.68, 44.82, 46.56),
)


def _brown_datasets(test: str) -> tuple[str, ...]:
    return ("brown",) if test == "mean" else ("brown", f"brown-{test}")


def _brown() -> list[Figure]:
    out = []
    for name, desc, weights, train, test, value in _FPR_ROWS:
        variant = f"{train}->{test}" if train else test
        out.append(
            Figure(
                name,
                desc,
                weights,
                "fpr95",
                _brown_datasets(test),
                "all",
                "verification",
                "fpr95",
                value / 100,
                "",
                test,
                variant,
                tolerance=0.005,
                source=_HARDNET_T1,
                setting="HardNet FPR95 (L2, 100k test pairs)" + ("" if train else ", SIFT implementation not stated"),
            )  # fmt: skip
        )
    for name, desc, *values in _SNN_ROWS:
        for test, value in zip(("yosemite", "notredame", "liberty"), values):
            out.append(
                Figure(
                    name,
                    desc,
                    "",
                    "brown-snn-map",
                    _brown_datasets(test),
                    "all",
                    "snn-map",
                    "map-published",
                    value / 100,
                    "",
                    test,
                    test,
                    source=_SNN,
                    setting="SNN mAP, published mining, 32 px patches",
                )  # fmt: skip
            )
    return out


# ---- Oxford5k / Paris6k bag of words, GIFT relative pose ----------------------------------------
_OXFORD = (
    "HardNet paper Table 4 / README, mAP BoW, +SV, +QE (read from a translated copy of arXiv 1705.10872: "
    "confirm against the paper; METRICS.md 3)"
)
_OXFORD_ROWS = (  # published name, descriptor, weights, Oxford5k BoW / SV / QE, Paris6k BoW / SV / QE (%)
    ("TFeat-M*", "", "", (46.7, 55.6, 72.2), (43.8, 51.8, 65.3)),
    ("RootSIFT", "rootsift-opencv", "", (55.1, 63.0, 78.4), (59.3, 63.7, 76.4)),
    ("L2Net+", "", "", (59.8, 67.7, 80.4), (63.0, 66.6, 77.2)),
    ("HardNet", "hardnet", "liberty", (59.0, 67.6, 83.2), (61.4, 67.4, 77.5)),
    ("HardNet+", "hardnet", "liberty-aug", (59.8, 68.8, 83.0), (61.0, 67.0, 77.5)),
    ("HardNet++", "hardnet++", "", (60.8, 69.6, 84.5), (65.0, 70.3, 79.1)),
)
_GIFT = "zju3dv/GIFT README, relative pose (SuperPoint keypoints + GIFT descriptors; METRICS.md 7)"


def _retrieval_and_pose() -> list[Figure]:
    out = []
    setting = "multi-scale Hessian-affine, 1M-word vocabulary learned on the other dataset, trapezoid AP"
    for name, desc, weights, oxford, paris in _OXFORD_ROWS:
        for dataset, values in (("oxford5k", oxford), ("paris6k", paris)):
            for variant, value in zip(("bow", "bow+sv", "bow+sv+qe"), values):
                out.append(
                    Figure(
                        name,
                        desc,
                        weights,
                        "bow-retrieval",
                        (dataset,),
                        "all",
                        "retrieval",
                        variant,
                        value / 100,
                        "",
                        "original",
                        None,
                        tolerance=0.02,
                        source=_OXFORD,
                        setting=setting,
                    )  # fmt: skip
                )
    setting = "GIFT protocol: st_peters_square sps_100_200_first_100, OpenCV essential matrix, rotation error"
    for metric, value, tolerance in (
        ("ang", 24.1, 1.0),
        ("gift_inliers", 62.24, 2.0),
        ("correct@5", 0.17, 0.02),
        ("correct@10", 0.35, 0.02),
        ("correct@20", 0.65, 0.02),
    ):
        out.append(
            Figure(
                "GIFT",
                "gift",
                "",
                "relative-pose",
                ("st-peters",),
                "all",
                "relative-pose",
                metric,
                value,
                variant=None,
                tolerance=tolerance,
                source=_GIFT,
                setting=setting,
            )  # fmt: skip
        )
    return out


FIGURES: tuple[Figure, ...] = (*_hpatches(), *_pairs(), *_brown(), *_retrieval_and_pose())
