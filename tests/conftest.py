"""Shared fixtures. Tests that need ../shared skip with a clear reason when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DESC_BENCH_SHARED", ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared() -> Path:
    """The shared data/oracles folder (../shared next to the project root)."""
    if not SHARED.is_dir():
        pytest.skip(f"needs the shared data folder at {SHARED} (not part of a fresh clone)")
    return SHARED


THREADS = min(2, os.cpu_count() or 1)


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(THREADS)
    yield


@pytest.fixture(autouse=True)
def _restore_threads():
    """Torch's and OpenCV's thread counts are process-wide: a test that changes them (an in-process
    TaskWorker sets them as a Ray worker does) must not leave the rest of the session on one core."""
    before = torch.get_num_threads(), cv2.getNumThreads()
    yield
    if (torch.get_num_threads(), cv2.getNumThreads()) != before:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])


@pytest.fixture()
def data_dir(tmp_path, monkeypatch) -> Path:
    """An empty per-test data/cache folder; DESC_BENCH_DATA and DESC_BENCH_CACHE point at it."""
    monkeypatch.setenv("DESC_BENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DESC_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "data"


def requires_cuda():
    return pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="session")
def tiny_hpatches_factory(tmp_path_factory):
    """Make a tiny set with the embedded generator, laid out as `desc-bench data download hpatches`
    lays out the real release (``<root>/hpatches/hpatches-release`` and ``<root>/hpatches/tasks``);
    returns the data root to pass as --data-dir. Sets are made once per size."""
    import shutil

    from desc_bench.datasets.synth.hpatches_synth import generate_tiny

    made: dict[tuple[int, int], Path] = {}

    def make(sequences: int = 4, patches: int = 40) -> Path:
        if (sequences, patches) not in made:
            root = tmp_path_factory.mktemp(f"hpatches-{sequences}x{patches}")
            release = root / "hpatches" / "hpatches-release"
            generate_tiny(release, sequences=sequences, patches=patches)
            shutil.move(str(release / "tasks"), str(root / "hpatches" / "tasks"))
            made[(sequences, patches)] = root
        return made[(sequences, patches)]

    return make


@pytest.fixture(scope="session")
def hpatches_synth_data(tmp_path_factory) -> Path:
    """A data root holding the full default ``hpatches-synth`` (16 x 300), generated once per session
    (about 14 s on a quiet machine); pass it as ``data_dir``. Tests must not modify it."""
    from desc_bench.datasets.registry import download

    root = tmp_path_factory.mktemp("hpatches-synth-data")
    download("hpatches-synth", data_dir=root, progress=False)
    return root


@pytest.fixture(scope="session")
def seq_synth_data(tmp_path_factory) -> Path:
    """A data root holding ``hpatches-seq-synth`` (generated once per session, about 2 s); pass it
    as ``data_dir``. Tests must not modify it."""
    from desc_bench.datasets.synth.seq_synth import generate_synthetic

    root = tmp_path_factory.mktemp("seq-synth-data")
    generate_synthetic(root)
    return root
