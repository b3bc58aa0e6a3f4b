"""Tests of the timing harness: statistics, config parsing, the measurement loop, memory probes,
CPU timing end to end (patches and dense images), the record schema, tables, the plot, and the
CUDA path (skipped without a GPU)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import pytest
import torch
import torch.nn.functional as F
from conftest import requires_cuda

from desc_bench.adapters.base import Descriptor
from desc_bench.api import save_timing
from desc_bench.bench import timing as T
from desc_bench.errors import InputError
from desc_bench.records.schema import Calibration, Record, TimingRow, machine_metadata
from desc_bench.records.store import read_record, write_record
from desc_bench.results.plots import plot_throughput

PATCH, DENSE, BROKEN = "test-timing-patch", "test-timing-dense", "test-timing-broken"


@pytest.fixture()
def test_descriptors():
    """Three tiny descriptors registered for one test, removed from the registry afterwards."""

    class PatchDesc(Descriptor):
        name = PATCH
        dim = 16
        calls = 0

        def describe_patches(self, prepared):
            type(self).calls += 1
            return F.adaptive_avg_pool2d(prepared, 4).flatten(1)

    class DenseDesc(Descriptor):
        name = DENSE
        dim = 8
        dense_stride = 4.0
        supports_fp16 = True
        seen: list = []

        def setup(self):
            self.kernel = torch.ones(8, 1, 4, 4, device=self.device) / 16

        def dense_map(self, images):
            type(self).seen.append((tuple(images.shape), float(images.min()), float(images.max())))
            return F.conv2d(images, self.kernel.to(images.dtype), stride=4)

    class BrokenDesc(Descriptor):
        name = BROKEN
        dim = 4

        def describe_patches(self, prepared):
            raise RuntimeError("boom")

    yield {PATCH: PatchDesc, DENSE: DenseDesc, BROKEN: BrokenDesc}
    for name in (PATCH, DENSE, BROKEN):
        Descriptor._registry.pop(name, None)


# ---- statistics and parsing -----------------------------------------------------------------
def test_summarize_odd_and_even_counts():
    s = T.summarize([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.median, s.q25, s.q75, s.iqr, s.count) == (3.0, 2.0, 4.0, 2.0, 5)
    s = T.summarize([4.0, 1.0, 3.0, 2.0])
    assert s.median == pytest.approx(2.5) and s.q25 == pytest.approx(1.75) and s.q75 == pytest.approx(3.25)
    assert T.median([7.0]) == 7.0 and T.iqr([7.0]) == 0.0
    assert T.iqr([1.0, 1.0, 1.0, 100.0]) == pytest.approx(24.75)  # an outlier moves the IQR, not the median
    assert T.median([1.0, 1.0, 1.0, 100.0]) == 1.0


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [float("inf")]])
def test_summarize_rejects_bad_samples(bad):
    with pytest.raises(InputError):
        T.summarize(bad)


def test_parsing_and_config_validation():
    assert T.ImageSize.parse("1024x436") == T.ImageSize(1024, 436)
    assert str(T.ImageSize.parse((640, 480))) == "640x480"
    assert T.parse_batch_sizes("1, 16,256") == (1, 16, 256)
    for bad in ("1024", "ax3", "4x4"):
        with pytest.raises(InputError):
            T.ImageSize.parse(bad)
    for bad in ("0,1", "", "a"):
        with pytest.raises(InputError):
            T.parse_batch_sizes(bad)
    config = T.TimingConfig(descriptors=["a,b", "c"], batch_sizes=[4, 2], image_size="64x48")
    assert config.descriptors == ("a", "b", "c")
    assert config.batch_sizes == (4, 2) and config.image_size == T.ImageSize(64, 48)
    with pytest.raises(InputError):
        T.TimingConfig(descriptors=("a",), repeats=0)
    with pytest.raises(InputError):
        T.TimingConfig(descriptors=())
    with pytest.raises(InputError):
        T.TimingConfig(descriptors=("a",), device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA"):
            T.TimingConfig(descriptors=("a",), device="cuda")


def test_random_inputs_are_fixed_integers_0_255():
    a, b = T.random_patches(8, 32, seed=3), T.random_patches(8, 32, seed=3)
    assert a.shape == (8, 1, 32, 32) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, T.random_patches(8, 32, seed=4))
    assert a.min() >= 0 and a.max() <= 255 and torch.equal(a, a.round())
    assert a.max() > 200 and a.min() < 50


# ---- measurement loop and environment -------------------------------------------------------
def test_measure_separates_first_call_and_counts_calls():
    calls = []

    def call(x):
        calls.append(1)
        time.sleep(0.03 if len(calls) == 1 else 0.002)
        return x

    m = T.measure(call, torch.zeros(1), "cpu", repeats=5, warmup=3)
    assert len(calls) == 3 + 5 and len(m.samples_ms) == 5
    assert m.first_ms >= 30.0
    assert 2.0 <= T.median(m.samples_ms) < 25.0  # the slow first call is not in the median
    assert m.transfer_samples_ms is None and m.threads == torch.get_num_threads()

    calls.clear()
    T.measure(call, torch.zeros(1), "cpu", repeats=2, warmup=0)
    assert len(calls) == 1 + 2  # the first call is always made and never timed into the median


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_peak_memory_sees_a_large_allocation():
    memory = T.PeakMemory(torch.device("cpu"))
    memory.start()
    big = torch.ones(40_000_000)  # 160 MB, touched
    del big
    peak = memory.peak_mb()
    assert peak is not None and peak >= 120.0
    memory.start()
    small = torch.ones(1000)
    assert memory.peak_mb() < 50.0
    del small


def test_threads_and_tf32_are_restored():
    torch_before, cv_before = torch.get_num_threads(), cv2.getNumThreads()
    with T.pinned_threads(1) as inside:
        assert inside == 1 and torch.get_num_threads() == 1 and cv2.getNumThreads() == 1
    assert torch.get_num_threads() == torch_before and cv2.getNumThreads() == cv_before
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with T.tf32_mode(False):
        assert not torch.backends.cudnn.allow_tf32 and not torch.backends.cuda.matmul.allow_tf32
    with T.tf32_mode(True):
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before


# ---- CPU timing end to end ------------------------------------------------------------------
def test_time_patches_row(test_descriptors):
    cls = test_descriptors[PATCH]
    desc = cls()
    cls.calls = 0
    row = T.time_patches(desc, batch_size=8, patch_size=32, repeats=4, warmup=2)
    assert cls.calls == 2 + 4
    assert (row.descriptor, row.unit, row.input_size, row.batch, row.device) == (PATCH, "patch", "32", 8, "cpu")
    assert row.error is None and row.median_ms > 0 and row.iqr_ms >= 0 and row.first_call_ms > 0
    assert row.per_second == pytest.approx(1000.0 / row.median_ms, rel=1e-9)
    assert row.peak_memory_mb is None or row.peak_memory_mb >= 0
    assert row.median_ms_with_transfer is None and row.repeats == 4 and not row.fp16
    assert row.threads == torch.get_num_threads()
    with pytest.raises(InputError, match="fp16"):
        T.time_patches(desc, batch_size=2, fp16=True)
    with pytest.raises(InputError, match="dense_map"):
        T.time_images(desc, 1, "64x48")


def test_time_images_uses_prepared_dense_inputs(test_descriptors):
    cls = test_descriptors[DENSE]
    cls.seen.clear()
    row = T.time_images(cls(), batch_size=2, image_size="64x48", repeats=3, warmup=1)
    assert (row.unit, row.input_size, row.batch) == ("image", "64x48", 2)
    assert row.error is None and row.median_ms > 0
    assert len(cls.seen) == 1 + 3
    shape, low, high = cls.seen[0]
    assert shape == (2, 1, 48, 64) and 0 <= low < 20 and 235 < high <= 255
    fp16 = T.time_images(cls(), batch_size=1, image_size="32x32", repeats=2, fp16=True)
    assert fp16.fp16 and fp16.error is None


def test_time_descriptors_record(test_descriptors, tmp_path):
    threads_before = torch.get_num_threads()
    config = T.TimingConfig(
        descriptors=(PATCH, BROKEN, "no-such-descriptor"),
        batch_sizes=(1, 4),
        patch_size=32,
        threads=1,
        repeats=3,
        warmup=1,
    )
    record = T.time_descriptors(config, progress=False)
    assert torch.get_num_threads() == threads_before
    assert [(r.descriptor, r.batch) for r in record.timings] == [
        (PATCH, 1),
        (PATCH, 4),
        (BROKEN, 1),
        (BROKEN, 4),
        ("no-such-descriptor", 1),
        ("no-such-descriptor", 4),
    ]
    good, broken, unknown = record.timings[:2], record.timings[2:4], record.timings[4:]
    assert all(r.error is None and r.median_ms > 0 and r.threads == 1 for r in good)
    assert all("boom" in r.error and r.median_ms is None for r in broken)
    assert all("cannot build" in r.error and "no-such-descriptor" in r.error for r in unknown)
    assert record.metadata["threads"] == 1 and record.metadata["command"] == "time"
    assert record.metadata["timing_config"]["batch_sizes"] == [1, 4]
    assert record.calibration is not None and record.calibration.median_ms > 0
    assert "cpu" in record.calibration.name and "threads=1" in record.calibration.name

    path = write_record(tmp_path / "timing.json", record)
    again = read_record(path)
    assert again.timings == record.timings and again.calibration == record.calibration
    raw = json.loads(path.read_text())
    assert set(raw["timings"][0]) == set(TimingRow.__dataclass_fields__)


def test_time_descriptors_dense_and_fp16_rows(test_descriptors):
    config = T.TimingConfig(
        descriptors=(DENSE, PATCH),
        batch_sizes=(1, 2),
        image_size="64x48",
        fp16=True,
        repeats=2,
        warmup=1,
        calibrate=False,
    )
    record = T.time_descriptors(config, progress=False)
    dense, patch = record.timings[:2], record.timings[2:]
    assert all(r.unit == "image" and r.error is None and r.fp16 for r in dense)
    assert all("dense_map" in r.error for r in patch)
    assert record.calibration is None
    table = T.dense_table(record.timings)
    assert DENSE in table and "GPU ms with transfer" in table and PATCH not in table


def test_sift_opencv_end_to_end():
    from desc_bench.adapters.registry import registered

    if "sift-opencv" not in registered():
        pytest.skip("sift-opencv is not registered yet")
    config = T.TimingConfig(descriptors=("sift-opencv",), batch_sizes=(2,), repeats=2, warmup=1, calibrate=False)
    (row,) = T.time_descriptors(config, progress=False).timings
    assert row.error is None and row.median_ms > 0 and row.unit == "patch" and row.input_size == "65"


# ---- tables, plots, outputs -----------------------------------------------------------------
def _row(name, batch, ms, device="cpu", unit="patch", error=None, **kw):
    return TimingRow(
        descriptor=name,
        weights="none",
        device=device,
        batch=batch,
        input_size="65",
        unit=unit,
        median_ms=ms,
        iqr_ms=None if ms is None else ms / 10,
        per_second=None if ms is None else 1000 / ms,
        peak_memory_mb=None if ms is None else 1.5,
        error=error,
        **kw,
    )


def test_tables():
    rows = [_row("a", 1, 2.0), _row("a", 16, 0.5), _row("b", 1, None, error="cannot build: x")]
    table = T.timing_table(rows)
    lines = table.splitlines()
    assert len(lines) == 2 + 3 and "ms/unit median" in lines[0]
    assert "cannot build: x" in lines[-1] and "| 500 " in lines[2] and "| 2000 " in lines[3]
    gpu = _row("flow", 1, 19.0, device="cuda", unit="image", median_ms_with_transfer=128.0)
    cpu = _row("flow", 1, 661.0, unit="image")
    dense = T.dense_table([gpu, cpu])
    assert [c.strip() for c in dense.splitlines()[2].split("|")[5:9]] == ["1.5", "19", "128", "661"]


def test_plot_throughput_png(tmp_path):
    import matplotlib

    backend = matplotlib.get_backend()
    rows = [_row("a", b, 1.0 / b) for b in (1, 16, 256)] + [_row("b", b, 0.5) for b in (1, 16, 256)]
    rows += [_row("c", 1, None, error="x"), _row("d", 2, 3.0, unit="image")]
    out = plot_throughput(rows, tmp_path / "plots" / "throughput.png")
    data = out.read_bytes()
    assert out == tmp_path / "plots" / "throughput.png" and data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 10_000
    assert [p.name for p in out.parent.iterdir()] == ["throughput.png"]  # no temporary left behind
    assert matplotlib.get_backend() == backend
    empty = plot_throughput([_row("c", 1, None, error="x")], tmp_path / "empty.png")
    assert empty.read_bytes()[:4] == b"\x89PNG"


def test_save_timing_and_normalised_time(tmp_path):
    record = Record(
        metadata=machine_metadata(), timings=[_row("a", 1, 2.0), _row("a", 4, 1.0)], calibration=Calibration("ref", 4.0)
    )
    out = save_timing(record, tmp_path / "out")
    assert read_record(out.record).timings == record.timings
    text = out.table.read_text()
    assert "| a " in text and "Calibration: ref: 4.00 ms" in text
    assert out.plot.read_bytes()[:4] == b"\x89PNG"
    assert T.normalised_time(record.timings[0], record.calibration) == pytest.approx(0.5)
    assert T.normalised_time(_row("b", 1, None, error="x"), record.calibration) is None


def test_calibration_is_short_and_named():
    start = time.perf_counter()
    cal = T.calibrate("cpu", repeats=3)
    assert time.perf_counter() - start < 20.0
    assert cal.median_ms > 0 and cal.name.startswith(T.CALIBRATION_NAME)


# ---- CUDA -----------------------------------------------------------------------------------
@requires_cuda()
def test_cuda_patch_and_dense_timing(test_descriptors):
    patch = T.time_patches(test_descriptors[PATCH](device="cuda"), batch_size=64, repeats=3, warmup=2)
    assert patch.device.startswith("cuda") and patch.error is None and patch.median_ms > 0
    assert patch.median_ms_with_transfer >= patch.median_ms
    assert patch.peak_memory_mb > 0
    dense = T.time_images(
        test_descriptors[DENSE](device="cuda"), batch_size=2, image_size="256x128", repeats=3, fp16=True
    )
    assert dense.error is None and dense.median_ms_with_transfer >= dense.median_ms and dense.fp16
    config = T.TimingConfig(descriptors=(PATCH,), device="cuda", batch_sizes=(1, 16), repeats=2)
    before = torch.backends.cudnn.allow_tf32
    record = T.time_descriptors(config, progress=False)
    assert torch.backends.cudnn.allow_tf32 == before
    assert all(r.error is None and r.median_ms_with_transfer is not None for r in record.timings)
    assert "cuda" in record.calibration.name and record.metadata.get("gpu")


def test_random_weights_are_marked_timing_only():
    record = T.time_descriptors(
        T.TimingConfig(
            descriptors=("hardnet",), batch_sizes=(4,), repeats=2, warmup=1, random_weights=True, calibrate=False
        ),
        progress=False,
    )
    (row,) = record.timings
    assert row.error is None and row.random_weights and row.weights == "random"
    assert "random weights, timing only" in T.timing_table(record.timings)
