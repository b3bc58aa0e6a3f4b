"""Registration by subclassing: import every module of a package once, so that the classes they
define register themselves. Used by the descriptor and dataset registries (no central name lists)."""

from __future__ import annotations

import importlib
import pkgutil


def import_modules(package: str, skip: frozenset[str] = frozenset()) -> None:
    """Import every module of ``package`` except those in ``skip`` and private ones."""
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        if module.name not in skip and not module.name.startswith("_"):
            importlib.import_module(f"{package}.{module.name}")
