"""Weight files of the learned descriptors: mirrors, verification, cache and safe loading.

Each learned descriptor declares ``weights = {variant: WeightFile(...)}`` (see
:class:`~desc_bench.adapters.base.WeightFile`): upstream URLs, the upstream git blob id (the SHA-1
git computes over ``"blob <size>\\0" + content``, published by every repository for every file),
the format, the licence and an optional notice. This module

- fetches a file from its mirrors into the cache (``$DESC_BENCH_CACHE`` or ``~/.cache/desc-bench``,
  under ``weights/<descriptor>/<variant>/``), verifying the git blob id and recording the sha256;
- imports a file the user already has (``desc-bench weights add``), after the same verification
  and a load that checks keys, shapes, dtypes and finiteness (:mod:`~desc_bench.adapters.checkpoint`);
- verifies a cached file again before every use (:mod:`~desc_bench.adapters.verification`): its
  sha256, size, times and inode are recorded in ``<file>.verified.json`` when it is fetched, added or
  verified; while they are unchanged (and the pins are those it was checked against) the recorded
  digest is used, otherwise the file is hashed again. A file that does not verify is refused with
  the command that fixes it. Weights with no published checksum (``weights add`` only) are checked
  against the digest recorded when they were added;
- resolves the ``weights`` argument of a descriptor: ``None`` (default variant), a variant name, a
  file path (``--weights PATH``), or ``"random"`` (seeded random weights, timing only);
- loads a state dict without executing code from the file (``torch.load(weights_only=True)``).

The formats (``WeightFile.format``):
    "checkpoint:state_dict"  ``{"state_dict": {...}, "epoch": ...}`` (HardNet training checkpoints)
    "state_dict"             a bare state dict (HardNetPS, SuperPoint)
    "gift"                   ``{"extractor": {...}, "embedder": {...}, "step": ...}``
    "msnet"                  ``{"model": {...}, ...}``, keys possibly prefixed by ``module.``
:func:`load_state_dict` recognises all of them from the file's structure.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from ..errors import WeightsError
from ..io.paths import cache_root
from .base import Descriptor, WeightFile
from .checkpoint import load_state_dict, random_state, state_shapes
from .verification import forget, sha256_of, verify, verify_cached, write_record

RANDOM = "random"  # the weights name of seeded random weights (timing only)
RANDOM_NOTE = "random weights, timing only"
HPATCHES_NOTE = "weights saw HPatches in training"
_NOTICES_SHOWN: set[str] = set()


# ------------------------------------------------------------------------------------ locations


def _file_name(weight: WeightFile, variant: str) -> str:
    if weight.urls:
        name = weight.urls[0].rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]
        if name:
            return name
    return f"{variant}.pth"


def cached_path(descriptor_name: str, variant: str, weight: WeightFile) -> Path:
    """Where the file of ``descriptor_name``'s ``variant`` lives in the cache (it may be absent)."""
    return cache_root() / "weights" / descriptor_name / variant / _file_name(weight, variant)


# -------------------------------------------------------------------------------------- lookups


def _descriptor_class(name: str) -> type[Descriptor]:
    from .registry import descriptor_class

    return descriptor_class(name)


def _variant(cls: type[Descriptor], variant: str | None) -> tuple[str, WeightFile]:
    if not cls.weights:
        raise WeightsError(f"descriptor {cls.name!r} uses no weight files")
    name = variant or cls.default_weights or next(iter(cls.weights))
    if name not in cls.weights:
        raise WeightsError(f"unknown weights {name!r} for {cls.name}; valid variants: {', '.join(sorted(cls.weights))}")
    return name, cls.weights[name]


def _option(cls: type[Descriptor], variant: str) -> str:
    return "" if variant == cls.default_weights else f" --variant {variant}"


