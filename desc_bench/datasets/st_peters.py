"""``st-peters``: GIFT's relative-pose test ("sps_100_200_first_100"; kind ``pose``).

The st_peters_square test split of Yi et al. 2018 (learned-correspondence-release), selected and
calibrated exactly as zju3dv/GIFT ``dataset/relative_pose_dataset.py`` does:

- ``test/images.txt`` and ``test/calibration.txt`` list the images and their
  ``calibration_<id>.h5`` files (``R``, ``T``, ``K``, ``dc``, ``imsize``); ``K``'s principal point is
  stored relative to the image centre, so ``(w - 1) / 2`` and ``(h - 1) / 2`` are added (``imsize`` is
  ``[[w, h]]``); ``dc`` is ignored, as GIFT's ``undistortPoints(distCoeffs=None)`` ignores it;
- ``test/visibility/vis_<id>.txt``: row ``i`` of the visibility matrix; pairs ``i < j`` with
  ``100 <= vis[i, j] <= 200`` in row-major order, the first 100;
- poses world->camera: ``R01 = R1 R0^T``, ``t01 = T1 - R1 R0^T T0``; images at full resolution.

Reading the HDF5 calibration files needs h5py (``pip install 'desc-bench[stpeters]'``). Download:
the public archive ``st_peters_square.tar.gz`` (the address GIFT's README gives; plain http only, no
published checksum: bounded in size, extraction bounded, structure checked, sha256 recorded).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError, DescBenchError, DescriptorUnavailableError, DownloadError
from ..io.download import Archive, ExtractLimits, fetch_archive
from .base import DatasetSource
from .synth.pose import PosePair, PoseSet

FOLDER = "st_peters_square"
FOLDERS = (FOLDER, "st_peters_square_dataset")  # the archive's name, GIFT's name
VIS_MIN, VIS_MAX, FIRST = 100, 200, 100
ARCHIVES = (
    Archive(
        urls=("http://webhome.cs.uvic.ca/~kyi/files/2018/learned-correspondence/st_peters_square.tar.gz",),
        filename="st_peters_square.tar.gz",
        max_bytes=16 << 30,
        checksum_source="none published (GIFT and Yi et al. give the address only): size bound and structure check",
        limits=ExtractLimits(max_entries=100_000, max_member_bytes=256 << 20, max_total_bytes=24 << 30, max_ratio=20.0),
    ),
)


def _h5py():
    try:
        import h5py
    except ImportError:
        raise DescriptorUnavailableError(
            "dataset st-peters reads HDF5 calibration files: pip install 'desc-bench[stpeters]' (h5py)"
        ) from None
    return h5py


def read_calibration(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(R, T, K) of one ``calibration_<id>.h5``, K's principal point moved to pixels as GIFT does."""
    if not path.is_file():
        raise DatasetError(f"dataset 'st-peters': calibration file {path} is missing")
    try:
        with _h5py().File(path, "r") as f:
            R, T, K, imsize = (np.asarray(f[k][()], np.float64) for k in ("R", "T", "K", "imsize"))
    except (OSError, KeyError) as exc:
        raise DatasetError(f"dataset 'st-peters': cannot read {path} ({exc})") from None
    K = K.reshape(3, 3).copy()
    imsize = imsize.reshape(1, -1)
    K[0, 2] += (imsize[0, 0] - 1.0) * 0.5
    K[1, 2] += (imsize[0, 1] - 1.0) * 0.5
    return R.reshape(3, 3), T.reshape(3), K


def split_root(data_dir: Path) -> Path | None:
    """``<data_dir>/<folder>/test`` (or ``data_dir`` itself being that folder or its ``test``)."""
    data_dir = Path(data_dir)
    for folder in (*(data_dir / f / "test" for f in FOLDERS), data_dir / "test", data_dir):
        if (folder / "images.txt").is_file() and (folder / "calibration.txt").is_file():
            return folder
    return None


def _listing(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def open_st_peters(test: Path, name: str = "st-peters") -> PoseSet:
    test = Path(test)
    images, calibrations = _listing(test / "images.txt"), _listing(test / "calibration.txt")
    if len(images) != len(calibrations):
        raise DatasetError(f"dataset {name!r}: {test}/images.txt and calibration.txt list different numbers of files")
    views, visibility = [], []
    for image, calibration in zip(images, calibrations):
        if not (test / image).is_file():
            raise DatasetError(f"dataset {name!r}: image {test / image} is missing")
        views.append(read_calibration(test / calibration))
        ident = Path(calibration).stem.split("_")[-1]
        vis = test / "visibility" / f"vis_{ident}.txt"
        if not vis.is_file():
            raise DatasetError(f"dataset {name!r}: visibility file {vis} is missing")
        visibility.append(np.loadtxt(vis).reshape(-1))
    vis = np.asarray(visibility)
    if vis.shape != (len(images), len(images)):
        raise DatasetError(f"dataset {name!r}: the visibility files do not form a {len(images)}-square matrix")
    mask = (vis >= VIS_MIN) & (vis <= VIS_MAX)
    pairs = []
    for i in range(len(images) - 1):
        for j in range(i + 1, len(images)):
            if mask[i, j] and len(pairs) < FIRST:
                (R0, T0, K0), (R1, T1, K1) = views[i], views[j]
                R = R1 @ R0.T
                pairs.append(PosePair(f"{i}-{j}", (test / images[i], test / images[j]), K0, K1, R, T1 - R @ T0))
    return PoseSet(name, tuple(pairs), version=f"sps{VIS_MIN}-{VIS_MAX}-{len(pairs)}", expected_pairs=FIRST)


def check_st_peters(folder: Path) -> Path:
    test = split_root(folder)
    if test is None:
        raise DatasetError(f"the archive holds no test/images.txt and test/calibration.txt under {folder}")
    open_st_peters(test)
    return folder


class StPeters(DatasetSource):
    name = "st-peters"
    kind = "pose"
    default_protocol = "relative-pose"
    summary = "st_peters_square test split, GIFT's 100 pairs with 100..200 co-visible points (download)"

    def open(self, data_dir: Path, progress: bool = True) -> PoseSet:
        test = split_root(data_dir)
        if test is None:
            raise DatasetError(f"dataset {self.name!r}: {self.availability(data_dir)}")
        return open_st_peters(test, self.name)

    def availability(self, data_dir: Path) -> str | None:
        if split_root(data_dir) is not None:
            return None
        return (
            f"needs {Path(data_dir) / FOLDER}/test/images.txt, calibration.txt, calibration/, visibility/: run "
            f"`desc-bench data download {self.name}` (from {ARCHIVES[0].urls[0]}), or use the embedded pose-synth"
        )

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        target = Path(data_dir) / FOLDER
        if split_root(target) is not None:
            return target
        try:
            downloads = Path(data_dir) / "downloads"
            return fetch_archive(ARCHIVES, downloads, target, check=check_st_peters, progress=progress)
        except DescBenchError as exc:
            raise DownloadError(
                f"cannot get st_peters_square: {exc}\nget {ARCHIVES[0].urls[0]} by hand and extract it so that "
                f"{target}/test/images.txt exists"
            ) from None
