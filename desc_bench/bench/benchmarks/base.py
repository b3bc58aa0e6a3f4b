"""The benchmark contract: registered by subclassing, exactly like descriptors and dataset sources.

A benchmark *declares* its ``name``, the dataset kinds it ``accepts``, an ``Options`` frozen
dataclass (CLI: ``--protocol pck-gift:threshold=5``, the colon syntax of descriptor options),
its ``headlines`` (the numbers the summary quotes) and its ``tables`` (rendered by results/), and
implements two steps:

- ``features(descriptor, dataset, store, context)``: what it needs from the descriptor, read from or
  written to the :class:`~desc_bench.bench.features.FeatureStore` (the only place a descriptor is
  called);
- ``evaluate(features, dataset, subject, context) -> list[ResultRow]``: a pure function of those
  features.

The runner is one loop over descriptors and benchmarks; nothing outside a benchmark's file knows
its name. A subclass that sets ``name`` in its own body is registered under that name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np

from ...adapters.base import Descriptor, Distance, Frames, convert_option
from ...adapters.registry import parse_spec
from ...discovery import import_modules
from ...errors import InputError, UnknownNameError
from ...records.schema import ResultRow, Units
from ..bootstrap import Bootstrap


@dataclass(frozen=True)
class NoOptions:
    """Options of a benchmark that takes none."""


@dataclass(frozen=True)
class Context:
    """What a run passes to every benchmark besides the descriptor and the data."""

    split: str = "full"
    progress: bool = True
    log: Callable[[str], None] = lambda _: None
    ci: Bootstrap | None = None  # intervals of pooled statistics (bench/bootstrap.py); None: none


@dataclass(frozen=True)
class Subject:
    """The descriptor being evaluated, as every result row names it."""

    descriptor: str  # spec label, e.g. "sift-torch-mp:patch_size=32"
    weights: str
    distance: Distance
    mode: str  # how it ran on this benchmark ("patches", "dense-at-centre", "keypoints", ...)
    notes: str = ""


@dataclass(frozen=True)
class Headline:
    """A number the summary table quotes: rows of ``task``/``metric`` whose fields equal ``where``."""

    label: str  # summary column, e.g. "matching mAP"
    task: str
    metric: str
    where: tuple[tuple[str, str], ...] = ()
    percent: bool = True
    higher_is_better: bool = True  # False for error rates (FPR95): comparisons and Pareto fronts read it

    def setting(self, row: ResultRow) -> str:
        """The row's own setting (variant) when this headline does not fix it, else "": rows of other
        settings (pck-msnet:matcher=flann, det=harris...) are other lines and points."""
        return "" if "variant" in dict(self.where) else row.variant

    def matches(self, row: ResultRow) -> bool:
        return (
            row.error is None
            and row.task == self.task
            and row.metric == self.metric
            and all(str(getattr(row, key)) == value for key, value in self.where)
        )


def per_unit(kind: str, values: Mapping[str, float], weights: Mapping[str, float] | None = None) -> Units:
    """The per-unit values of a row, to pass as ``self.row(..., units=per_unit(...))``.

    ``values``: unit name (a sequence, a query, a pair) -> its score; ``weights`` (default 1 each):
    how much each unit counts, e.g. its pairs, so that the row's value is ``sum(w v) / sum(w)``
    (the row refuses a value that is not that mean). Bootstrap intervals and paired comparisons
    (desc_bench.results.stats) resample these units; rows without units get no interval.
    """
    names = tuple(values)
    return Units(
        kind,
        names,
        tuple(float(values[n]) for n in names),
        tuple(float(weights[n]) for n in names) if weights is not None else (),
    )


def grouped_units(kind: str, names: Iterable[str], values: Iterable[float]) -> Units:
    """Units from per-item values grouped by unit name (e.g. pairs by sequence, queries by sequence):
    each unit's value is the mean of its items, its weight their count, so the weighted mean of the
    units is the mean of all items."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for name, value in zip(names, values):
        sums[name] = sums.get(name, 0.0) + float(value)
        counts[name] = counts.get(name, 0.0) + 1.0
    return per_unit(kind, {n: sums[n] / counts[n] for n in sums}, counts)