def fetch_command(cls: type[Descriptor], variant: str | None = None) -> str:
    """The command that makes ``variant`` of ``cls`` available (fetch, or add for unpublished files)."""
    name, weight = _variant(cls, variant)
    if weight.urls:
        return f"desc-bench weights fetch {cls.name}{_option(cls, name)}"
    return f"desc-bench weights add {cls.name} PATH{_option(cls, name)}"


def _fix(cls: type[Descriptor], variant: str) -> str:
    """How to replace a cached file of ``variant`` that does not verify."""
    add = f"`desc-bench weights add {cls.name} PATH{_option(cls, variant)}` with a copy you trust"
    if cls.weights[variant].urls:
        return f"run `{fetch_command(cls, variant)}` to download it again, or {add}"
    return f"run {add}"


def verified_digest(cls: type[Descriptor], variant: str | None = None) -> str:
    """The sha256 of the cached file of ``variant`` after it verified (see :mod:`.verification`).

    Raises WeightsError when it is absent or does not verify, saying how to fix it."""
    name, weight = _variant(cls, variant)
    path = cached_path(cls.name, name, weight)
    if not path.is_file():
        raise WeightsError(f"{cls.name}: {weights_availability(cls, name)}")
    return verify_cached(path, weight, f"{cls.name} weights {name!r}", _fix(cls, name))


def weights_availability(cls: type[Descriptor], variant: str | None = None) -> str | None:
    """None when ``variant`` (default: the default variant) is in the cache and verifies, else how to get it."""
    name, weight = _variant(cls, variant)
    if cached_path(cls.name, name, weight).is_file():
        try:
            verified_digest(cls, name)
        except WeightsError as exc:
            return str(exc)
        return None
    if weight.urls:
        return f"needs weights: run `{fetch_command(cls, name)}`"
    source = f" ({weight.trained_on})" if weight.trained_on else ""
    return (
        f"needs weights: the {cls.name} weights{source} were never published at a stable URL; "
        f"get the file from the authors and run `{fetch_command(cls, name)}`"
    )


# ------------------------------------------------------------------------------------ notices


def show_notice(weight: WeightFile, label: str) -> None:
    """Print a weight file's licence notice (e.g. SuperPoint's non-commercial licence), once per process."""
    if weight.notice and label not in _NOTICES_SHOWN:
        _NOTICES_SHOWN.add(label)
        print(f"note ({label}): {weight.notice}", file=sys.stderr)


# ---------------------------------------------------------------------------------- CLI actions


@dataclass(frozen=True)
class WeightsInfo:
    """One row of ``desc-bench weights list``."""

    descriptor: str
    variant: str
    default: bool
    format: str
    licence: str
    trained_on: str
    saw_hpatches: bool
    git_blob: str | None
    cached: bool  # in the cache and verified
    damaged: bool  # in the cache but it does not verify (fetch or add it again)
    path: str
    urls: tuple[str, ...]
    command: str  # how to get it when it is not cached


def weights_table() -> list[WeightsInfo]:
    """Every weight file of every registered descriptor, with its cache state."""
    from .registry import registered

    rows = []
    for name, cls in registered().items():
        for variant, weight in cls.weights.items():
            path = cached_path(name, variant, weight)
            present = path.is_file()
            verified = present and weights_availability(cls, variant) is None
            rows.append(
                WeightsInfo(
                    descriptor=name,
                    variant=variant,
                    default=variant == cls.default_weights,
                    format=weight.format,
                    licence=weight.licence,
                    trained_on=weight.trained_on,
                    saw_hpatches=weight.saw_hpatches,
                    git_blob=weight.git_blob,
                    cached=verified,
                    damaged=present and not verified,
                    path=str(path),
                    urls=weight.urls,
                    command=fetch_command(cls, variant),
                )
            )
    return rows


def download_path(dest: Path) -> Path:
    """Where ``fetch_weights`` downloads a file before it is verified (its resumable partial
    download is this name plus ``.part``). Nothing unverified is ever written to ``dest`` itself."""
    return dest.with_name(dest.name + ".download")


