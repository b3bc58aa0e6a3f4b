"""``megadepth-1500``: glue-factory's relative-pose test set (1500 MegaDepth pairs; kind ``pose``).

Downloaded from the address glue-factory's ``eval/megadepth1500.py`` uses
(``https://cvg-data.inf.ethz.ch/megadepth/megadepth1500.zip``) into ``<data_dir>/megadepth1500``.
**No checksum is published**, so the download is bounded in size and the extracted content is
checked instead: ``views.txt`` and ``pairs.txt`` readable, every image a pair names present. The
sha256 of what was downloaded is recorded in ``SOURCE.json``.

The layout is glue-factory's ``posed_images`` one: ``images/<name>``; ``views.txt`` lines
``name R(9) t(3) model width height params...`` (world->camera, COLMAP cameras); ``pairs.txt``
lines ``name0 name1``. ``T_0to1 = T_1 T_0^-1`` as glue-factory computes it. COLMAP's principal point
is in its corner convention (the centre of the top-left pixel is (0.5, 0.5)); desc-bench's keypoints
have pixel centres at integers, so 0.5 is subtracted. Pinhole models only (``PINHOLE``,
``SIMPLE_PINHOLE``, or a radial/OpenCV model whose distortion is all zero): anything else is refused
with the line that has it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DatasetError, DescBenchError, DownloadError
from ..io.download import Archive, ExtractLimits, fetch_archive
from .base import DatasetSource
from .synth.pose import PosePair, PoseSet

FOLDER = "megadepth1500"
EXPECTED_PAIRS = 1500
ARCHIVES = (
    Archive(
        urls=("https://cvg-data.inf.ethz.ch/megadepth/megadepth1500.zip",),
        filename="megadepth1500.zip",
        max_bytes=4 << 30,
        checksum_source="none published (glue-factory gives the address only): size bound and structure check",
        limits=ExtractLimits(max_entries=20_000, max_member_bytes=512 << 20, max_total_bytes=12 << 30, max_ratio=20.0),
    ),
)
_FOCAL_PARAMS = {"PINHOLE": 4, "OPENCV": 4, "RADIAL": 4, "SIMPLE_PINHOLE": 3, "SIMPLE_RADIAL": 3}


def _camera(fields: list[str], where: str) -> np.ndarray:
    model = fields[0]
    if model not in _FOCAL_PARAMS:
        raise DatasetError(f"{where}: camera model {model} is not supported (pinhole models only)")
    params = np.asarray(fields[3:], np.float64)
    n = _FOCAL_PARAMS[model]
    if len(params) < n or np.any(params[n:] != 0):
        raise DatasetError(f"{where}: camera {model} {' '.join(fields[3:])} has distortion or too few parameters")
    fx, fy, cx, cy = (params[0], params[1], params[2], params[3]) if n == 4 else (params[0], params[0], *params[1:3])
    return np.array([[fx, 0, cx - 0.5], [0, fy, cy - 0.5], [0, 0, 1]])


def read_views(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """name -> (R, t, K) from ``views.txt``."""
    views = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path} line {number}"
        try:
            R = np.asarray(fields[1:10], np.float64).reshape(3, 3)
            t = np.asarray(fields[10:13], np.float64)
        except ValueError:
            raise DatasetError(f"{where}: expected 'name R(9) t(3) model width height params...'") from None
        if len(fields) < 16:
            raise DatasetError(f"{where}: expected 'name R(9) t(3) model width height params...'")
        views[fields[0]] = (R, t, _camera(fields[13:], where))
    return views


def open_megadepth(root: Path, name: str = "megadepth-1500") -> PoseSet:
    """The pairs of ``root`` (views.txt, pairs.txt, images/); a missing file is a DatasetError naming it."""
    root = Path(root)
    for required in ("views.txt", "pairs.txt"):
        if not (root / required).is_file():
            raise DatasetError(f"dataset {name!r}: {root / required} is missing")
    views = read_views(root / "views.txt")
    pairs = []
    for number, line in enumerate((root / "pairs.txt").read_text().splitlines(), start=1):
        names = line.split()
        if not names:
            continue
        if len(names) != 2 or any(n not in views for n in names):
            raise DatasetError(f"dataset {name!r}: {root / 'pairs.txt'} line {number} names no two views of views.txt")
        images = tuple(root / "images" / n for n in names)
        for image in images:
            if not image.is_file():
                raise DatasetError(f"dataset {name!r}: image {image} is missing")
        (R0, t0, K0), (R1, t1, K1) = views[names[0]], views[names[1]]
        R = R1 @ R0.T
        pairs.append(PosePair(f"{names[0]}-{names[1]}", images, K0, K1, R, t1 - R @ t0))
    return PoseSet(name, tuple(pairs), version=f"pairs{len(pairs)}", expected_pairs=EXPECTED_PAIRS)


def check_megadepth(folder: Path) -> Path:
    open_megadepth(folder)
    return folder


class MegaDepth1500(DatasetSource):
    name = "megadepth-1500"
    kind = "pose"
    default_protocol = "relative-pose"
    summary = "MegaDepth-1500 (glue-factory's relative-pose test set, 1500 pairs; download)"

    def open(self, data_dir: Path, progress: bool = True) -> PoseSet:
        problem = self.availability(data_dir)
        if problem:
            raise DatasetError(f"dataset {self.name!r}: {problem}")
        return open_megadepth(Path(data_dir) / FOLDER, self.name)

    def availability(self, data_dir: Path) -> str | None:
        if (Path(data_dir) / FOLDER / "pairs.txt").is_file():
            return None
        return (
            f"needs {Path(data_dir) / FOLDER}/views.txt, pairs.txt and images/: run "
            f"`desc-bench data download {self.name}` (from {ARCHIVES[0].urls[0]}), or use the embedded pose-synth"
        )

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        target = Path(data_dir) / FOLDER
        if (target / "pairs.txt").is_file():
            return target
        try:
            downloads = Path(data_dir) / "downloads"
            return fetch_archive(ARCHIVES, downloads, target, check=check_megadepth, progress=progress)
        except DescBenchError as exc:
            raise DownloadError(
                f"cannot get MegaDepth-1500: {exc}\nget {ARCHIVES[0].urls[0]} by hand and unzip it so that "
                f"{target}/views.txt, pairs.txt and images/ exist"
            ) from None
