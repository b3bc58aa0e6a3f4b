"""Descriptor registry: subclass registration plus lazy discovery of the adapter modules.

Adapters register themselves when their module is imported (``Descriptor.__init_subclass__``).
The first lookup imports every module of this package once (there is no central list of names),
then the entry points of installed packages and the plugins of ``$DESC_BENCH_PLUGINS``
(:mod:`desc_bench.adapters.plugins`); :func:`load_plugins` adds ``--plugin`` files and modules.

A module that fails to import hides nothing else: it becomes an :class:`ImportFailure`, listed by
:func:`descriptors` as an unavailable row for each descriptor name its source declares, and asking
for one of those names raises DescriptorUnavailableError with the import error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from ..discovery import ImportFailure, try_import_modules
from ..errors import DescriptorUnavailableError, InputError, UnknownNameError
from . import plugins
from .base import Descriptor

_INFRASTRUCTURE = frozenset({"base", "registry", "prepare", "weights", "checkpoint", "verification", "plugins"})


@lru_cache(maxsize=1)
def _discover() -> tuple[ImportFailure, ...]:
    """Import the built-in adapters, then entry points and $DESC_BENCH_PLUGINS; return the built-ins' failures."""
    failures = try_import_modules(__package__, _INFRASTRUCTURE)
    for problem in failures:  # classes a module registered before it failed are not usable
        for name in [n for n, cls in Descriptor._registry.items() if cls.__module__ == problem.module]:
            del Descriptor._registry[name]
    plugins.load_entry_points()
    plugins.load_env()
    return failures


def load_plugins(specs: str | Iterable[str]) -> tuple[ImportFailure, ...]:
    """Import plugin files or modules (``--plugin``); return those that failed (they are listed too).

    ``specs``: paths to ``.py`` files or module names, as a list or one string separated by commas or
    ``os.pathsep``. Raises InputError for a spec that names no file and no importable module.
    """
    _discover()  # built-ins first: a plugin may not take a built-in's name
    return plugins.load_specs(specs)


def import_failures() -> tuple[ImportFailure, ...]:
    """Every module (built-in, entry point, plugin) that failed to import in this process."""
    return _discover() + plugins.loaded_failures()


def registered() -> dict[str, type[Descriptor]]:
    """Every registered descriptor class by name."""
    _discover()
    return dict(sorted(Descriptor._registry.items()))


def _broken(classes: dict[str, type[Descriptor]]) -> dict[str, ImportFailure]:
    """Descriptor names declared by modules that failed to import (and registered by nothing else)."""
    found: dict[str, ImportFailure] = {}
    for problem in import_failures():
        for name in problem.names or (problem.module,):
            if name not in classes:
                found.setdefault(name, problem)
    return found


def descriptor_class(name: str) -> type[Descriptor]:
    """The class registered as ``name``; UnknownNameError lists the valid names, DescriptorUnavailableError
    says which module failed to import when ``name`` belongs to a broken module."""
    classes = registered()
    if name in classes:
        return classes[name]
    broken = _broken(classes)
    if name in broken:
        raise DescriptorUnavailableError(f"{name} is unavailable: {broken[name].message}")
    nameless = [p for p in import_failures() if not p.names]
    if nameless:
        raise DescriptorUnavailableError(
            f"{UnknownNameError('descriptor', name, list(classes))}. It may be defined in a module that failed "
            "to import: " + "; ".join(p.message for p in nameless)
        )
    raise UnknownNameError("descriptor", name, list(classes))


@dataclass(frozen=True)
class DescriptorInfo:
    """One row of ``desc-bench list``."""

    name: str
    dim: int | None  # None: a module that failed to import (the status says why)
    distance: str
    kind: str
    available: bool
    status: str  # "ok" or what is missing and how to fix it
    summary: str


def descriptors() -> list[DescriptorInfo]:
    """Every registered descriptor with its availability, and one unavailable row per descriptor of a
    module that failed to import (status: the module and its error in one line)."""
    rows = []
    classes = registered()
    for name, cls in classes.items():
        problem = cls.availability()
        rows.append(
            DescriptorInfo(
                name=name,
                dim=cls.dim,
                distance=cls.distance.value,
                kind="+".join(flag.name.lower() for flag in type(cls.kind()) if flag in cls.kind()),
                available=problem is None,
                status=problem or "ok",
                summary=cls.summary,
            )
        )
    for name, problem in _broken(classes).items():
        rows.append(DescriptorInfo(name, None, "", "", False, f"unavailable: {problem.message}", ""))
    return sorted(rows, key=lambda row: row.name)


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Parse the CLI spelling ``name:key=value:key=value`` into a name and string options."""
    name, *parts = spec.strip().split(":")
    options = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise InputError(f"bad option {part!r} in {spec!r}; write options as name:key=value:key=value")
        options[key.strip()] = value.strip()
    return name.strip(), options


def descriptor(name: str, device: str = "cpu", weights: str | None = None, **options) -> Descriptor:
    """Build a descriptor by registry name (or ``name:key=value`` spec).

    Raises UnknownNameError (listing valid names or options), DescriptorUnavailableError
    (saying what is missing and how to fix it), or InputError (e.g. ``weights`` given for a
    descriptor that has no weight files).
    """
    base, spec_options = parse_spec(name)
    cls = descriptor_class(base)
    problem = cls.availability()
    # A weights argument (a variant, a file or "random") can stand in for missing cached weights;
    # nothing can stand in for what a descriptor without weights is missing (e.g. an OpenCV module).
    if problem is not None and (weights is None or not cls.weights):
        raise DescriptorUnavailableError(f"{base}: {problem}")
    return cls(device=device, weights=weights, **{**spec_options, **options})
