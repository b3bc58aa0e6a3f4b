"""Shared fixtures. Tests that need ../shared skip with a clear reason when it is absent."""
from __future__ import annotations

import os
from pathlib import Path

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


@pytest.fixture(autouse=True, scope="session")
def _threads():
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


@pytest.fixture()
def data_dir(tmp_path, monkeypatch) -> Path:
    """An empty per-test data/cache folder; DESC_BENCH_DATA and DESC_BENCH_CACHE point at it."""
    monkeypatch.setenv("DESC_BENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("DESC_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "data"


def requires_cuda():
    return pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
