"""Progress bars: one helper, so that ``--quiet`` and logs behave the same everywhere.

A bar is drawn only when it is enabled (commands pass ``progress=not quiet``) and stderr is a
terminal: in CI logs and redirected output a bar would become thousands of carriage returns.
``DESC_BENCH_PROGRESS=1`` forces bars on, ``0`` forces them off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


def bars_enabled(enabled: bool = True) -> bool:
    """Whether a bar asked for with ``enabled`` is drawn here."""
    forced = os.environ.get("DESC_BENCH_PROGRESS", "").strip()
    if forced in ("0", "1"):
        return enabled and forced == "1"
    return enabled and sys.stderr.isatty()


def bar(
    iterable: Iterable | None = None,
    *,
    desc: str = "",
    total: int | None = None,
    unit: str = "it",
    enabled: bool = True,
    **kwargs: Any,
) -> tqdm:
    """A tqdm bar (``leave=False`` by default) that honours ``enabled`` and non-terminal stderr."""
    kwargs.setdefault("leave", False)
    return tqdm(iterable, desc=desc, total=total, unit=unit, disable=not bars_enabled(enabled), **kwargs)