def fetch_weights(descriptor_name: str, variant: str | None = None, progress: bool = True) -> Path:
    """Download (or find in the cache) and verify a weight file; returns its cached path.

    Each mirror in turn is downloaded to a temporary name next to the cache path and verified there
    (git blob id, sha256); only a file that verifies is moved into the cache. A mirror that fails
    (HTTP error, an HTML page instead of the file, a corrupt copy) is deleted and the next one is
    tried; when every mirror fails, the error lists each mirror's failure.
    """
    from ..errors import DownloadError
    from ..io.download import fetch

    cls = _descriptor_class(descriptor_name)
    name, weight = _variant(cls, variant)
    label = f"{cls.name} weights {name!r}"
    dest = cached_path(cls.name, name, weight)
    if not weight.urls:
        raise WeightsError(f"{label} have no download address. {weights_availability(cls, name)}")
    if dest.is_file():
        try:
            verified_digest(cls, name)
            show_notice(weight, label)
            return dest
        except WeightsError:
            forget(dest)  # stale or corrupt copy: fetch again
    temp = download_path(dest)
    part = temp.with_name(temp.name + ".part")
    failures = []
    for url in weight.urls:
        temp.unlink(missing_ok=True)  # a completed but unverified download is never reused unchecked
        try:
            fetch(url, temp, sha256=weight.sha256, progress=progress)
            digest = verify(temp, weight, label)
        except (DownloadError, WeightsError) as exc:
            failures.append(f"{url}: {exc}")
            temp.unlink(missing_ok=True)
            part.unlink(missing_ok=True)  # a partial file from one mirror must not be resumed from another
            continue
        os.replace(temp, dest)
        write_record(dest, digest, weight)
        show_notice(weight, label)
        return dest
    raise WeightsError(
        f"{label}: every mirror failed:\n  "
        + "\n  ".join(failures)
        + f"\nIf you have the file (from the authors, or downloaded by hand), import it with "
        f"`desc-bench weights add {cls.name} PATH{_option(cls, name)}` (it is verified the same way)"
    )


def add_weights(descriptor_name: str, path: Path | str, variant: str | None = None) -> Path:
    """Import a weight file the user already has into the cache, after verification.

    The file must match the variant's git blob id (when upstream published one) and load with the
    descriptor's expected keys and shapes. Returns the cached path.
    """
    cls = _descriptor_class(descriptor_name)
    name, weight = _variant(cls, variant)
    label = f"{cls.name} weights {name!r}"
    source = Path(path).expanduser()
    verify(source, weight, label)
    expected = _expected_of(cls, name)
    if expected is not None:
        load_state_dict(source, expected)
    dest = cached_path(cls.name, name, weight)
    dest.parent.mkdir(parents=True, exist_ok=True)
    # a unique temporary name: never the resumable download of fetch_weights, never another add's
    handle, temp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".adding", dir=dest.parent)
    os.close(handle)
    temp = Path(temp_name)
    try:
        shutil.copyfile(source, temp)
        digest = verify(temp, weight, label)  # the copy, not only the source, is what goes into the cache
        os.replace(temp, dest)
        write_record(dest, digest, weight)
    finally:
        temp.unlink(missing_ok=True)
    show_notice(weight, label)
    return dest


def _expected_of(cls: type[Descriptor], variant: str) -> dict[str, tuple[int, ...]] | None:
    expected = getattr(cls, "expected_shapes", None)
    return expected(variant) if callable(expected) else None


@dataclass(frozen=True)
class ResolvedWeights:
    """What a descriptor's ``weights`` argument resolved to."""

    path: Path | None  # None: random weights
    variant: str | None  # the registered variant, None for a user file or random weights
    weight: WeightFile | None
    sha256: str | None = None  # of a cached variant, verified just now; None for a user file or random


