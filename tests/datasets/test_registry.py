"""The dataset registry: folders, discovery, opening by name, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from desc_bench.datasets import registry
from desc_bench.datasets.base import DatasetSource
from desc_bench.errors import DatasetError, UnknownNameError
from desc_bench.io import paths


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("DESC_BENCH_DATA", raising=False)
    monkeypatch.delenv("DESC_BENCH_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert paths.data_root() == tmp_path / "xdg" / "desc-bench" / "data"
    assert paths.cache_root() == tmp_path / "xdg" / "desc-bench"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.data_root() == tmp_path / "home" / ".cache" / "desc-bench" / "data"
    monkeypatch.setenv("DESC_BENCH_DATA", str(tmp_path / "env-data"))
    monkeypatch.setenv("DESC_BENCH_CACHE", str(tmp_path / "env-cache"))
    assert paths.data_root() == tmp_path / "env-data"
    assert paths.cache_root() == tmp_path / "env-cache"
    assert paths.data_root(tmp_path / "arg") == tmp_path / "arg"
    assert paths.cache_root(str(tmp_path / "carg")) == tmp_path / "carg"
    assert paths.data_root("~/x") == Path.home() / "x"
    assert not (tmp_path / "arg").exists()  # nothing is created


def test_discovery_finds_the_dataset_modules():
    sources = registry.dataset_sources()
    assert "hpatches" in sources
    for name, cls in sources.items():
        kinds = ("patches", "pairs", "brown", "pose", "retrieval")
        assert issubclass(cls, DatasetSource) and cls.name == name and cls.kind in kinds
    assert list(sources) == sorted(sources)


def test_unknown_name_lists_the_valid_ones(data_dir):
    with pytest.raises(UnknownNameError) as info:
        registry.dataset("hpatchez")
    message = str(info.value)
    assert "hpatchez" in message and "hpatches" in message.split("valid datasets:")[1]
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownNameError, match="valid datasets"):
        registry.download("nope")


def test_missing_dataset_error_says_how_to_download(data_dir):
    with pytest.raises(DatasetError) as info:
        registry.dataset("hpatches")
    message = str(info.value)
    assert "desc-bench data download hpatches" in message
    assert "hpatches-synth" in message and str(data_dir) in message


def test_list_rows(data_dir):
    rows = {row.name: row for row in registry.datasets()}
    hp = rows["hpatches"]
    assert isinstance(hp, registry.DatasetInfo)
    assert hp.kind == "patches" and not hp.available and "download" in hp.status and hp.summary
    for row in rows.values():
        assert row.available == (row.status == "ok")


@pytest.fixture()
def toy_sources():
    class ToyRemote(DatasetSource):
        name = "toy-remote"
        kind = "pairs"
        summary = "a remote toy"

        def availability(self, data_dir):
            return None if (Path(data_dir) / "toy").is_dir() else f"no {Path(data_dir) / 'toy'}"

        def open(self, data_dir):
            return ("opened", Path(data_dir))

        def download(self, data_dir, progress=True):
            (Path(data_dir) / "toy").mkdir(parents=True)
            return Path(data_dir) / "toy"

    class ToyEmbedded(DatasetSource):
        name = "toy-embedded-pairs"
        kind = "pairs"
        embedded = True

        def open(self, data_dir):
            return "embedded"

    yield ToyRemote, ToyEmbedded
    for name in ("toy-remote", "toy-embedded-pairs"):
        DatasetSource._registry.pop(name, None)


def test_subclasses_register_and_get_a_download_hint(data_dir, toy_sources):
    assert "toy-remote" in registry.dataset_sources()
    with pytest.raises(DatasetError) as info:
        registry.dataset("toy-remote")
    message = str(info.value)
    assert "run `desc-bench data download toy-remote`" in message
    embedded = [n for n, c in registry.dataset_sources().items() if c.embedded and c.kind == "pairs"]
    assert f"`{min(embedded, key=len)}`" in message  # the shortest embedded pairs dataset is suggested
    assert registry.download("toy-remote", progress=False) == data_dir / "toy"
    assert registry.dataset("toy-remote") == ("opened", data_dir)
    assert registry.dataset("toy-embedded-pairs") == "embedded"
    with pytest.raises(DatasetError, match="nothing to download.*generated locally"):
        registry.download("toy-embedded-pairs")
