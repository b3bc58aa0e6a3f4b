"""Where data and caches live.

    data_root(data_dir)   argument, else $DESC_BENCH_DATA, else <user cache>/desc-bench/data
    cache_root(cache_dir) argument, else $DESC_BENCH_CACHE, else <user cache>/desc-bench
                          (descriptor caches, feature stores and weights live under it)

where <user cache> is $XDG_CACHE_HOME or ~/.cache.
"""

from __future__ import annotations

import os
from pathlib import Path


def _user_cache() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "desc-bench"


def data_root(data_dir: Path | str | None = None) -> Path:
    """The folder that holds the datasets (``<root>/hpatches/...``); not created here."""
    if data_dir is not None and str(data_dir).strip():
        return Path(data_dir).expanduser().absolute()
    env = os.environ.get("DESC_BENCH_DATA", "").strip()
    if env:
        return Path(env).expanduser().absolute()
    return _user_cache() / "data"


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """The folder for descriptor caches and downloaded weights; not created here."""
    if cache_dir is not None and str(cache_dir).strip():
        return Path(cache_dir).expanduser().absolute()
    env = os.environ.get("DESC_BENCH_CACHE", "").strip()
    if env:
        return Path(env).expanduser().absolute()
    return _user_cache()
