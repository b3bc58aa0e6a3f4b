"""Where the descriptors run: in this process (``serial``, the default) or on a Ray cluster (``ray``).

The runner is the same loop for both. Before a descriptor is evaluated, an executor may *prefill*
the feature store with what that descriptor's benchmarks will ask for; evaluation then runs on the
driver exactly as a serial run (every item loads from the store), so the record is the serial
record apart from the metadata naming the executor and the cluster. The serial executor prefills
nothing: a serial run is today's run, unchanged.

The Ray executor (:mod:`.ray_executor`) splits the work into tasks of (descriptor, item) found by
running the benchmark's ``features`` step against a planning store (:mod:`.tasks`), and runs them
on one actor per worker that builds each descriptor once. Ray is an optional dependency
(``pip install 'desc-bench[ray]'``): asking for it without it installed is a one-line user error.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ...errors import InputError

EXECUTORS = ("serial", "ray")
RAY_MISSING = (
    "--executor ray needs Ray, which is not installed; install it with `pip install 'desc-bench[ray]'` "
    "(or `pip install ray`), or run with --executor serial"
)


@dataclass(frozen=True)
class ExecutorConfig:
    """How ``desc-bench run`` distributes its work (``--executor``, ``--address``, ``--workers``)."""

    name: str = "serial"
    address: str | None = None  # Ray: None starts a local cluster; "auto" or HOST:PORT joins one
    workers: int | None = None  # Ray: actors per descriptor; None: one per CPU (per GPU for CUDA)


def check_executor(name: str, address: str | None, workers: int | None) -> None:
    """Refuse an unknown executor, options that do not apply, and Ray when it is not installed."""
    if name not in EXECUTORS:
        valid = ", ".join(EXECUTORS)
        raise InputError(f"unknown executor {name!r} (--executor or DESC_BENCH_EXECUTOR); valid: {valid}")
    if name == "serial":
        for flag, value in (("--address", address), ("--workers", workers)):
            if value is not None:
                raise InputError(f"{flag} applies to --executor ray; this run uses the serial executor")
        return
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    if address is not None and not address.strip():
        raise InputError("--address is empty; give auto, HOST:PORT of a Ray head node, or leave it out")
    if importlib.util.find_spec("ray") is None:
        raise InputError(RAY_MISSING)


class Executor:
    """The serial executor, and the interface of the others (a context manager around a run)."""

    name = "serial"
    distributes = False  # True: the runner calls ``prefill`` before evaluating each descriptor

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Release what the executor started (a local cluster, its actors); also on Ctrl-C."""

    def prefill(
        self, descriptor: Any, spec: str, weights: str | None, benches: list, data: Any, store: Any, context: Any
    ) -> Any:
        """Compute what ``benches`` need of ``descriptor`` (built from ``spec`` with ``weights``) into
        ``store``; return the store the driver evaluates with (what could not be computed here, the
        driver computes)."""
        return store

    def describe_items(
        self, descriptor: Any, spec: str, weights: str | None, data: Any, items: list[tuple[str, Callable[[], Any]]]
    ) -> Iterator[tuple[str, Any]]:
        """Each ``(item, compute)`` as ``(item, compute())``, in any order (``desc-bench export``)."""
        for item, compute in items:
            yield item, compute()

    def metadata(self) -> dict[str, Any]:
        """What the record's metadata says about the executor and its cluster ({} when serial)."""
        return {}


def open_executor(config: ExecutorConfig, data_dir=None, log=lambda _: None, progress: bool = True) -> Executor:
    """The executor a run asked for (``check_executor`` has accepted it); ``data_dir``: the run's."""
    if config.name == "serial":
        return Executor()
    from .ray_executor import RayExecutor

    return RayExecutor(config, data_dir=data_dir, log=log, progress=progress)