def resolve(cls: type[Descriptor], weights: str | None) -> ResolvedWeights:
    """Resolve ``weights`` (None, a variant name, a file path or "random") for ``cls``."""
    if weights == RANDOM:
        return ResolvedWeights(None, None, None)
    if weights is not None and weights not in cls.weights:
        path = Path(weights).expanduser()
        if path.is_file():
            return ResolvedWeights(path, None, None)
        raise WeightsError(
            f"weights {weights!r} for {cls.name} are neither a variant "
            f"({', '.join(sorted(cls.weights)) or 'none'}), nor {RANDOM!r}, nor an existing file"
        )
    name, weight = _variant(cls, weights)
    digest = verified_digest(cls, name)  # every use, not only fetch and add
    show_notice(weight, f"{cls.name} weights {name!r}")
    return ResolvedWeights(cached_path(cls.name, name, weight), name, weight, digest)


def resolve_weights(descriptor_cls: type[Descriptor], weights: str | None) -> Path | None:
    """The weight file for ``weights`` (None: default variant; a variant; a path), None for "random"."""
    return resolve(descriptor_cls, weights).path


class LearnedDescriptor(Descriptor):
    """Base of the adapters with weight files: resolves, verifies and loads them in ``setup``.

    A subclass names its ``network`` (a module class whose state dict has the upstream keys); the
    defaults below derive the expected keys and shapes from it and load the verified state into it.
    Subclasses with another layout override ``expected_shapes(variant)`` and ``build(state)``.
    ``weights="random"`` gives seeded random weights, for timing only.
    """

    network: ClassVar[type[torch.nn.Module] | None] = None

    @classmethod
    def availability(cls) -> str | None:
        return weights_availability(cls)

    @classmethod
    def expected_shapes(cls, variant: str | None = None) -> dict[str, tuple[int, ...]]:
        return state_shapes(cls.network())

    def build(self, state: dict[str, torch.Tensor]) -> None:
        net = type(self).network()
        # keys and shapes were checked by load_state_dict; only the optional BN counters may be absent
        net.load_state_dict(state, strict=False)
        self.net = net.to(self.device).eval()

    def setup(self) -> None:
        resolved = resolve(type(self), self.weights_name)
        self.weights_path = resolved.path
        self.weights_file = resolved.weight
        self.random_weights = resolved.path is None
        variant = resolved.variant or self.default_weights
        expected = self.expected_shapes(variant)
        if resolved.path is None:
            state = random_state(expected)
            self.weights_checksum = RANDOM
        else:
            try:
                state = load_state_dict(resolved.path, expected)
            except WeightsError as exc:
                raise WeightsError(f"{self.name}: {exc}") from None
            self.weights_checksum = resolved.sha256 or sha256_of(resolved.path)
        self.build(state)

    @property
    def weights_label(self) -> str:
        if self.weights_path is not None and self.weights_file is None:
            return f"file:{self.weights_path.name}"
        return self.weights_name or "none"

    @property
    def notes(self) -> str:
        """What a record should say about these weights ("" when nothing)."""
        if self.random_weights:
            return RANDOM_NOTE
        # a user's own file for a descriptor whose training data includes HPatches is flagged too
        weight = self.weights_file or type(self).weights.get(self.default_weights or "")
        if weight is not None and weight.saw_hpatches:
            return HPATCHES_NOTE
        return ""


__all__ = [
    "RANDOM",
    "RANDOM_NOTE",
    "HPATCHES_NOTE",
    "WeightsInfo",
    "ResolvedWeights",
    "LearnedDescriptor",
    "cache_root",
    "cached_path",
    "fetch_command",
    "weights_availability",
    "verified_digest",
    "verify",
    "sha256_of",
    "weights_table",
    "fetch_weights",
    "add_weights",
    "resolve",
    "resolve_weights",
    "load_state_dict",
    "random_state",
    "show_notice",
    "download_path",
    "state_shapes",
]
