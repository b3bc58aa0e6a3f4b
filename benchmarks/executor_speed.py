"""Serial vs Ray: the same multi-descriptor hpatches-synth run, in one process and on a local Ray
cluster of 2 workers with 1 torch/OpenCV thread each (``--executor ray --workers 2``).

Both runs are end to end (`desc_bench.bench.runner.run`: planning, description, evaluation on the
driver, the record), each with an empty feature store of its own, and must give identical result
rows. The serial run is given 1 torch and 1 OpenCV thread too, so the ratio is what 2 single-threaded
workers buy over one. Printed:

- serial time, Ray time with cold workers (actors started and their imports paid inside the run)
  and with warm workers (a second run in the same Ray session: the actors are kept), and the ratio
  serial / Ray (target: >= 1.5x on 2 cores for single-threaded OpenCV descriptors);
- the task overhead per item: (task-phase wall time x workers - the workers' own time on the tasks)
  / tasks, i.e. what dispatch, pickling, result transfer and idle workers cost per item;
- the Ray cluster's start-up time (not in either run: a cluster is started once, or joined);
- CPU times (serial process; Ray driver and workers) and the *CPU-bound ratio* they imply,
  serial CPU / (worker CPU / workers + driver CPU): what a quiet machine gives without start-up. On a
  shared, overloaded machine the wall-clock ratio is capped by the CPU share the run gets, not by Ray.

    python benchmarks/executor_speed.py [--descriptors sift-opencv,rootsift-opencv]
                                        [--dataset hpatches-synth] [--also brown-synth]

The largest embedded dataset of issue 13 (``brown-synth``) is timed too when it is registered.
"""

from __future__ import annotations

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path


def timed_run(config, cache: Path):
    """Wall time, this process's CPU time, and the result of one run with an empty store at ``cache``."""
    from desc_bench.bench.runner import run

    os.environ["DESC_BENCH_CACHE"] = str(cache)
    started, cpu = time.perf_counter(), time.process_time()
    result = run(config)
    return time.perf_counter() - started, time.process_time() - cpu, result


def compare(dataset: str, descriptors: tuple[str, ...], workers: int, scratch: Path) -> None:
    from desc_bench.bench.runner import RunConfig
    from desc_bench.datasets.registry import open_dataset

    open_dataset(dataset, progress=False)  # generate an embedded set before any timing
    base = dict(descriptors=descriptors, dataset=dataset, output=None, time_batch=0, progress=False)
    serial_s, serial_cpu, serial = timed_run(RunConfig(**base), scratch / f"{dataset}-serial")
    print(f"{dataset} serial: {serial_s:.1f} s wall, {serial_cpu:.1f} s CPU ({len(serial.record.results)} rows)")
    times = {}
    for phase in ("cold", "warm"):
        config = RunConfig(**base, executor="ray", workers=workers)
        times[phase], driver_cpu, result = timed_run(config, scratch / f"{dataset}-ray-{phase}")
        assert result.record.results == serial.record.results, "the Ray record differs from the serial one"
        meta = result.record.metadata["executor"]
        n, tasks = meta["workers"], max(1, meta["tasks"])
        overhead = (meta["task_wall_s"] * n - meta["task_worker_s"]) / tasks
        cpu_bound = serial_cpu / (meta["task_worker_cpu_s"] / n + driver_cpu)
        print(
            f"{dataset} ray ({phase} workers): {times[phase]:.1f} s wall, {meta['tasks']} tasks on {n} workers x "
            f"{meta['threads_per_worker']} thread; task phase {meta['task_wall_s']:.1f} s wall, workers "
            f"{meta['task_worker_s']:.1f} s on tasks ({meta['task_worker_cpu_s']:.1f} s CPU), driver {driver_cpu:.1f} "
            f"s CPU; task overhead {overhead * 1000:.0f} ms per item; ratio {serial_s / times[phase]:.2f}x wall "
            f"(target >= 1.5x), {cpu_bound:.2f}x CPU-bound"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--descriptors", default="sift-opencv,rootsift-opencv")
    parser.add_argument("--dataset", default="hpatches-synth")
    parser.add_argument("--also", default="brown-synth", help="another embedded dataset to time, when registered")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import cv2
    import ray
    import torch

    from desc_bench.bench.executors.ray_executor import LOCAL, shutdown_local, worker_environment
    from desc_bench.datasets.registry import dataset_sources

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    started = time.perf_counter()
    with worker_environment():  # as --executor ray starts a local cluster
        ray.init(
            num_cpus=args.workers,
            include_dashboard=False,
            logging_level=logging.WARNING,
            _system_config=LOCAL,  # workers at the driver's priority, as --executor ray starts them
        )
    print(f"ray start-up ({args.workers} CPUs, local): {time.perf_counter() - started:.1f} s (in neither run)")
    descriptors = tuple(d.strip() for d in args.descriptors.split(",") if d.strip())
    with tempfile.TemporaryDirectory(prefix="executor-speed-") as scratch:
        compare(args.dataset, descriptors, args.workers, Path(scratch))
        if args.also and args.also in dataset_sources():
            compare(args.also, descriptors, args.workers, Path(scratch))
        elif args.also:
            print(f"{args.also}: not registered here; skipped")
    shutdown_local(ray)


if __name__ == "__main__":
    main()