@dataclass(frozen=True)
class TableSpec:
    """A table of this benchmark's rows, as data: results/ renders it.

    Rows of ``metrics`` (and ``where``) become one line per distinct value of the ``rows`` fields
    and one column per distinct value of the ``columns`` field (in ``order`` first); a separate
    table is made for each distinct value of the ``groups`` fields. Per-pair detail rows (variant
    containing ``:pair=``) are left out unless ``details``.
    """

    title: str
    metrics: tuple[str, ...]
    rows: tuple[str, ...] = ("descriptor",)
    columns: str = "subset"
    order: tuple[str, ...] = ()
    where: tuple[tuple[str, str], ...] = ()
    groups: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()  # column value -> header text
    percent: bool = False
    digits: int = 3
    details: bool = False


@dataclass(frozen=True)
class TimingSample:
    """What a benchmark timed per image describes: an image and its frames (see ``timing_sample``)."""

    image: np.ndarray
    frames: Frames
    label: str  # e.g. "dog 1000": how the frames were found

    @property
    def input_size(self) -> str:
        height, width = self.image.shape[:2]
        return f"{width}x{height} {self.label} ({len(self.frames)} kp)"


class Benchmark:
    """Base class of every benchmark. Subclasses set the class attributes and implement the steps."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line for `desc-bench list`
    accepts: ClassVar[tuple[str, ...]] = ()  # dataset kinds: "patches", "pairs", "brown", ...
    Options: ClassVar[type] = NoOptions
    headlines: ClassVar[tuple[Headline, ...]] = ()
    tables: ClassVar[tuple[TableSpec, ...]] = ()
    tasks: ClassVar[tuple[str, ...]] = ()  # the row tasks it produces (error rows name them)
    uses_splits: ClassVar[bool] = False  # honours --split (HPatches); others refuse a split
    # "patch": the run times its descriptors per patch; "image": per image, at timing_sample's frames
    time_unit: ClassVar[str | None] = None

    _registry: ClassVar[dict[str, type[Benchmark]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and cls.name:
            Benchmark._registry[cls.name] = cls

    def __init__(self, **options: Any):
        self.options = self.parse_options(options)

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls.Options)]

    @classmethod
    def parse_options(cls, options: dict[str, Any]) -> Any:
        fields = {f.name: f for f in dataclasses.fields(cls.Options)}
        values = {}
        for key, value in options.items():
            if key not in fields:
                raise UnknownNameError(f"option of benchmark {cls.name}", key, list(fields))
            values[key] = convert_option(cls.name, key, value, fields[key].default)
        try:
            return cls.Options(**values)
        except (TypeError, ValueError) as exc:
            raise InputError(f"benchmark {cls.name}: {exc}") from None

    def describe(self) -> str:
        """The benchmark with its non-default options, as the CLI spells it."""
        parts = [self.name]
        for f in dataclasses.fields(self.options):
            value = getattr(self.options, f.name)
            if value != f.default:
                parts.append(f"{f.name}={','.join(map(str, value)) if isinstance(value, tuple) else value}")
        return ":".join(parts)

    # ---- steps ------------------------------------------------------------------------------
    def check(self, dataset_name: str, context: Context) -> None:
        """Refuse options that cannot apply, before any data is made or read."""
        if context.split != "full" and not self.uses_splits:
            raise InputError(
                f"--split applies to HPatches patch datasets; benchmark {self.name} runs on all of {dataset_name!r}"
            )

    def check_data(self, dataset: Any, context: Context) -> None:
        """Refuse what the opened dataset cannot serve (an unknown split, say), before any descriptor runs."""

    def mode(self, descriptor: Descriptor) -> str:
        """How the descriptor runs on this benchmark (recorded in every row)."""
        return "patches"

    def distance(self, descriptor: Descriptor) -> Distance:
        return descriptor.distance

    def evaluation_key(self, dataset: Any, context: Context) -> str:
        """What the scores depend on besides the features and the benchmark's code (e.g. task files)."""
        return ""

    def data_files(self, dataset: Any, context: Context) -> list:
        """The dataset files the features are computed from: their sizes and modification times are
        part of the score key, so an edited file invalidates the cached scores (cheap: no reading)."""
        return []

    def features(self, descriptor: Descriptor, dataset: Any, store: Any, context: Context) -> Any:
        raise NotImplementedError

    def timing_sample(self, descriptor: Descriptor, dataset: Any) -> TimingSample | None:
        """For a benchmark timed per image: one image of the dataset and the frames this benchmark
        describes it at (detection is not timed). None: nothing to time."""
        return None

    def evaluate(self, features: Any, dataset: Any, subject: Subject, context: Context) -> list[ResultRow]:
        raise NotImplementedError

    # ---- rows -------------------------------------------------------------------------------
    def row(self, subject: Subject, dataset: str, split: str, **fields: Any) -> ResultRow:
        """A result row of this benchmark for ``subject`` (``task``, ``metric``, ``value``, ...)."""
        notes = "; ".join(n for n in (fields.pop("notes", ""), subject.notes) if n)
        return ResultRow(
            descriptor=subject.descriptor,
            weights=subject.weights,
            dataset=dataset,
            split=split,
            protocol=self.name,
            distance=subject.distance.value,
            mode=subject.mode,
            notes=notes,
            **fields,
        )

    def error_rows(self, descriptor: str, weights: str, dataset: str, split: str, message: str) -> list[ResultRow]:
        """One row per task saying why nothing was measured."""
        return [
            ResultRow(
                descriptor=descriptor,
                weights=weights,
                dataset=dataset,
                split=split,
                protocol=self.name,
                task=task,
                metric="skipped",
                value=None,
                error=message,
            )
            for task in (self.tasks or (self.name,))
        ]


