"""Dataset registry: where data lives, which datasets exist, and opening one by name.

Dataset modules register :class:`~desc_bench.datasets.base.DatasetSource` subclasses when they are
imported (``DatasetSource.__init_subclass__``); the first lookup imports every module of this
package once. There is no central list of names.

Folders:
    data_root(data_dir)   argument, else $DESC_BENCH_DATA, else <user cache>/desc-bench/data
    cache_root(cache_dir) argument, else $DESC_BENCH_CACHE, else <user cache>/desc-bench
                          (descriptor caches and weights live under it)
where <user cache> is $XDG_CACHE_HOME or ~/.cache.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..discovery import import_modules
from ..errors import DatasetError, UnknownNameError
from ..io.paths import data_root
from .base import DatasetSource
from .made_patches import made_source, made_sources

_INFRASTRUCTURE = frozenset({"base", "registry", "tasks"})


@lru_cache(maxsize=1)
def _discover() -> None:
    import_modules(__package__, _INFRASTRUCTURE)
    import_modules(f"{__package__}.synth")  # the generated datasets (and their reusable parts)


def dataset_sources() -> dict[str, type[DatasetSource]]:
    """Every registered dataset source class by name."""
    _discover()
    return dict(sorted(DatasetSource._registry.items()))


def dataset_source(name: str, data_dir: Path | str | None = None) -> DatasetSource:
    """An instance of the named source, or of a dataset made by ``make-patches`` under the data root;
    UnknownNameError lists the valid names."""
    sources = dataset_sources()
    if name in sources:
        return sources[name]()
    root = data_root(data_dir)
    made = made_source(name, root)
    if made is None:
        raise UnknownNameError("dataset", name, [*sources, *made_sources(root)])
    return made


def _fallback_hint(name: str, problem: str) -> str:
    """Suggest the shortest-named embedded dataset of the same kind, unless the problem names one."""
    if name not in dataset_sources():
        return ""  # a made dataset
    kind = dataset_sources()[name].kind
    others = [n for n, cls in dataset_sources().items() if cls.embedded and cls.kind == kind and n != name]
    if not others or any(n in problem for n in others):
        return ""
    return f"; or use the embedded dataset `{min(others, key=len)}`, which needs no download"


def unavailable_message(name: str, data_dir: Path | str | None = None) -> str | None:
    """None when the dataset can be opened, else what is missing and how to get it."""
    source = dataset_source(name, data_dir)
    root = data_root(data_dir)
    problem = source.availability(root)
    if problem is None:
        return None
    has_download = type(source).download is not DatasetSource.download
    how = (
        ""
        if (not has_download or "desc-bench data download" in problem)
        else (f"; run `desc-bench data download {name}`")
    )
    return f"dataset {name!r} is not available in {root}: {problem}{how}{_fallback_hint(name, problem)}"


def dataset(name: str, data_dir: Path | str | None = None):
    """Open a dataset by name: a PatchSet for patch datasets, a pair set for image-pair datasets.

    Raises UnknownNameError (listing the valid names) or DatasetError (saying how to download the
    data, where it was looked for, and which embedded dataset needs no download). Generation of an
    embedded dataset shows a progress bar; :func:`open_dataset` can keep it quiet.
    """
    return open_dataset(name, data_dir)


def open_dataset(name: str, data_dir: Path | str | None = None, *, progress: bool = True):
    """:func:`dataset` with ``progress`` (False for ``-q``: no bar while a dataset is generated)."""
    source = dataset_source(name, data_dir)
    message = unavailable_message(name, data_dir)
    if message is not None:
        raise DatasetError(message)
    root = data_root(data_dir)
    if "progress" in inspect.signature(source.open).parameters:
        return source.open(root, progress=progress)
    return source.open(root)  # an outside source written before ``open`` took ``progress``


def download(name: str, data_dir: Path | str | None = None, progress: bool = True) -> Path:
    """Download (or generate) a dataset into the data root; returns its folder."""
    source = dataset_source(name)
    if type(source).download is DatasetSource.download:
        raise DatasetError(
            f"dataset {name!r} has nothing to download" + (" (it is generated locally)" if source.embedded else "")
        )
    return source.download(data_root(data_dir), progress=progress)


@dataclass(frozen=True)
class DatasetInfo:
    """One row of ``desc-bench list``."""

    name: str
    kind: str  # "patches" or "pairs"
    available: bool
    status: str  # "ok" or what is missing and how to fix it
    summary: str


def datasets(data_dir: Path | str | None = None) -> list[DatasetInfo]:
    """Every registered dataset with its availability under the data root."""
    rows = []
    for name, cls in dataset_sources().items():
        problem = unavailable_message(name, data_dir)
        rows.append(
            DatasetInfo(
                name=name, kind=cls.kind, available=problem is None, status=problem or "ok", summary=cls.summary
            )
        )
    for name, made in made_sources(data_root(data_dir)).items():
        problem = unavailable_message(name, data_dir)
        rows.append(DatasetInfo(name, made.kind, problem is None, problem or "ok", made.summary))
    return rows
