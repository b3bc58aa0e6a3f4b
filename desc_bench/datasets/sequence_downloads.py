"""Downloads of the real image-pair datasets: pinned archives, bounds, and structure checks.

What each archive must be (:class:`~desc_bench.io.download.Archive`):

- HPatches sequences (``hpatches-sequences-release``, 116 sequences: 57 ``i_``, 59 ``v_``, about
  1.3 GB). Two addresses: the authors' Hugging Face mirror (https, a zip) and the original host
  (``icvl.ee.ic.ac.uk``, plain http only, a tar.gz). **No checksum of either file is published**
  (searched: the hpatches-dataset and hpatches-benchmark READMEs, D2-Net's download script and
  public loaders give the address only), so the download is bounded in size and the extracted
  content is checked instead: 116 complete sequence folders with 57 ``i_`` and 59 ``v_`` and the
  8 large ones D2-Net leaves out, every homography readable and non-singular, every image header
  readable. The sha256 of what was downloaded is recorded in ``SOURCE.json``.
- Oxford affine sequences (Mikolajczyk et al., IJCV 2005), one ``<seq>.tar.gz`` each from
  ``www.robots.ox.ac.uk`` over https. VGG publishes no checksums; sha256 digests of the archives
  as served were found published by independent public projects for ``graf``, ``boat`` (each
  by two projects) and ``leuven`` (one project) and are pinned. The other five (``wall``,
  ``bark``, ``bikes``, ``trees``, ``ubc``) have none: size bound plus structure (6 readable
  images and 5 readable, non-singular homographies).

Extraction is bounded by entries, member size, total size and compression ratio
(:class:`~desc_bench.io.extract.ExtractLimits`) with headroom over the real archives.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError, DescBenchError, DownloadError
from ..io.download import Archive, ExtractLimits, fetch_archive
from .pairs import (
    HPATCHES_HOMOGRAPHIES,
    HPATCHES_IMAGES,
    OXFORD_HOMOGRAPHIES,
    OXFORD_IMAGES,
    hpatches_sequence_names,
    image_size,
    load_hpatches_sequence,
    load_oxford_sequence,
)

HPATCHES_FOLDER = "hpatches-sequences-release"
HPATCHES_COUNTS = {"i": 57, "v": 59}  # 116 sequences
# The 8 sequences larger than 1600x1200 that D2-Net leaves out of the MMA benchmark.
MMA_EXCLUDED = frozenset(
    {
        "i_contruction",
        "i_crownnight",
        "i_dc",
        "i_pencils",
        "i_whitebuilding",
        "v_artisans",
        "v_astronautis",
        "v_talent",
    }
)
_HPATCHES_LIMITS = ExtractLimits(max_entries=3_000, max_member_bytes=256 << 20, max_total_bytes=8 << 30, max_ratio=20.0)
_NO_CHECKSUM = "none published (the authors give the address only): size bound and structure check"
HPATCHES_ARCHIVES = (
    Archive(
        urls=("https://huggingface.co/datasets/vbalnt/hpatches/resolve/main/hpatches-sequences-release.zip",),
        filename="hpatches-sequences-release.zip",
        max_bytes=2 << 30,
        checksum_source=_NO_CHECKSUM,
        limits=_HPATCHES_LIMITS,
    ),
    Archive(
        urls=("http://icvl.ee.ic.ac.uk/vbalnt/hpatches/hpatches-sequences-release.tar.gz",),  # no https there
        filename="hpatches-sequences-release.tar.gz",
        max_bytes=2 << 30,
        checksum_source=_NO_CHECKSUM,
        limits=_HPATCHES_LIMITS,
    ),
)

OXFORD_FOLDER = "oxford-affine"
OXFORD_SEQUENCES = ("graf", "wall", "boat", "bark", "bikes", "trees", "leuven", "ubc")
OXFORD_PAGE = "https://www.robots.ox.ac.uk/~vgg/research/affine/"
OXFORD_URL = "https://www.robots.ox.ac.uk/~vgg/research/affine/det_eval_files/{seq}.tar.gz"
# sha256 of the archives as served, published by public projects that download them (VGG publishes none).
OXFORD_SHA256 = {
    "graf": "999871b945ee968a00a0d5f9af957d1382fb9dae1511cdee9553366817b53b5b",
    "boat": "6e5721f37fbf9c3e974fd05935a42c1670f3e71aa3e5b218807ea046a068c603",
    "leuven": "9b1ade6e64e5b27eee43463ff8f9ad2bd2f9c6911666e93de2634f3a5c0fe5dc",
}
_OXFORD_LIMITS = ExtractLimits(max_entries=64, max_member_bytes=32 << 20, max_total_bytes=256 << 20, max_ratio=20.0)


def oxford_archive(seq: str) -> Archive:
    sha = OXFORD_SHA256.get(seq)
    return Archive(
        urls=(OXFORD_URL.format(seq=seq),),
        filename=f"oxford-{seq}.tar.gz",
        sha256=sha,
        max_bytes=128 << 20,
        checksum_source=(
            "sha256 of the archive as served, published by public projects (VGG publishes none)"
            if sha
            else "none published: size bound and structure check"
        ),
        limits=_OXFORD_LIMITS,
    )


# ------------------------------------------------------------------------------------ structure


def _check_images(paths) -> None:
    for path in paths:
        width, height = image_size(path)
        if width < 1 or height < 1:
            raise DatasetError(f"image {path} has an empty size {width}x{height}")


def check_hpatches_release(folder: Path) -> Path:
    """The folder under ``folder`` that holds the full HPatches sequences release; DatasetError
    saying what differs when it is not that."""
    candidates = [folder] + sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__")))
    root = next((c for c in candidates if hpatches_sequence_names(c)), None)
    if root is None:
        raise DatasetError(
            "the archive does not have the hpatches-sequences-release layout "
            f"(<seq>/{HPATCHES_IMAGES[0]}.ppm..{HPATCHES_IMAGES[-1]}.ppm, {HPATCHES_HOMOGRAPHIES[0]}..)"
        )
    names = hpatches_sequence_names(root)
    counts = {kind: sum(n.startswith(f"{kind}_") for n in names) for kind in HPATCHES_COUNTS}
    absent = sorted(MMA_EXCLUDED - set(names))
    if counts != HPATCHES_COUNTS or len(names) != sum(HPATCHES_COUNTS.values()) or absent:
        raise DatasetError(
            f"the archive holds {len(names)} sequences ({counts['i']} i_, {counts['v']} v_), expected 116 "
            f"(57 i_, 59 v_)" + (f"; missing {', '.join(absent)}" if absent else "")
        )
    for name in names:
        _check_images(load_hpatches_sequence(root / name).images)  # complete, homographies readable
    return root


def check_oxford_sequence(folder: Path) -> Path:
    """``folder`` (an extracted Oxford archive) when it holds img1..6 and H1to2p..H1to6p."""
    _check_images(load_oxford_sequence(folder).images)
    return folder


# ------------------------------------------------------------------------------------- download


def _manual(what: str, layout: str, folder: Path) -> str:
    return (
        f"Download {what} by hand and lay it out as {layout}; or pass --data-dir (or set "
        f"DESC_BENCH_DATA) to the folder that holds {folder.name}/, or to that folder itself"
    )


def download_hpatches_sequences(data_dir: Path, progress: bool = True) -> Path:
    """Fetch, check and extract the HPatches sequences into ``<data_dir>/hpatches-sequences-release``."""
    target = Path(data_dir) / HPATCHES_FOLDER
    if hpatches_sequence_names(target):
        return target
    try:
        return fetch_archive(
            HPATCHES_ARCHIVES, Path(data_dir) / "downloads", target, check=check_hpatches_release, progress=progress
        )
    except DescBenchError as exc:
        raise DownloadError(
            f"cannot get the HPatches sequences: {exc}\n"
            + _manual(
                "hpatches-sequences-release (1.3 GB, from https://github.com/hpatches/hpatches-dataset)",
                f"{target}/<seq>/1.ppm..6.ppm, H_1_2..H_1_6",
                target,
            )
            + "; or use the embedded `hpatches-seq-synth` dataset, which needs no download"
        ) from None


def download_oxford(data_dir: Path, progress: bool = True, sequences=None) -> Path:
    """Fetch, check and extract each Oxford sequence (default: all 8) into ``<data_dir>/oxford-affine/<seq>``."""
    root = Path(data_dir) / OXFORD_FOLDER
    for seq in OXFORD_SEQUENCES if sequences is None else sequences:
        target = root / seq
        if target.is_dir():
            continue
        try:
            downloads = Path(data_dir) / "downloads"
            fetch_archive(oxford_archive(seq), downloads, target, check=check_oxford_sequence, progress=progress)
        except DescBenchError as exc:
            images = f"{OXFORD_IMAGES[0]}.ppm..{OXFORD_IMAGES[-1]}.ppm"
            raise DownloadError(
                f"cannot get the Oxford sequence {seq!r}: {exc}\n"
                + _manual(
                    f"{seq}.tar.gz from {OXFORD_PAGE}",
                    f"{root}/<seq>/{images} (or .pgm/.png) and {OXFORD_HOMOGRAPHIES[0]}..{OXFORD_HOMOGRAPHIES[-1]}"
                    f" for the sequences {', '.join(OXFORD_SEQUENCES)}",
                    root,
                )
            ) from None
    return root
