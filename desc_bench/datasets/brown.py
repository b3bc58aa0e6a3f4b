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
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ..errors import DatasetError, DownloadError
from ..io.atomic import write_json
from ..io.download import Archive, ExtractLimits, fetch_archive, read_source_record
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


_LIMITS = ExtractLimits(max_entries=5_000, max_member_bytes=64 << 20, max_total_bytes=6 << 30, max_ratio=20.0)


def _archive(mirror: Mirror) -> Archive:
    return Archive(
        urls=(mirror.url,),
        filename=mirror.filename,
        md5=mirror.md5,
        max_bytes=3 << 30,
        checksum_source="md5 published with the dataset",
        limits=_LIMITS,
    )


def download_subset(data_dir: Path, subset: str, progress: bool = True) -> Path:
    """Fetch, verify (published md5), safely extract (bounded) and check one subset into
    ``<data>/brown/<subset>`` (:func:`desc_bench.io.download.fetch_archive`); writes MANIFEST.json."""
    target = Path(data_dir) / "brown" / subset
    if is_subset_folder(target):
        return target
    counts = {}

    def check(extracted: Path) -> Path:
        found = _find_layout(extracted)
        counts["patches"] = len(read_column(found / "info.txt", "info"))
        files = mosaic_files(found)
        if len(files) < math.ceil(counts["patches"] / PER_FILE):
            raise DatasetError(f"the {subset} archive holds {len(files)} mosaics for {counts['patches']} patches")
        return found

    archives = [_archive(m) for m in MIRRORS[subset]]
    try:
        fetch_archive(archives, target.parent / ".downloads", target, check=check, progress=progress)
    except DownloadError as exc:
        raise DownloadError(
            f"cannot download Brown {subset}: {exc}\nDownload {subset}.zip by hand and extract it into {target} "
            f"(patchesNNNN.bmp, info.txt, interest.txt, {TEST_PAIRS}), or use the embedded `brown-synth` dataset"
        ) from None
    source = read_source_record(target) or {}
    write_json(
        target / "MANIFEST.json",
        {
            "dataset": f"brown-{subset}",
            "url": next((m.url for m in MIRRORS[subset] if m.filename == source.get("file")), None),
            "md5": source.get("md5"),
            "sha256": source.get("sha256"),
            "size": source.get("size"),
            "verified": "md5 as published",
            "patches": counts.get("patches"),
            "downloaded": source.get("downloaded"),
        },
    )
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

    def open(self, data_dir: Path, progress: bool = True) -> BrownSet:
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
