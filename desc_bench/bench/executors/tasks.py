"""Tasks of (descriptor, item) and the worker that runs them; no Ray here (tested in-process).

*Planning* runs a benchmark's own ``features`` step on the driver against a :class:`PlanningStore`:
each item that is not stored yet becomes a :class:`Task` holding the item's ``compute`` closure
(exactly the code a serial run would call), and ``features`` gets a placeholder instead of arrays,
so planning calls no descriptor. No benchmark knows about executors.

A closure refers to the descriptor, the dataset and the parts of the dataset it describes (a
sequence, a Brown subset). Those are pickled as *references* (``persistent_id``), resolved on the
worker to the worker's own descriptor (built once, its weights verified once) and its own opening
of the dataset (checked to be the same version): a task carries a few hundred bytes, never a
network or a patch array. A worker checks that its descriptor has the driver's feature key (same
weights, adapter code, library versions): a node with another torch or OpenCV is refused, not mixed in.

Results are written into the same content-keyed store: by the worker when it sees the driver's
cache folder (one machine, or a shared filesystem) and the item's files have the driver's
fingerprint, else returned to the driver, which writes them (:func:`store_result`).
"""

from __future__ import annotations

import dataclasses
import io
import os
import pickle
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...adapters.registry import descriptor as build_descriptor
from ...adapters.registry import load_plugins
from ...datasets.registry import open_dataset
from ...errors import DescBenchError
from ..benchmarks.base import Context
from ..features import FINGERPRINT, Extraction, FeatureKey, FeatureStore, feature_key, files_fingerprint

PROBE = ".desc-bench-shared-probe"


class _Placeholder(dict):
    """What planning returns instead of an item's arrays: empty, and an empty array for any key."""

    def __missing__(self, key: str) -> np.ndarray:
        return np.zeros((0,), np.float32)


@dataclass(frozen=True)
class Task:
    """One item of one descriptor: what to compute, from which files, and where it is stored."""

    item: str
    files: tuple[str, ...]
    extraction: Extraction
    fingerprint: str  # of ``files`` on the driver (names, sizes, modification times)
    payload: bytes  # the pickled ``compute`` closure (descriptor and dataset as references)


class PlanningStore(FeatureStore):
    """A feature store that computes nothing: missing items become tasks (once per stored path)."""

    def __init__(self, store: FeatureStore, pickler: Callable[[Callable], bytes]):
        super().__init__(store.root, store.key, overwrite=store.overwrite, log=store.log)
        self.pickler = pickler
        self.tasks: dict[str, Task] = {}
        self.local: list[str] = []  # items whose closure cannot be pickled: the driver computes them

    def _stored(self, path: Path | None, fingerprint: str) -> bool:
        if path is None or self.overwrite or not path.is_file():
            return False
        try:
            with np.load(path, allow_pickle=False) as data:  # reads the fingerprint member only
                return str(data[FINGERPRINT]) == fingerprint
        except (OSError, ValueError, EOFError, KeyError):
            return False  # damaged: the driver's load warns and recomputes it

    def arrays(self, item: str, files: Iterable[Path], compute: Callable, extraction: Extraction = Extraction()):
        files = tuple(str(f) for f in files)
        fingerprint = files_fingerprint(files)
        path = self.path(item, extraction)
        where = str(path) if path is not None else f"{extraction.key()}/{item}"
        if where not in self.tasks and where not in self.local and not self._stored(path, fingerprint):
            try:
                self.tasks[where] = Task(item, files, extraction, fingerprint, self.pickler(compute))
            except (pickle.PicklingError, TypeError, AttributeError):
                self.local.append(where)
        return _Placeholder()


# ---- references ---------------------------------------------------------------------------------
def _parts(data: Any) -> dict[int, tuple]:
    """id -> reference of the dataset and of the elements of its tuple/list attributes."""
    refs: dict[int, tuple] = {id(data): ("dataset",)}
    fields = vars(data) if hasattr(data, "__dict__") else {}
    for name, value in fields.items():
        if isinstance(value, (tuple, list)):
            for i, element in enumerate(value):
                if not isinstance(element, (str, bytes, int, float, bool, type(None))):
                    refs.setdefault(id(element), ("part", name, i))
    return refs


def task_pickler(descriptor: Any, data: Any, others: Iterable[Any] = ()) -> Callable[[Callable], bytes]:
    """A function pickling a closure with the descriptor, the dataset, its parts and ``others``
    (stores, contexts) as references."""
    from ray import cloudpickle

    refs = _parts(data)
    refs[id(descriptor)] = ("descriptor",)
    for other in others:
        refs[id(other)] = ("context",) if isinstance(other, Context) else ("store",)

    class Pickler(cloudpickle.Pickler):
        def persistent_id(self, obj):
            return refs.get(id(obj))

    def dumps(compute: Callable) -> bytes:
        buffer = io.BytesIO()
        Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(compute)
        return buffer.getvalue()

    return dumps


