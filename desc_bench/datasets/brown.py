"""Brown / UBC PhotoTour patches (Winder & Brown, CVPR 2007; Brown, Hua & Winder, PAMI 2011).

Three subsets, ``liberty`` (450,092 patches), ``notredame`` (468,159) and ``yosemite`` (633,587),
registered as the datasets ``brown-liberty``, ``brown-notredame``, ``brown-yosemite`` (one subset
each) and ``brown`` (all three: the cross-subset table of the HardNet paper). Each opens as a
:class:`~desc_bench.datasets.brown_layout.BrownSet` (dataset kind ``"brown"``) of
:class:`~desc_bench.datasets.brown_layout.BrownSubset` objects, read from the original layout
(see :mod:`desc_bench.datasets.brown_layout`).

Where a subset is looked for: ``<data root>/brown/<subset>/`` (what ``desc-bench data download
brown-<subset>`` makes), else ``<data root>/<subset>/`` (torchvision's ``PhotoTour`` root).

Downloads (the archives torchvision's PhotoTour, HardNet and TFeat use, with their published md5s):
the authors' copies at icvl.ee.ic.ac.uk/vbalnt/ first, then the mirror at cmp.felk.cvut.cz (other
archives with other md5s, those brown_phototour_revisited uses). Each archive is verified before it
is extracted (safely, :mod:`desc_bench.io.download`) and moved into place only when its layout
checks; ``<data root>/brown/<subset>/MANIFEST.json`` records the URL, md5 and sha256.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..errors import DatasetError, DownloadError
from ..io.atomic import write_json
from ..io.download import extract_folder, fetch, verify_file
from .base import DatasetSource
from .brown_layout import (
    KIND,
    PER_FILE,
    SUBSETS,
    TEST_PAIRS,
    BrownSet,
    BrownSubset,
    is_subset_folder,
    mosaic_files,
    read_column,
)

PATCH_COUNTS = {"liberty": 450_092, "notredame": 468_159, "yosemite": 633_587}


@dataclass(frozen=True)
class Mirror:
    """One address of a subset's archive and the md5 published for it."""

    url: str
    filename: str  # local name (distinct per mirror, so a .part never resumes from another mirror)
    md5: str


_ICVL = "http://icvl.ee.ic.ac.uk/vbalnt/"
_CMP = "https://cmp.felk.cvut.cz/~mishkdmy/datasets/BrownPhotoTour/"
MIRRORS: dict[str, tuple[Mirror, ...]] = {
    "liberty": (
        Mirror(_ICVL + "liberty.zip", "liberty.zip", "fdd9152f138ea5ef2091746689176414"),
        Mirror(_CMP + "liberty.zip", "liberty.cmp.zip", "abb7b7e7c8f58b953f9d10dce2cb5e9c"),
    ),
    "notredame": (
        Mirror(_ICVL + "notredame.zip", "notredame.zip", "509eda8535847b8c0a90bbb210c83484"),
        Mirror(_CMP + "notredame/notredame.zip", "notredame.cmp.zip", "3fd38e77cd32a43051525532c83460ef"),
    ),
    "yosemite": (
        Mirror(_ICVL + "yosemite.zip", "yosemite.zip", "533b2e8eb7ede31be40abc317b2fd4f0"),
        Mirror(_CMP + "yosemite.zip", "yosemite.cmp.zip", "97f1ecc08928cdf2dba220939778779e"),
    ),
}


def subset_folder(data_dir: Path, subset: str) -> Path:
    """Where a subset is: ``<data>/brown/<subset>``, else torchvision's ``<data>/<subset>``."""
    default = Path(data_dir) / "brown" / subset
    torchvision_layout = Path(data_dir) / subset
    if not is_subset_folder(default) and is_subset_folder(torchvision_layout):
        return torchvision_layout
    return default


def _find_layout(extracted: Path) -> Path:
    """The folder of an extracted archive that holds the Brown files."""
    candidates = sorted({p.parent for p in extracted.rglob("info.txt") if is_subset_folder(p.parent)})
    if len(candidates) != 1:
        raise DatasetError(
            f"the archive does not have the Brown layout (patchesNNNN.bmp, info.txt, {TEST_PAIRS} in one folder): "
            f"found {len(candidates)} such folders"
        )
    return candidates[0]