# -------------------------------------------------------------------------------------- registry


@lru_cache(maxsize=1)
def _discover() -> None:
    import_modules(__package__, frozenset({"base"}))


def registered() -> dict[str, type[Benchmark]]:
    """Every registered benchmark class by name."""
    _discover()
    return dict(sorted(Benchmark._registry.items()))


def benchmark_class(name: str) -> type[Benchmark]:
    classes = registered()
    if name not in classes:
        raise UnknownNameError("protocol", name, list(classes))
    return classes[name]


def benchmark(spec: str) -> Benchmark:
    """Build a benchmark from its CLI spelling ``name:key=value:key=value``."""
    name, options = parse_spec(spec)
    return benchmark_class(name)(**options)


def for_kind(kind: str) -> list[str]:
    """Names of the benchmarks that accept datasets of ``kind``."""
    return [name for name, cls in registered().items() if kind in cls.accepts]


def split_specs(text: str) -> list[str]:
    """``a,b:k=v,c`` -> ["a", "b:k=v", "c"] (a comma inside an option value is kept when the next
    part is not a benchmark name, e.g. ``hpatches:tasks=matching,retrieval``)."""
    names = set(registered())
    parts: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if parts and parse_spec(part)[0] not in names and "=" in parts[-1]:
            parts[-1] += "," + part
        else:
            parts.append(part)
    return parts


def all_headlines(rows: Iterable[ResultRow]) -> list[tuple[type[Benchmark], Headline]]:
    """The (benchmark, headline) pairs that occur in ``rows``, in registry order."""
    protocols = {r.protocol for r in rows}
    return [(cls, h) for name, cls in registered().items() if name in protocols for h in cls.headlines]
