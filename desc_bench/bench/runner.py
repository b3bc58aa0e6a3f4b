"""The job behind ``desc-bench run``: one loop over descriptors and benchmarks.

For each descriptor, for each benchmark: cached scores, else ``features`` (from the feature store,
computed only where missing or stale) then ``evaluate``. Several benchmarks in one run share the
descriptor's features. Nothing here knows a benchmark's or a dataset's name or kind.

The whole request is validated before any dataset is made or read (descriptor names and options,
benchmarks and their options, device, output folder). A descriptor that cannot run or fails becomes
error rows, and the run goes on with the others; ``RunResult.unmeasured`` names what produced no
result so the command can exit non-zero.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from .._version import __version__
from ..adapters.base import Descriptor, reusing_results
from ..adapters.registry import descriptor as build_descriptor
from ..adapters.registry import descriptor_class, parse_spec
from ..datasets.registry import dataset_source, open_dataset
from ..errors import DescBenchError, InputError
from ..io.paths import cache_root
from ..records.schema import Record, ResultRow, TimingRow, config_json, library_versions, machine_metadata
from .benchmarks.base import Benchmark, Context, Subject, benchmark, for_kind, split_specs
from .bootstrap import Bootstrap
from .executors import Executor, ExecutorConfig, check_executor, open_executor
from .features import FeatureStore, feature_key, files_fingerprint, source_fingerprint, stable_hash
from .timing import calibrate, check_device, time_keypoints, time_patches

# Failures of one descriptor that become error rows while the run goes on with the others: user
# errors, and what torch, numpy and OpenCV raise at run time (out of memory, unsupported operation,
# a hook returning the wrong type, an index error in an adapter).
DESCRIPTOR_FAILURES = (Exception,)
# Legacy run options that set a benchmark option of the same name where a benchmark has one.
_OPTION_FLAGS = ("tasks", "distance", "detector", "budget")
_BENCH_CODE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class RunConfig:
    """Everything ``desc-bench run`` was asked to do."""

    descriptors: tuple[str, ...]
    dataset: str = "hpatches-synth"
    data_dir: Path | None = None
    output: Path | None = Path("runs")
    split: str = "full"
    tasks: tuple[str, ...] | None = None  # HPatches tasks; None: all three
    protocol: str | None = None  # benchmarks, comma-separated (name:key=value); None: the dataset's default
    distance: str | None = None  # None: each descriptor's own distance
    device: str = "cpu"
    weights: str | None = None
    overwrite: bool = False
    re_eval: bool = False
    progress: bool = True
    time_batch: int = 256  # per-patch time recorded at this batch size (image benchmarks: per image); 0 disables
    detector: str | None = None  # image pairs: keypoint detector name
    budget: int | None = None  # image pairs: keypoint budget
    ci_resamples: int = 1000  # bootstrap resamples of the confidence intervals (results/stats.py); 0: none
    ci_seed: int = 0  # seed of the interval bootstrap
    executor: str = "serial"  # "serial" (this process) or "ray"; the record is the same
    address: str | None = None  # Ray: None starts a local cluster; "auto" or HOST:PORT joins one
    workers: int | None = None  # Ray: workers (actors); None: one per CPU (per GPU for CUDA)

    @property
    def execution(self) -> ExecutorConfig:
        return ExecutorConfig(self.executor, self.address, self.workers)


@dataclass
class RunResult:
    record: Record
    unmeasured: list[str]  # "descriptor on benchmark" that produced no result


@lru_cache(maxsize=1)
def libraries() -> tuple[str, ...]:
    """Versions of the libraries whose changes change descriptors or scores (part of the feature and
    score keys): desc-bench, torch, OpenCV, and the numeric engines a record lists (library_versions)."""
    import cv2

    numeric = (f"{name} {version}" for name, version in sorted(library_versions().items()))
    return (__version__, torch.__version__, cv2.__version__, *numeric)


def _bench_code() -> str:
    """Fingerprint of the benchmark code (part of every score key)."""
    return source_fingerprint(sorted(_BENCH_CODE.rglob("*.py")))


def plan_benchmarks(config: RunConfig, kind: str, default: str | None) -> list[Benchmark]:
    """The benchmarks asked for (or the dataset's default), with the legacy flags as their options."""
    text = config.protocol or default or ",".join(for_kind(kind)[:1])
    specs = split_specs(text)
    if not specs:
        raise InputError(f"no benchmark runs on {config.dataset!r} datasets of kind {kind!r}")
    flags = {f: getattr(config, f) for f in _OPTION_FLAGS if getattr(config, f) is not None}
    benches = []
    for spec in specs:
        bench = benchmark(spec)
        if kind not in bench.accepts:
            raise InputError(
                f"protocol {bench.name!r} runs on {', '.join(bench.accepts)} datasets; {config.dataset!r} is a "
                f"{kind} dataset (protocols for it: {', '.join(for_kind(kind))})"
            )
        own = {k: v for k, v in flags.items() if k in bench.option_names()}
        if own:
            bench = type(bench)(**{**dataclasses.asdict(bench.options), **own})
        benches.append(bench)
    for flag in flags:
        if not any(flag in b.option_names() for b in benches):
            valid = ", ".join(b.name for b in benches)
            raise InputError(f"--{flag} does not apply to protocol(s) {valid} on {config.dataset!r}")
    return benches


def check_output(folder: Path | None) -> None:
    """Refuse an output folder that cannot be written, before any work."""
    if folder is None:
        return
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".desc-bench-probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise InputError(
            f"cannot write to the output folder {folder} ({exc.strerror}); choose another with -o"
        ) from None


