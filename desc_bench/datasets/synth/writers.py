"""On-disk layouts of generated datasets (what the dataset readers read back).

- :func:`write_patch_files`: the hpatches-release layout, one gray PNG per patch type, 65 px wide
  and N x 65 px tall (read by :class:`~desc_bench.datasets.base.PatchSet`).
- :func:`write_image_sequence`: the hpatches-sequences layout, ``1..N.png`` and ``H_1_2..H_1_N``
  (read by :func:`~desc_bench.datasets.pairs.load_hpatches_sequence`); homographies as text with
  17 significant digits, which round-trips float64 exactly.
- :func:`write_json`: JSON text with the formatting generated datasets pin.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from ...errors import DatasetError
from ...imaging import PATCH_SIZE


def write_patch_files(folder: Path, patches: dict[str, np.ndarray], who: str = "synthetic data") -> None:
    """Write ``{type: (N, 65, 65) uint8}`` as ``folder/<type>.png`` columns of stacked patches."""
    folder.mkdir(parents=True, exist_ok=True)
    for patch_type, stack in patches.items():
        path = folder / f"{patch_type}.png"
        if not cv2.imwrite(str(path), stack.reshape(-1, PATCH_SIZE)):
            raise DatasetError(f"{who}: cannot write {path}")


def write_image_sequence(
    folder: Path, images: list[np.ndarray], homographies: list[np.ndarray], who: str = "synthetic data"
) -> None:
    """Write RGB uint8 ``images`` as ``folder/{1..N}.png`` and ``homographies`` (H_12..H_1N) as
    ``folder/H_1_{2..N}``; ``folder`` must not exist yet."""
    folder.mkdir(parents=True)
    for index, image in enumerate(images, start=1):
        path = folder / f"{index}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
            raise DatasetError(f"{who}: cannot write {path}")
    for k, matrix in enumerate(homographies, start=2):
        np.savetxt(folder / f"H_1_{k}", matrix, fmt="%.17g")


def write_json(path: Path, data, *, sort_keys: bool = False) -> None:
    """``json.dumps(data, indent=1)`` plus a newline (the byte layout the generators pin)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, sort_keys=sort_keys) + "\n")
