"""The registered real image-pair datasets: HPatches sequences and Oxford affine (kind "pairs").

``<data_dir>`` is the data root (``--data-dir``, ``$DESC_BENCH_DATA``); it may also be the dataset
folder itself (a copy of the sequences under another name):

- ``hpatches-seq``: the 108-sequence MMA subset of D2-Net (Dusmanu et al., CVPR 2019) of
  ``<data_dir>/hpatches-sequences-release/<seq>/{1..6}.ppm, H_1_2..H_1_6`` (Balntas et al.,
  CVPR 2017); the 8 sequences larger than 1600x1200 are left out. ``hpatches-seq-full``: all 116.
- ``oxford-affine``: ``<data_dir>/oxford-affine/<seq>/img{1..6}.{ppm,pgm,png}, H1to{k}p`` for the 8
  sequences of Mikolajczyk et al. (IJCV 2005).
- GIFT's ER/ES variants ``hpatches-seq-er`` etc. (:mod:`.variants`). The embedded
  ``hpatches-seq-synth`` is in :mod:`.synth.seq_synth`.

A copy holding only some sequences opens, and the pair set says so (``complete`` False,
``sequence_count`` against ``expected_sequences``): the runner records and warns. Downloads,
checksums and structure checks are in :mod:`.sequence_downloads`; the layouts and types in
:mod:`.pairs`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DatasetError
from .base import DatasetSource
from .pairs import (  # noqa: F401  (PairSet, Sequence: importable from here for existing callers)
    PairSet,
    Sequence,
    hpatches_sequence_names,
    is_oxford_sequence,
    load_hpatches_sequence,
    load_oxford_sequence,
    open_hpatches_sequences,
    open_oxford,
)
from .sequence_downloads import (  # noqa: F401  (OXFORD_FOLDER: importable from here)
    HPATCHES_COUNTS,
    HPATCHES_FOLDER,
    MMA_EXCLUDED,
    OXFORD_FOLDER,
    OXFORD_SEQUENCES,
    download_hpatches_sequences,
    download_oxford,
)
from .synth.seq_synth import SYNTH_FOLDER, SYNTH_SOURCES, SyntheticSequences, generate_synthetic  # noqa: F401
from .variants import transformed, variant_sources  # noqa: F401  (transformed: importable from here)

HPATCHES_FULL = sum(HPATCHES_COUNTS.values())  # 116


def hpatches_root(data_dir: Path) -> Path | None:
    """``<data_dir>/hpatches-sequences-release``, or ``data_dir`` itself when it holds the
    sequence folders; None when neither does."""
    data_dir = Path(data_dir)
    for folder in (data_dir / HPATCHES_FOLDER, data_dir):
        if hpatches_sequence_names(folder):
            return folder
    return None


def oxford_root(data_dir: Path) -> Path | None:
    """``<data_dir>/oxford-affine``, or ``data_dir`` itself when it holds Oxford sequence folders."""
    data_dir = Path(data_dir)
    for folder in (data_dir / OXFORD_FOLDER, data_dir):
        if any(is_oxford_sequence(folder / name) for name in OXFORD_SEQUENCES):
            return folder
    return None


class HPatchesSequences(DatasetSource):
    name = "hpatches-seq"
    kind = "pairs"
    default_protocol = "mma"
    summary = "HPatches sequences, the 108-sequence MMA subset of D2-Net (540 pairs)"
    exclude = MMA_EXCLUDED

    def open(self, data_dir: Path, progress: bool = True) -> PairSet:
        root = hpatches_root(data_dir)
        if root is None:
            raise DatasetError(f"dataset {self.name!r}: {self.availability(data_dir)}")
        expected = HPATCHES_FULL - len(self.exclude)
        return open_hpatches_sequences(root, name=self.name, exclude=self.exclude, expected_sequences=expected)

    def availability(self, data_dir: Path) -> str | None:
        if hpatches_root(data_dir) is not None:
            return None
        folder = Path(data_dir) / HPATCHES_FOLDER
        return (
            f"needs {folder}/<seq>/1.ppm..6.ppm and H_1_2..H_1_6: run `desc-bench data download {self.name}`, "
            f"or pass --data-dir to the folder that holds {HPATCHES_FOLDER}/ or to your copy of the sequences"
        )

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        return download_hpatches_sequences(Path(data_dir), progress=progress)


class HPatchesSequencesFull(HPatchesSequences):
    name = "hpatches-seq-full"
    summary = "HPatches sequences, all 116 (580 pairs)"
    exclude = frozenset()


class OxfordAffine(DatasetSource):
    name = "oxford-affine"
    kind = "pairs"
    default_protocol = "oxford-ms"
    summary = "Oxford affine (Mikolajczyk et al.): graf wall boat bark bikes trees leuven ubc"

    def open(self, data_dir: Path, progress: bool = True) -> PairSet:
        root = oxford_root(data_dir)
        if root is None:
            raise DatasetError(f"dataset {self.name!r}: {self.availability(data_dir)}")
        present = [name for name in OXFORD_SEQUENCES if (root / name).is_dir()]
        return open_oxford(root, present, name=self.name, known_names=OXFORD_SEQUENCES)

    def availability(self, data_dir: Path) -> str | None:
        if oxford_root(data_dir) is not None:
            return None
        root = Path(data_dir) / OXFORD_FOLDER
        return (
            f"needs {root}/{{{','.join(OXFORD_SEQUENCES)}}}/img1..6 and H1to2p..H1to6p: run "
            f"`desc-bench data download {self.name}`, or pass --data-dir to the folder that holds "
            f"{OXFORD_FOLDER}/ or to that folder itself"
        )

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        return download_oxford(Path(data_dir), progress=progress)


HPatchesSequencesER, HPatchesSequencesES = variant_sources(HPatchesSequences, __name__)
HPatchesSequencesFullER, HPatchesSequencesFullES = variant_sources(HPatchesSequencesFull, __name__)
