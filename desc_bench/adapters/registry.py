"""Descriptor registry: subclass registration plus lazy discovery of the adapter modules.

Adapters register themselves when their module is imported (``Descriptor.__init_subclass__``).
The first lookup imports every module of this package once; there is no central list of names.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ..discovery import import_modules
from ..errors import DescriptorUnavailableError, InputError, UnknownNameError
from .base import Descriptor

_INFRASTRUCTURE = frozenset({"base", "registry", "prepare", "weights"})


@lru_cache(maxsize=1)
def _discover() -> None:
    import_modules(__package__, _INFRASTRUCTURE)


def registered() -> dict[str, type[Descriptor]]:
    """Every registered descriptor class by name."""
    _discover()
    return dict(sorted(Descriptor._registry.items()))


def descriptor_class(name: str) -> type[Descriptor]:
    classes = registered()
    if name not in classes:
        raise UnknownNameError("descriptor", name, list(classes))
    return classes[name]


@dataclass(frozen=True)
class DescriptorInfo:
    """One row of ``desc-bench list``."""

    name: str
    dim: int
    distance: str
    kind: str
    available: bool
    status: str  # "ok" or what is missing and how to fix it
    summary: str


def descriptors() -> list[DescriptorInfo]:
    """Every registered descriptor with its availability."""
    rows = []
    for name, cls in registered().items():
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
    return rows


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