def download_subset(data_dir: Path, subset: str, progress: bool = True, keep_archive: bool = False) -> Path:
    """Fetch, verify (published md5) and safely extract one subset into ``<data>/brown/<subset>``."""
    target = Path(data_dir) / "brown" / subset
    if is_subset_folder(target):
        return target
    downloads = target.parent / ".downloads"
    failures, archive, used = [], None, None
    for mirror in MIRRORS[subset]:
        try:
            archive = fetch(mirror.url, downloads / mirror.filename, md5=mirror.md5, progress=progress)
            used = mirror
            break
        except DownloadError as exc:
            failures.append(str(exc))
    if archive is None:
        raise DownloadError(
            f"cannot download Brown {subset} from any mirror:\n  " + "\n  ".join(failures) + f"\nDownload "
            f"{subset}.zip by hand and extract it into {target} (patchesNNNN.bmp, info.txt, interest.txt, "
            f"{TEST_PAIRS}), or use the embedded `brown-synth` dataset"
        )
    hashes = verify_file(archive, md5=used.md5, source=used.url)
    staging = target.parent / f".{subset}.extracted"
    if staging.exists():
        shutil.rmtree(staging)
    extract_folder(archive, staging, progress=progress)
    try:
        found = _find_layout(staging)
        count = len(read_column(found / "info.txt", "info"))
        files = mosaic_files(found)
        if len(files) < math.ceil(count / PER_FILE):
            raise DatasetError(f"the {subset} archive holds {len(files)} mosaics for {count} patches")
        if target.exists():
            shutil.rmtree(target)
        os.replace(found, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_json(
        target / "MANIFEST.json",
        {
            "dataset": f"brown-{subset}",
            "url": used.url,
            "md5": hashes["md5"],
            "sha256": hashes["sha256"],
            "size": archive.stat().st_size,
            "verified": "md5 as published",
            "patches": count,
            "downloaded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    if not keep_archive:
        archive.unlink()
    return target


class BrownSource(DatasetSource):
    """Real Brown subsets (no ``name`` here: the subclasses below register)."""

    kind = KIND
    default_protocol = "fpr95,brown-snn-map"
    subsets: ClassVar[tuple[str, ...]] = SUBSETS

    def availability(self, data_dir: Path) -> str | None:
        missing = [s for s in self.subsets if not is_subset_folder(subset_folder(data_dir, s))]
        if not missing:
            return None
        where = ", ".join(str(Path(data_dir) / "brown" / s) for s in missing)
        return (
            f"no Brown {', '.join(missing)} patches (patchesNNNN.bmp, info.txt, {TEST_PAIRS}) in {where}; run "
            f"`desc-bench data download {self.name}`, or pass --data-dir / set DESC_BENCH_DATA to the folder "
            "that holds brown/<subset>, or use the embedded `brown-synth` dataset, which needs no download"
        )

    def open(self, data_dir: Path) -> BrownSet:
        problem = self.availability(data_dir)
        if problem is not None:
            raise DatasetError(f"dataset {self.name!r} is not available in {data_dir}: {problem}")
        return BrownSet(self.name, tuple(BrownSubset(s, subset_folder(data_dir, s)) for s in self.subsets))

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        """Download every missing subset (verified, extracted safely); returns ``<data>/brown``."""
        for subset in self.subsets:
            if not is_subset_folder(subset_folder(data_dir, subset)):
                download_subset(data_dir, subset, progress=progress)
        return Path(data_dir) / "brown"


class BrownAll(BrownSource):
    name = "brown"
    summary = "Brown/UBC PhotoTour liberty, notredame and yosemite (64x64 patches, 100k test pairs each)"


class BrownLiberty(BrownSource):
    name = "brown-liberty"
    subsets = ("liberty",)
    summary = f"Brown/UBC PhotoTour liberty: {PATCH_COUNTS['liberty']:,} patches of 64x64, 100k test pairs"


class BrownNotredame(BrownSource):
    name = "brown-notredame"
    subsets = ("notredame",)
    summary = f"Brown/UBC PhotoTour notredame: {PATCH_COUNTS['notredame']:,} patches of 64x64, 100k test pairs"


class BrownYosemite(BrownSource):
    name = "brown-yosemite"
    subsets = ("yosemite",)
    summary = f"Brown/UBC PhotoTour yosemite: {PATCH_COUNTS['yosemite']:,} patches of 64x64, 100k test pairs"
