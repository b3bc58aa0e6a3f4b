"""The embedded datasets keep their bytes: every generated file of ``hpatches-synth`` (the full
default set and the tiny test set) and of ``hpatches-seq-synth`` hashes to the digest pinned in
``synth_digests.json``, and the dataset versions (cache keys) are unchanged.

The digests were computed from the generators as they were before the synthetic-data package
(``desc_bench/datasets/synthetic.py`` and the synthetic part of ``sequences.py``, commit c875731),
with the library versions recorded in the file. SIFT detections and the bundled pictures depend on
the OpenCV and scikit-image versions, so with other versions the test skips and says which.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import pytest
import skimage

from desc_bench.datasets import registry

PINNED = json.loads((Path(__file__).with_name("synth_digests.json")).read_text())


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


@pytest.fixture(scope="module", autouse=True)
def _same_libraries():
    env = PINNED["environment"]
    found = {"opencv": cv2.__version__, "scikit-image": skimage.__version__}
    if any(_minor(found[name]) != _minor(env[name]) for name in found):
        pytest.skip(f"digests pinned with {env}; found {found}: regenerate synth_digests.json for these libraries")


def _digests(root: Path, prefix: str = "") -> dict[str, str]:
    return {
        prefix + p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _compare(found: dict[str, str], pinned: dict[str, str]) -> list[str]:
    problems = [f"missing {name}" for name in sorted(set(pinned) - set(found))]
    problems += [f"unexpected {name}" for name in sorted(set(found) - set(pinned))]
    problems += [f"changed {name}" for name in sorted(set(found) & set(pinned)) if found[name] != pinned[name]]
    return problems


def test_hpatches_synth_keeps_every_byte_and_its_version(hpatches_synth_data):
    pinned = PINNED["hpatches-synth"]
    root = hpatches_synth_data / "hpatches-synth"
    assert _compare(_digests(root), pinned["files"]) == []
    assert registry.dataset("hpatches-synth", data_dir=hpatches_synth_data).version == pinned["version"]


def test_tiny_hpatches_synth_keeps_every_byte(tiny_hpatches_factory):
    pinned = PINNED["hpatches-synth-tiny"]
    folder = tiny_hpatches_factory() / "hpatches"  # release and tasks side by side (see conftest)
    found = _digests(folder / "hpatches-release") | _digests(folder / "tasks", prefix="tasks/")
    assert _compare(found, pinned["files"]) == []


def test_hpatches_seq_synth_keeps_every_byte_and_its_version(seq_synth_data):
    pinned = PINNED["hpatches-seq-synth"]
    data = seq_synth_data
    pairs = registry.dataset("hpatches-seq-synth", data_dir=data)
    assert _compare(_digests(data / "hpatches-seq-synth"), pinned["files"]) == []
    assert pairs.version == pinned["version"]
