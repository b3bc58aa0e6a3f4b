"""``--executor ray``: the (descriptor, item) tasks of a run on a Ray cluster, evaluation on the driver.

Without ``--address`` a local cluster is started on this machine (and stopped at the end, on
Ctrl-C too); with ``auto`` or ``HOST:PORT`` an existing cluster is joined (docs/distributed.md).
An already initialised Ray (a notebook, the tests) is used as it is and left running.

Each worker is an actor reserving ``threads`` CPUs (and a GPU share for CUDA descriptors); it sets
torch and OpenCV to that many threads, so workers do not oversubscribe the cores. Actors are
restarted when their process dies and a task that raised or lost its worker is retried by Ray
(``max_task_retries``); items already stored are never planned, so nothing is recomputed. A task
that still fails is left to the driver, whose serial evaluation computes it (and reports the same
error rows a serial run would).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ...errors import DescBenchError, InputError
from ...io.paths import data_root
from ...io.progress import bar
from ..features import Extraction, FeatureStore, feature_key
from . import ExecutorConfig
from .tasks import PROBE, Job, PlanningStore, Result, Task, TaskWorker, plugin_of, store_result, task_pickler

RETRIES = 2  # per task, after its first try (a raised exception or a dead worker)
RESTARTS = 4  # per actor
IN_FLIGHT = 2  # tasks queued per actor (one running, one waiting)
# A local cluster's workers get the driver's priority: Ray's default (nice +15, to keep its own
# daemons responsive) leaves the descriptor work, which is the whole run, behind any other process.
LOCAL = {"worker_niceness": 0}
# Actors left running in a Ray this package did not start (a notebook, the tests), for the next run
# in the same Ray session: (job id, threads, GPU share, workers) -> actors.
_KEPT: dict[tuple, list] = {}


def _libraries() -> tuple[str, ...]:
    from ..runner import libraries

    return libraries()


def python_path() -> str:
    """PYTHONPATH for local workers: this desc_bench's folder first (a checkout run with ``python -m``)."""
    here = str(Path(__file__).resolve().parents[3])
    return os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)


