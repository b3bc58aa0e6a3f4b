"""Executors without a cluster: option checks and the one-line error without Ray, planning (missing
items become tasks once; stored ones never), the worker body run in-process, and results returned
to the driver written into the same store a serial run reads."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from click.testing import CliRunner

from desc_bench.adapters.registry import descriptor
from desc_bench.bench.benchmarks.base import Context, benchmark
from desc_bench.bench.executors import RAY_MISSING, check_executor
from desc_bench.bench.executors.tasks import Job, PlanningStore, TaskWorker, plugin_of, store_result, task_pickler
from desc_bench.bench.features import FeatureStore, feature_key
from desc_bench.cli import main
from desc_bench.datasets.registry import open_dataset
from desc_bench.errors import InputError


@pytest.mark.parametrize(
    "args, message",
    [
        (("fast", None, None), "unknown executor 'fast'"),
        (("serial", "auto", None), "--address applies to --executor ray"),
        (("serial", None, 2), "--workers applies to --executor ray"),
        (("ray", None, 0), "--workers must be at least 1"),
        (("ray", " ", None), "--address is empty"),
    ],
)
def test_bad_executor_options(args, message):
    with pytest.raises(InputError, match=message):
        check_executor(*args)


def test_without_ray_one_line_and_exit_2(monkeypatch, data_dir):
    monkeypatch.setitem(sys.modules, "ray", None)  # find_spec("ray") -> None: as if not installed
    result = CliRunner().invoke(main, ["run", "-d", "sift-opencv", "--executor", "ray", "-q"])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {RAY_MISSING}"
    env = CliRunner().invoke(main, ["run", "-d", "sift-opencv", "-q"], env={"DESC_BENCH_EXECUTOR": "ray"})
    assert env.exit_code == 2 and "pip install 'desc-bench[ray]'" in env.output


def test_cli_refuses_ray_options_on_the_serial_executor(data_dir):
    result = CliRunner().invoke(main, ["run", "-d", "sift-opencv", "--workers", "2", "-q"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --workers applies to --executor ray; this run uses the serial executor"
    help_text = CliRunner().invoke(main, ["run", "--help"]).output
    assert "--executor [serial|ray]" in help_text and "--address" in help_text and "DESC_BENCH_EXECUTOR" in help_text


@pytest.fixture()
def tiny(tiny_hpatches_factory, tmp_path):
    data = open_dataset("hpatches", data_dir=tiny_hpatches_factory(), progress=False)
    desc = descriptor("sift-opencv")
    key = feature_key(desc, data.name, data.version, "cpu")
    return data, desc, FeatureStore(tmp_path / "cache", key)


def _plan(data, desc, store, benches=("python", "matlab")):
    context = Context(progress=False)
    planning = PlanningStore(store, task_pickler(desc, data, (store, context)))
    for name in benches:
        benchmark(name).features(desc, data, planning, context)
    return planning


def test_planning_calls_no_descriptor_and_dedupes(tiny, monkeypatch):
    data, desc, store = tiny
    monkeypatch.setattr(type(desc), "compute_patches", lambda *a: pytest.fail("planning called the descriptor"))
    planning = _plan(data, desc, store)
    tests = data.split("full").test
    assert [t.item for t in planning.tasks.values()] == list(tests)  # two benchmarks, one task per sequence
    assert not planning.local
    assert max(len(t.payload) for t in planning.tasks.values()) < 4000  # references, not the dataset or network


def test_worker_result_returned_to_the_driver_is_the_serial_result(tiny, tmp_path):
    data, desc, store = tiny
    tasks = list(_plan(data, desc, store).tasks.values())
    job = Job("sift-opencv", "cpu", None, None, store.key, "hpatches", str(data.root.parents[1]), None)
    worker = TaskWorker(threads=1)
    for task in tasks:
        result = worker.run(job, task)
        assert result.arrays is not None  # no shared cache given: returned, not written
        store_result(store, task, result)
    assert _plan(data, desc, store).tasks == {}  # every item is stored now: nothing is planned again
    serial = FeatureStore(tmp_path / "serial", store.key)
    context = Context(progress=False)
    expected = benchmark("python").features(desc, data, serial, context)
    reader = FeatureStore(store.root, store.key)
    got = benchmark("python").features(desc, data, reader, context)
    assert reader.computed == 0 and serial.computed == len(tasks)
    for seq, arrays in expected.items():
        for kind, values in arrays.items():
            np.testing.assert_array_equal(got[seq][kind], values)


def test_worker_refuses_another_feature_key(tiny):
    data, desc, store = tiny
    task = next(iter(_plan(data, desc, store).tasks.values()))
    other = feature_key(desc, data.name, data.version, "cpu", ("another-torch",))
    job = Job("sift-opencv", "cpu", None, None, other, "hpatches", str(data.root.parents[1]), None)
    with pytest.raises(Exception, match="install the same desc-bench, torch and OpenCV on every node"):
        TaskWorker().run(job, task)


def test_plugin_of():
    assert plugin_of(type(descriptor("sift-opencv"))) is None