def load_task(payload: bytes, descriptor: Any, data: Any, store: Any) -> Callable:
    """The closure of a task, its references resolved to this process's objects."""

    class Unpickler(pickle.Unpickler):
        def persistent_load(self, ref):
            if ref[0] == "descriptor":
                return descriptor
            if ref[0] == "dataset":
                return data
            if ref[0] == "part":
                return getattr(data, ref[1])[ref[2]]
            return Context(progress=False) if ref[0] == "context" else store

    return Unpickler(io.BytesIO(payload)).load()


# ---- the worker ---------------------------------------------------------------------------------
def _reads(path: Path) -> str | None:
    """The text of ``path`` (a stale probe of another run holds another token), None if unreadable."""
    try:
        return path.read_text().strip()
    except OSError:
        return None


@dataclass(frozen=True)
class Job:
    """What a worker needs to rebuild the driver's descriptor and dataset (small, sent with each task)."""

    spec: str
    device: str
    weights: str | None
    plugin: str | None  # file or module defining the descriptor when it is not built in
    key: FeatureKey
    dataset: str
    data_dir: str
    cache: str | None  # the driver's cache root
    overwrite: bool = False
    probe: str | None = None  # the token the driver wrote into the cache root's probe file


def plugin_of(cls: type) -> str | None:
    """The plugin spec a worker loads to know ``cls`` (None for the built-in descriptors)."""
    module = cls.__module__
    if module.startswith("desc_bench."):
        return None
    if module.startswith("desc_bench_plugin_"):  # loaded from a file
        import inspect

        return inspect.getsourcefile(cls)
    return module


@dataclass(frozen=True)
class Result:
    item: str
    extraction: Extraction
    arrays: dict[str, np.ndarray] | None  # None: the worker wrote it into the shared store
    node: str = ""
    seconds: float = 0.0  # the worker's time on the task (building the descriptor included)
    cpu_seconds: float = 0.0  # the CPU time of the worker's process on it


class TaskWorker:
    """The body of one worker (a Ray actor): builds each descriptor once, runs its tasks."""

    def __init__(self, threads: int = 1, libraries: Callable[[], tuple[str, ...]] | None = None):
        import cv2
        import torch

        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
        self.libraries = libraries or (lambda: ())
        self.current: tuple[Job, Any, FeatureStore | None] | None = None
        self.data: dict[tuple[str, str], Any] = {}

    def _dataset(self, job: Job) -> Any:
        if (job.dataset, job.data_dir) not in self.data:
            self.data = {(job.dataset, job.data_dir): open_dataset(job.dataset, data_dir=job.data_dir, progress=False)}
        data = self.data[job.dataset, job.data_dir]
        if getattr(data, "version", "") != job.key.version:
            raise DescBenchError(
                f"worker on {os.uname().nodename}: dataset {job.dataset} in {job.data_dir} has version "
                f"{getattr(data, 'version', '')!r}, the driver's has {job.key.version!r}; give every node the same data"
            )
        return data

    def _prepare(self, job: Job) -> tuple[Any, Any, FeatureStore | None]:
        if self.current is not None and self.current[0] == job:
            return self.current[1], self._dataset(job), self.current[2]
        self.current = None  # free the previous descriptor first
        if job.plugin:
            load_plugins([job.plugin])
        data = self._dataset(job)
        shared = job.cache is not None and job.probe is not None and _reads(Path(job.cache) / PROBE) == job.probe
        if shared:
            os.environ["DESC_BENCH_CACHE"] = job.cache  # weights are found where the driver found them
        desc = build_descriptor(job.spec, device=job.device, weights=job.weights)
        key = feature_key(desc, data.name, data.version, desc.device.type, self.libraries())
        if key != job.key:
            raise DescBenchError(
                f"worker on {os.uname().nodename}: {job.spec} has feature key {key.digest}, the driver's is "
                f"{job.key.digest} (other weights, adapter code or torch/OpenCV versions); install the same "
                "desc-bench, torch and OpenCV on every node"
            )
        store = FeatureStore(Path(job.cache), key, overwrite=job.overwrite) if shared else None
        self.current = (job, desc, store)
        return desc, data, store

    def run(self, job: Job, task: Task) -> Result:
        started, cpu = time.perf_counter(), time.process_time()
        desc, data, store = self._prepare(job)
        compute = load_task(task.payload, desc, data, store)
        node = os.uname().nodename
        if store is not None and files_fingerprint(task.files) == task.fingerprint:
            store.arrays(task.item, [Path(f) for f in task.files], compute, task.extraction)
            arrays = None
        else:
            arrays = {k: np.ascontiguousarray(v) for k, v in compute().items()}
        return Result(
            task.item, task.extraction, arrays, node, time.perf_counter() - started, time.process_time() - cpu
        )


def store_result(store: FeatureStore, task: Task, result: Result) -> None:
    """Write a result the worker returned into the driver's store (nothing to do when it wrote it)."""
    if result.arrays is None:
        return
    writer = dataclasses.replace(store, overwrite=True)  # the task was planned as missing: replace it
    writer.arrays(task.item, [Path(f) for f in task.files], lambda: result.arrays, task.extraction)
