"""`--executor ray` in Ray local mode (one cluster of 2 CPUs for the module): the record equals the
serial record on a patch dataset and on an image-pair dataset; a task that raises once and a worker
killed mid-run are retried and change nothing; stored items are never computed again."""

from __future__ import annotations

import logging
import os
import shutil
import textwrap

import pytest

from desc_bench.adapters.registry import load_plugins
from desc_bench.bench.runner import RunConfig, run

ray = pytest.importorskip("ray", reason="needs Ray (pip install 'desc-bench[ray]')")

# The fewest resamples the intervals take: records are still compared with their intervals, and the
# driver's evaluations (three of a run in the first test) cost a tenth of the default 1000's bootstrap.
CI = 100


@pytest.fixture(scope="module", autouse=True)
def cluster():
    from desc_bench.bench.executors.ray_executor import LOCAL, shutdown_local, worker_environment

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # CI has no internet: no usage report
    with worker_environment():  # the workers Ray starts ahead (one per CPU) can then serve the actors
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=100 * 1024**2,
            _system_config={**LOCAL, "enable_worker_prestart": False},  # no more workers started ahead for tasks
            logging_level=logging.WARNING,
        )
    yield
    shutdown_local(ray)


FLAKY = '''
import os
from pathlib import Path

import torch

from desc_bench.adapters.base import Descriptor

MARKS = Path({marks!r})


class Flaky(Descriptor):
    """Mean and spread of each patch; the first call in the cluster raises, the second kills its worker."""

    name = "test-flaky"
    dim = 2

    def describe_patches(self, prepared):
        MARKS.mkdir(exist_ok=True)
        if not (MARKS / "raised").exists():
            (MARKS / "raised").touch()
            raise RuntimeError("a transient failure")
        if not (MARKS / "killed").exists():
            (MARKS / "killed").touch()
            os._exit(1)
        flat = prepared.flatten(1)
        return torch.stack([flat.mean(1), flat.std(1)], 1)
'''


def _both(monkeypatch, tmp_path, **options):
    """The same run serially and on Ray, each with its own (empty) cache; returns both results."""
    out = {}
    for executor in ("ray", "serial"):  # Ray first: the flaky descriptor fails there, not serially
        monkeypatch.setenv("DESC_BENCH_CACHE", str(tmp_path / f"cache-{executor}"))
        config = RunConfig(output=None, time_batch=0, progress=False, executor=executor, **options)
        out[executor] = run(config)
    return out["serial"], out["ray"]


def test_patch_dataset_same_record_despite_failures(tiny_hpatches_factory, tmp_path, monkeypatch):
    plugin = tmp_path / "flaky.py"
    plugin.write_text(textwrap.dedent(FLAKY.format(marks=str(tmp_path / "marks"))))
    load_plugins([str(plugin)])
    options = dict(
        descriptors=("sift-opencv", "test-flaky"), dataset="hpatches", data_dir=tiny_hpatches_factory(), ci_resamples=CI
    )
    serial, distributed = _both(monkeypatch, tmp_path, **options)
    assert (tmp_path / "marks" / "raised").exists() and (tmp_path / "marks" / "killed").exists()
    assert not serial.unmeasured and not distributed.unmeasured
    assert distributed.record.results == serial.record.results
    assert all(r.error is None for r in distributed.record.results)
    assert any(r.interval for r in serial.record.results)  # compared with their intervals
    meta = distributed.record.metadata["executor"]
    assert meta["name"] == "ray" and meta["nodes"] == 1 and meta["cpus"] == 2 and meta["gpus"] == 0
    assert meta["tasks"] == meta["remote_items"] == 8 and meta["driver_items"] == 0  # 4 test sequences x 2
    assert "executor" not in serial.record.metadata
    assert {k: v for k, v in serial.record.metadata["config"].items() if k != "executor"} == {
        k: v for k, v in distributed.record.metadata["config"].items() if k != "executor"
    }

    # resumed: every item is stored, so nothing is planned and no worker is started
    monkeypatch.setenv("DESC_BENCH_CACHE", str(tmp_path / "cache-ray"))
    again = run(RunConfig(output=None, time_batch=0, progress=False, executor="ray", re_eval=True, **options))
    assert again.record.results == serial.record.results
    assert again.record.metadata["executor"]["tasks"] == 0


def test_image_pair_dataset_same_record(tmp_path, monkeypatch):
    from desc_bench.datasets.synth.seq_synth import SYNTH_SOURCES, generate_sequence
    from desc_bench.datasets.synth.writers import write_image_sequence

    data = tmp_path / "data"
    source = SYNTH_SOURCES[4]  # a viewpoint sequence: 6 images, 5 pairs
    write_image_sequence(data / "hpatches-sequences-release" / source.sequence, *generate_sequence(source))
    options = dict(descriptors=("sift-opencv",), dataset="hpatches-seq", data_dir=data, budget=300, ci_resamples=CI)
    serial, distributed = _both(monkeypatch, tmp_path, protocol="mma,pck-gift", **options)
    assert distributed.record.results == serial.record.results
    assert any(r.value for r in serial.record.results if r.metric.startswith("mma"))
    meta = distributed.record.metadata["executor"]
    assert meta["tasks"] == meta["remote_items"] == 12  # 6 images, at full size (mma) and at 480 (pck-gift)
    shutil.rmtree(tmp_path / "cache-serial")  # the store the Ray run wrote serves a serial run unchanged
    monkeypatch.setenv("DESC_BENCH_CACHE", str(tmp_path / "cache-ray"))
    config = RunConfig(output=None, time_batch=0, progress=False, protocol="mma,pck-gift", re_eval=True, **options)
    assert run(config).record.results == serial.record.results


def test_export_on_ray_writes_the_serial_files(tiny_hpatches_factory, tmp_path):
    from click.testing import CliRunner

    from desc_bench.cli import main

    args = ["export", "-d", "sift-opencv", "--dataset", "hpatches", "--data-dir", str(tiny_hpatches_factory()), "-q"]
    for executor in ("serial", "ray"):
        result = CliRunner().invoke(main, [*args, "-o", str(tmp_path / executor), "--executor", executor])
        assert result.exit_code == 0, result.output
    files = sorted(p.relative_to(tmp_path / "serial") for p in (tmp_path / "serial").rglob("*.csv"))
    assert len(files) == 4 * 16
    for name in files:
        assert (tmp_path / "ray" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes()
