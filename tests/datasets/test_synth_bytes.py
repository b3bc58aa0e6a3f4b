"""The embedded datasets keep their bytes: every generated file of ``hpatches-synth`` (the full
default set and the tiny test set) and of ``hpatches-seq-synth`` hashes to the digest pinned in
``synth_digests.json``, and the dataset versions (cache keys) are unchanged.

The digests were computed from the generators as they were before the synthetic-data package
(``desc_bench/datasets/synthetic.py`` and the synthetic part of ``sequences.py``, commit c875731),
with the library versions recorded in the file. SIFT detections and the bundled pictures depend on
the OpenCV and scikit-image versions, so with other versions the test skips and says which.

With the same library versions, a few pixels of the colour-sourced sequences still differ between
CPU families (OpenCV's and numpy's vector kernels round a few values differently: 249 of the 288
hpatches-synth files differ between the CI machine and an AMD EPYC with AVX-512, 250 between it and
an Intel Xeon; an AMD EPYC of CPU family 26 differs from the first EPYC in 4 homography files).
Such a machine's digests are kept as a named alternative: only the files that differ, applied over
the main set. A machine that matches no set fails; to add one, run this file with
``SYNTH_DIGESTS_OUT=found.json`` and add the differing entries under ``alternatives``.
"""

from __future__ import annotations

import hashlib
import json
import os
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


def _pinned_sets(key: str) -> dict[str, dict]:
    """The main set of ``key`` (files and version) and each named alternative: its differing files
    over the main set, and its version where that is computed from the files."""
    main = PINNED[key]
    sets = {"main": main}
    for name, alternative in PINNED.get("alternatives", {}).items():
        if key in alternative:
            sets[name] = main | alternative[key] | {"files": main["files"] | alternative[key]["files"]}
    return sets


def _record(key: str, found: dict[str, str]) -> None:
    if out := os.environ.get("SYNTH_DIGESTS_OUT"):
        path = Path(out)
        seen = json.loads(path.read_text()) if path.exists() else {}
        seen[key] = {
            "files": {name: digest for name, digest in found.items() if PINNED[key]["files"].get(name) != digest}
        }
        path.write_text(json.dumps(seen, indent=1, sort_keys=True))


def _check(key: str, found: dict[str, str]) -> dict:
    """The pinned set of ``key`` that ``found`` equals; fails with the closest set's differences."""
    _record(key, found)
    sets = _pinned_sets(key)
    results = {name: _compare(found, pinned["files"]) for name, pinned in sets.items()}
    name, problems = min(results.items(), key=lambda item: len(item[1]))
    assert not problems, f"{key}: {len(problems)} files differ from the closest pinned set ({name}): {problems[:5]}"
    return sets[name]


def _compare(found: dict[str, str], pinned: dict[str, str]) -> list[str]:
    problems = [f"missing {name}" for name in sorted(set(pinned) - set(found))]
    problems += [f"unexpected {name}" for name in sorted(set(found) - set(pinned))]
    problems += [f"changed {name}" for name in sorted(set(found) & set(pinned)) if found[name] != pinned[name]]
    return problems


def test_hpatches_synth_keeps_every_byte_and_its_version(hpatches_synth_data):
    root = hpatches_synth_data / "hpatches-synth"
    pinned = _check("hpatches-synth", _digests(root))
    assert registry.dataset("hpatches-synth", data_dir=hpatches_synth_data).version == pinned["version"]


def test_tiny_hpatches_synth_keeps_every_byte(tiny_hpatches_factory):
    folder = tiny_hpatches_factory() / "hpatches"  # release and tasks side by side (see conftest)
    found = _digests(folder / "hpatches-release") | _digests(folder / "tasks", prefix="tasks/")
    _check("hpatches-synth-tiny", found)


def test_hpatches_seq_synth_keeps_every_byte_and_its_version(seq_synth_data):
    data = seq_synth_data
    pairs = registry.dataset("hpatches-seq-synth", data_dir=data)
    pinned = _check("hpatches-seq-synth", _digests(data / "hpatches-seq-synth"))
    assert pairs.version == pinned["version"]