def check_request(config: RunConfig) -> list[Benchmark]:
    """Validate the whole request before any data is made or read; returns the benchmarks."""
    if not config.descriptors:
        raise InputError("no descriptors given; name at least one, e.g. --descriptors sift-opencv")
    for spec in config.descriptors:
        name, options = parse_spec(spec)
        descriptor_class(name).parse_options(options)  # unknown names and options, bad values
    check_device(config.device)
    check_executor(config.executor, config.address, config.workers)
    source = dataset_source(config.dataset, config.data_dir)
    benches = plan_benchmarks(config, source.kind, getattr(source, "default_protocol", None))
    context = Context(split=config.split)
    for bench in benches:
        bench.check(config.dataset, context)
    if config.time_batch < 0:
        raise InputError(f"--time-batch must be 0 (off) or a batch size, got {config.time_batch}")
    check_output(config.output)
    return benches


def _weights(spec: str, config: RunConfig) -> str | None:
    """The --weights a descriptor is built with (None for descriptors without weights)."""
    return config.weights if descriptor_class(parse_spec(spec)[0]).weights else None


def _build(spec: str, config: RunConfig) -> Descriptor:
    return build_descriptor(spec, device=config.device, weights=_weights(spec, config))


def _failure(exc: BaseException, label: str) -> str:
    return str(exc) if isinstance(exc, DescBenchError) else f"{label} failed: {type(exc).__name__}: {exc}"


def subject_of(desc: Descriptor, bench: Benchmark) -> Subject:
    notes = getattr(desc, "notes", "") or ""
    return Subject(desc.describe(), desc.weights_label, bench.distance(desc), bench.mode(desc), notes)


def evaluate_descriptor(
    desc: Descriptor, bench: Benchmark, data, store: FeatureStore | None = None, context: Context | None = None
) -> list[ResultRow]:
    """One built descriptor on one benchmark and an opened dataset, without caching scores or
    writing a record (``store=None``: features are computed, not stored). Errors propagate."""
    context = context or Context(progress=False)
    if store is None:
        store = FeatureStore(None, feature_key(desc, data.name, getattr(data, "version", ""), desc.device.type))
    bench.check(data.name, context)
    bench.check_data(data, context)
    return bench.evaluate(bench.features(desc, data, store, context), data, subject_of(desc, bench), context)


def _score_key(desc: Descriptor, bench: Benchmark, data, context: Context) -> str:
    return stable_hash(
        *libraries(),
        bench.describe(),
        bench.distance(desc).value,
        _bench_code(),
        bench.evaluation_key(data, context),
        files_fingerprint(bench.data_files(data, context)),
        getattr(data, "version", ""),
        repr(context.ci),  # pooled rows' intervals are made at evaluation time
    )


def _rows_for(
    desc: Descriptor, bench: Benchmark, data, store: FeatureStore, config: RunConfig, context: Context
) -> list[ResultRow]:
    subject = subject_of(desc, bench)
    key = _score_key(desc, bench, data, context)
    cached = None if (config.re_eval or config.overwrite) else store.load_scores(bench.name, key)
    if cached is not None:
        try:
            return [ResultRow(**r) for r in cached]
        except (TypeError, DescBenchError):
            context.log(f"warning: damaged score file {store.score_path(bench.name, key)}; recomputing it")
    with reusing_results():  # SIFT and RootSIFT share their raw SIFT of a patch batch
        features = bench.features(desc, data, store, context)
    rows = bench.evaluate(features, data, subject, context)
    if all(r.error is None for r in rows):  # failures are retried next time
        store.save_scores(bench.name, key, [dataclasses.asdict(r) for r in rows])
    return rows


