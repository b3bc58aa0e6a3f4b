"""The embedded image-pair dataset ``hpatches-seq-synth``: HPatches-style sequences, no download.

Eight sequences from scikit-image's bundled pictures (:mod:`.sources`), each 6 images of 480x360
px with exact homographies, in the hpatches-sequences layout (:func:`.writers.write_image_sequence`):

- every picture is enlarged to cover 1.35 x the view, and image 1 is a mildly moved camera view of
  it (:func:`.geometry.view_quad`, strength 0.25);
- ``i_`` sequences: images 2..6 are image 1 under an exposure change of strength 1..5
  (:func:`.photometry.exposure_change`), ``H_1k`` the identity;
- ``v_`` sequences: images 2..6 are other views of growing strength 0.36..0.84, ``H_1k`` the
  homography between the views, normalised to ``H[2, 2] = 1``.

Generated once under ``<data_dir>/hpatches-seq-synth`` (atomically; a ``VERSION`` file marks a
complete set of this generator version). GIFT's ER/ES variants are registered as
``hpatches-seq-synth-er`` / ``-es``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from ...io.atomic import remove_stale_staging, staged_folder
from ...io.progress import bar
from ..base import DatasetSource
from ..pairs import TARGETS, PairSet, open_hpatches_sequences
from ..variants import variant_sources
from .geometry import view_matrix, view_quad, warp
from .photometry import exposure_change
from .seeds import crc_seed
from .sources import Change, Source, cover, load_image, to_rgb

NAME = SYNTH_FOLDER = "hpatches-seq-synth"
SYNTH_VERSION = "1"
SYNTH_SIZE = (480, 360)  # width, height of every image
SOURCE_MARGIN = 1.35  # the source covers this many views in both directions (room for viewpoint moves)
SYNTH_SOURCES = (
    Source("i_chelsea", "chelsea"),
    Source("i_coffee", "coffee"),
    Source("i_immuno", "immunohistochemistry"),
    Source("i_brick", "brick"),
    Source("v_astronaut", "astronaut"),
    Source("v_rocket", "rocket"),
    Source("v_camera", "camera"),
    Source("v_gravel", "gravel"),
)


def generate_sequence(source: Source) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Images 1..6 (RGB uint8 ``(360, 480, 3)``) and ``H_12..H_16`` of one sequence."""
    rng = np.random.default_rng(crc_seed(NAME, SYNTH_VERSION, source.sequence))
    picture = cover(to_rgb(load_image(source.image, NAME)), SYNTH_SIZE, SOURCE_MARGIN)
    g1 = view_matrix(view_quad(rng, picture.shape, SYNTH_SIZE, 0.25), SYNTH_SIZE)
    first = warp(picture, g1, SYNTH_SIZE)
    images, homographies = [first], []
    for k in TARGETS:
        if source.change is Change.ILLUMINATION:
            image, h1k = exposure_change(rng, first, k - 1), np.eye(3)
        else:
            gk = view_matrix(view_quad(rng, picture.shape, SYNTH_SIZE, 0.2 + 0.16 * (k - 1)), SYNTH_SIZE)
            image = warp(picture, gk, SYNTH_SIZE)
            h1k = gk @ np.linalg.inv(g1)
            h1k = h1k / h1k[2, 2]
        images.append(image)
        homographies.append(h1k)
    return images, homographies


def _is_current(folder: Path) -> bool:
    stamp = folder / "VERSION"
    return stamp.is_file() and stamp.read_text().strip() == SYNTH_VERSION


def generate_synthetic(data_dir: Path, progress: bool = False) -> Path:
    """Generate the sequences once under ``<data_dir>/hpatches-seq-synth`` and return that folder."""
    from .writers import write_image_sequence

    target = Path(data_dir) / SYNTH_FOLDER
    remove_stale_staging(target)
    if _is_current(target):
        return target
    with staged_folder(target, keep_concurrent=_is_current) as staging:
        for source in bar(SYNTH_SOURCES, desc=f"{NAME}: sequences", unit="seq", enabled=progress):
            images, homographies = generate_sequence(source)
            write_image_sequence(staging / source.sequence, images, homographies, NAME)
        (staging / "VERSION").write_text(SYNTH_VERSION + "\n")
    return target


class SyntheticSequences(DatasetSource):
    name = NAME
    kind = "pairs"
    default_protocol = "mma"
    summary = "embedded synthetic HPatches-style sequences (4 i_ + 4 v_, 480x360, exact homographies)"
    embedded = True

    def open(self, data_dir: Path, progress: bool = True) -> PairSet:
        root = generate_synthetic(Path(data_dir), progress=progress)
        names = [s.sequence for s in SYNTH_SOURCES]
        pairs = open_hpatches_sequences(root, names, name=self.name, expected_sequences=len(names))
        version = f"synth{SYNTH_VERSION}-{pairs.version}"
        return replace(pairs, version=version, known_names=tuple(names))

    def download(self, data_dir: Path, progress: bool = True) -> Path:
        return generate_synthetic(Path(data_dir), progress=progress)


SyntheticSequencesER, SyntheticSequencesES = variant_sources(SyntheticSequences, __name__)