@contextmanager
def worker_environment() -> Iterator[None]:
    """Around ``ray.init`` starting a local cluster: :func:`python_path` in this process's environment,
    which the cluster, and so every worker, inherits. A job ``runtime_env`` would give it only to
    workers started for that environment: the workers Ray starts ahead (one per CPU, while the driver
    loads its data) would sit idle, and each actor would wait for a process of its own."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = python_path()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


def shutdown_local(ray) -> None:
    """``ray.shutdown()`` of a cluster this process started, its autoscaler monitor stopped first: stopped
    after the GCS, the monitor tries to report to it and is killed only after a 1 s timeout. The monitor
    is reached through a private attribute, so a Ray without it is shut down the plain way."""
    with contextlib.suppress(Exception):
        ray._private.worker._global_node.kill_monitor(check_alive=False)
    ray.shutdown()


class _Actor(TaskWorker):
    """The actor class (pickled by reference: workers import this module)."""

    def __init__(self, threads: int):
        super().__init__(threads, _libraries)


class RayExecutor:
    name = "ray"
    distributes = True

    def __init__(self, config: ExecutorConfig, data_dir=None, log=lambda _: None, progress: bool = True):
        import ray

        self.ray, self.config, self.log, self.progress = ray, config, log, progress
        self.data_dir = str(data_root(data_dir))  # resolved here: workers may not share our environment
        self.started = False
        self.actors: list = []
        self.shape: tuple[int, float] | None = None
        self.tasks = self.remote_items = self.driver_items = 0
        self.wall_s = self.worker_s = self.worker_cpu_s = 0.0  # task phases; the workers on them (wall, CPU)
        self.probe: Path | None = None
        self.token: str | None = None  # written into the probe; workers that read it back share the store
        self._connect()

    # ---- cluster ----------------------------------------------------------------------------
    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
        try:
            if self.config.address is None:  # workers import the desc-bench this driver runs
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a local cluster phones no one home
                with worker_environment():
                    ray.init(_system_config=LOCAL, **kwargs)
                self.started = True
            else:
                ray.init(address=self.config.address, **kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.config.address or "this machine"
            raise InputError(
                f"cannot start or join a Ray cluster at {where} ({exc}); start one with `ray start --head` "
                "(docs/distributed.md), or leave out --address to start a local one"
            ) from None

    def resources(self) -> tuple[float, float]:
        total = self.ray.cluster_resources()
        return float(total.get("CPU", 0)), float(total.get("GPU", 0))

    def metadata(self) -> dict[str, Any]:
        cpus, gpus = self.resources()
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        threads, _ = self.shape or (None, None)
        return {
            "executor": {
                "name": "ray",
                "address": self.config.address or "local",
                "nodes": len(nodes),
                "cpus": cpus,
                "gpus": gpus,
                "workers": len(self.actors) or self.config.workers,
                "threads_per_worker": threads,
                "tasks": self.tasks,
                "remote_items": self.remote_items,
                "driver_items": self.driver_items,
                "task_wall_s": round(self.wall_s, 3),
                "task_worker_s": round(self.worker_s, 3),
                "task_worker_cpu_s": round(self.worker_cpu_s, 3),
            }
        }

    def _pool(self, device: str) -> list:
        """The actors for descriptors on ``device`` (made once per run; all descriptors share them)."""
        cpus, gpus = self.resources()
        cuda = device.startswith("cuda")
        if cuda and gpus < 1:
            raise InputError(f"--device {device} on Ray: the cluster has no GPU; add GPU nodes or use --device cpu")
        workers = self.config.workers or int(gpus if cuda else cpus) or 1
        if not cuda and workers > cpus:
            self.log(f"ray: {workers} workers asked, the cluster has {cpus:g} CPUs; using {int(cpus)}")
            workers = max(1, int(cpus))
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        node_cpus = [r.get("CPU", 0) for r in nodes if r.get("GPU", 0) >= 1 or not cuda]
        threads = max(1, min(int(cpus // workers), int(max(node_cpus, default=cpus))))  # fits on one node
        gpu_share = min(1.0, gpus / workers) if cuda else 0.0
        if self.shape == (threads, gpu_share) and self.actors:
            return self.actors
        self._kill()
        key = (self.ray.get_runtime_context().get_job_id(), threads, gpu_share, workers)
        self.actors = _KEPT.pop(key, [])
        if not self.actors:
            remote = self.ray.remote(_Actor).options(
                num_cpus=threads, num_gpus=gpu_share, max_restarts=RESTARTS, max_task_retries=RETRIES
            )
            self.actors = [remote.remote(threads) for _ in range(workers)]
        self.shape, self.key = (threads, gpu_share), key
        return self.actors

    def _kill(self, keep: bool = False) -> None:
        if keep and self.actors and not self.started:
            _KEPT[self.key] = self.actors
            self.actors = []
        for actor in self.actors:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []

    def _share(self, root: Path | None) -> str | None:
        """Leave a probe in the cache root: a worker that sees it writes into the store itself."""
        if root is None:
            return None
        if self.probe is None:
            self.probe, self.token = Path(root) / PROBE, uuid.uuid4().hex
            try:
                self.probe.parent.mkdir(parents=True, exist_ok=True)
                self.probe.write_text(self.token)
            except OSError:
                self.probe, self.token = None, None
        return str(root)

    def close(self, keep: bool = True) -> None:
        """Stop the actors (kept for the next run when Ray is not ours and the run ended normally)
        and the cluster this executor started."""
        self._kill(keep)
        if self.probe is not None:
            self.probe.unlink(missing_ok=True)
            self.probe = None
        if self.started and self.ray.is_initialized():
            shutdown_local(self.ray)
            self.started = False

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, exc_type, *exc_info: Any) -> None:
        self.close(keep=exc_type is None)  # Ctrl-C, an error: stop every actor

    # ---- one descriptor ---------------------------------------------------------------------
    def prefill(self, descriptor, spec, weights, benches, data, store: FeatureStore, context) -> FeatureStore:
        """Compute what ``benches`` need of ``descriptor`` on the cluster, into ``store``."""
        planning = PlanningStore(store, task_pickler(descriptor, data, (store, context)))
        quiet = type(context)(split=context.split, progress=False, log=context.log)
        for bench in benches:
            try:
                bench.features(descriptor, data, planning, quiet)
            except Exception as exc:  # noqa: BLE001 - the driver's serial step computes it (and reports)
                self.log(f"ray: cannot plan {bench.name} for {descriptor.describe()} ({exc}); computing it here")
        tasks = list(planning.tasks.values())
        if planning.local:
            self.log(f"ray: {len(planning.local)} item(s) of {descriptor.describe()} cannot be sent; computed here")
        if not tasks:
            return store
        job = Job(
            spec,
            str(descriptor.device),
            weights,
            plugin_of(type(descriptor)),
            store.key,
            data.name,
            self.data_dir,
            self._share(store.root),
            store.overwrite,
            self.token,
        )
        done = 0
        for task, result in self._results(job, tasks, f"ray {descriptor.describe()}"):
            if result is not None:
                store_result(store, task, result)
                done += 1
        self.tasks += len(tasks)
        self.remote_items += done
        self.driver_items += len(tasks) - done + len(planning.local)
        if store.overwrite and done == len(tasks) and not planning.local:
            return FeatureStore(store.root, store.key, overwrite=False, log=store.log)  # freshly computed
        return store

    def describe_items(self, descriptor, spec, weights, data, items) -> Iterator[tuple[str, dict]]:
        """``(item, compute)`` pairs computed on the cluster, yielded as they finish (``export``); an
        item the cluster could not compute is computed here."""
        pickler = task_pickler(descriptor, data)
        tasks = [Task(item, (), Extraction(), "", pickler(compute)) for item, compute in items]
        computes = dict(items)
        key = feature_key(descriptor, data.name, data.version, descriptor.device.type, _libraries())
        plugin = plugin_of(type(descriptor))
        job = Job(spec, str(descriptor.device), weights, plugin, key, data.name, self.data_dir, None)
        for task, result in self._results(job, tasks, f"ray {descriptor.describe()}"):
            self.tasks += 1
            if result is None:
                self.driver_items += 1
                yield task.item, computes[task.item]()
            else:
                self.remote_items += 1
                yield task.item, result.arrays

    def _results(self, job: Job, tasks: list, label: str) -> Iterator[tuple[Task, Result | None]]:
        """Run ``tasks`` on the pool, IN_FLIGHT per actor; yield each with its result (None: it failed,
        or was never sent because the descriptor kept failing or every worker died)."""
        ray = self.ray
        actors = list(self._pool(job.device))
        queue = list(reversed(tasks))
        running: dict = {}
        done, failures = 0, 0
        started = time.perf_counter()

        def submit(actor) -> None:
            task = queue.pop()
            ref = actor.run.options(retry_exceptions=True, max_task_retries=RETRIES).remote(job, task)
            running[ref] = (actor, task)

        for actor in actors:
            for _ in range(IN_FLIGHT):
                if queue:
                    submit(actor)
        with bar(total=len(tasks), desc=label, unit="task", enabled=self.progress) as progress:
            while running:
                ready, _ = ray.wait(list(running), num_returns=1)
                actor, task = running.pop(ready[0])
                try:
                    result = ray.get(ready[0])
                    self.worker_s += result.seconds
                    self.worker_cpu_s += result.cpu_seconds
                    done += 1
                except (ray.exceptions.RayError, DescBenchError, OSError) as exc:
                    result = None
                    failures += 1
                    if failures == 1:
                        self.log(f"ray: {task.item} failed after {RETRIES} retries; the driver computes it ({exc})")
                    if isinstance(exc, ray.exceptions.RayActorError):
                        actors = [a for a in actors if a is not actor]
                        actor = None
                    if failures >= 3:  # a failing descriptor: leave the rest to the driver (its error rows)
                        while queue:
                            yield queue.pop(), None
                progress.update(1)
                yield task, result
                if queue and actor is not None:
                    submit(actor)
                elif queue and not running and not actors:
                    break  # every actor is gone: the driver computes the rest
        while queue:
            yield queue.pop(), None
        elapsed = time.perf_counter() - started
        self.wall_s += elapsed
        self.log(f"ray: {label[4:]}: {done} of {len(tasks)} items on {len(self.actors)} workers in {elapsed:.1f} s")