def _timed(desc: Descriptor, config: RunConfig, unit: str, input_size: str, batch: int, measure) -> TimingRow:
    try:
        return dataclasses.replace(measure(), descriptor=desc.describe())
    except DESCRIPTOR_FAILURES as exc:
        return TimingRow(
            descriptor=desc.describe(),
            weights=desc.weights_label,
            device=config.device,
            batch=batch,
            input_size=input_size,
            unit=unit,
            median_ms=None,
            iqr_ms=None,
            per_second=None,
            peak_memory_mb=None,
            error=str(exc),
        )


def _timings(desc: Descriptor, benches: list[Benchmark], data, config: RunConfig) -> list[TimingRow]:
    """The descriptor's speed next to its accuracy: per patch at the run's batch size for the patch
    benchmarks, per image (describing one dataset image at the benchmark's frames) for the others."""
    if config.time_batch <= 0:
        return []
    batch, rows = config.time_batch, []
    if any(b.time_unit == "patch" for b in benches):
        rows.append(_timed(desc, config, "patch", "65", batch, lambda: time_patches(desc, batch)))
    samples = {}
    for bench in (b for b in benches if b.time_unit == "image"):
        try:
            sample = bench.timing_sample(desc, data)
        except DESCRIPTOR_FAILURES:  # its rows already say why
            continue
        if sample is not None:
            samples.setdefault(sample.input_size, sample)
    for size, s in samples.items():
        measure = lambda s=s, size=size: time_keypoints(desc, s.image, s.frames, size)  # noqa: E731
        rows.append(_timed(desc, config, "image", size, 1, measure))
    return rows


def _prefill(executor: Executor, spec, desc, benches, data, store, config, context) -> FeatureStore:
    """Let a distributing executor compute the features of the benchmarks whose scores are not cached."""
    if not executor.distributes:
        return store
    todo = []
    for bench in benches:
        try:
            cached = not (config.re_eval or config.overwrite) and store.load_scores(
                bench.name, _score_key(desc, bench, data, context)
            )
        except DESCRIPTOR_FAILURES:  # the serial step reports it
            continue
        if not cached:
            todo.append(bench)
    return executor.prefill(desc, spec, _weights(spec, config), todo, data, store, context)


def run(config: RunConfig, log: Callable[[str], None] = lambda _: None) -> RunResult:
    """Run every descriptor of the config on every benchmark asked for; return the record."""
    benches = check_request(config)
    data = open_dataset(config.dataset, data_dir=config.data_dir, progress=config.progress)
    ci = Bootstrap(config.ci_resamples, seed=config.ci_seed)
    context = Context(split=config.split, progress=config.progress, log=log, ci=ci)
    for bench in benches:
        bench.check_data(data, context)
    with open_executor(config.execution, config.data_dir, log, config.progress) as executor:
        return _run(config, benches, data, context, executor, log)


def _run(config: RunConfig, benches, data, context: Context, executor: Executor, log) -> RunResult:
    split = config.split if any(b.uses_splits for b in benches) else "all"
    results: list[ResultRow] = []
    timings: list[TimingRow] = []
    unmeasured: list[str] = []
    for spec in config.descriptors:
        try:
            desc = _build(spec, config)
        except DESCRIPTOR_FAILURES as exc:
            log(f"skipping {spec}: {exc}")
            for bench in benches:
                results.extend(bench.error_rows(spec, "none", config.dataset, split, f"skipped: {exc}"))
            unmeasured.append(spec)
            continue
        if getattr(desc, "notice", None):
            log(desc.notice)
        label = desc.describe()
        store = FeatureStore(
            cache_root(),
            feature_key(desc, data.name, data.version, desc.device.type, libraries()),
            overwrite=config.overwrite,
            log=log,
        )
        store = _prefill(executor, spec, desc, benches, data, store, config, context)
        for bench in benches:
            try:
                results.extend(_rows_for(desc, bench, data, store, config, context))
            except DESCRIPTOR_FAILURES as exc:
                message = _failure(exc, label)
                log(message)
                results.extend(bench.error_rows(label, desc.weights_label, data.name, split, message))
                unmeasured.append(f"{label} on {bench.describe()}")
        timings.extend(_timings(desc, benches, data, config))
    meta = machine_metadata(
        config.device,
        command="run",
        config=config_json(config),
        benchmarks=[b.describe() for b in benches],
        dataset_version=getattr(data, "version", ""),
        **executor.metadata(),
    )
    calibration = calibrate(config.device) if timings else None
    record = Record(metadata=meta, results=results, timings=timings, calibration=calibration)
    return RunResult(record, unmeasured)
