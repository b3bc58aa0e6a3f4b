"""Accuracy against speed: the Pareto front from one record's headline and timing rows."""

from __future__ import annotations

from desc_bench.records.schema import Record, ResultRow, TimingRow, machine_metadata
from desc_bench.records.store import write_record
from desc_bench.results.pareto import Point, mark_front, panels
from desc_bench.results.report import build_report


def test_front_keeps_exactly_the_undominated_points():
    pts = [Point("slow-best", 0.6, 100), Point("fast-worst", 0.3, 5000), Point("middle", 0.5, 1000)]
    pts += [Point("dominated", 0.4, 500), Point("tie-slower", 0.5, 900)]
    front = {p.descriptor for p in mark_front(pts) if p.front}
    assert front == {"slow-best", "fast-worst", "middle"}
    lower = {p.descriptor for p in mark_front([Point("a", 0.02, 100), Point("b", 0.05, 50)], True) if p.front}
    assert lower == {"a"}


def _record(timed=("a", "b", "c")):
    values = {"a": 0.30, "b": 0.50, "c": 0.20}
    speed = {"a": 4000.0, "b": 1000.0, "c": 2000.0}  # c is slower and worse than a: off the front
    rows = [
        ResultRow(d, "none", "hpatches-synth", "full", "python", "matching", "map", v, "mean", "all", "")
        for d, v in values.items()
    ]
    timings = [TimingRow(d, "none", "cpu", 256, "65", "patch", 1000 / speed[d], 0.01, speed[d], 10.0) for d in timed]
    return Record(machine_metadata("cpu", config={"time_batch": 256}), rows, timings)


def test_panels_join_headline_and_speed_of_the_same_record_only():
    [panel] = panels([_record()])
    assert (panel.benchmark, panel.headline, panel.batch, panel.device) == ("python", "matching mAP", 256, "cpu")
    assert {p.descriptor: p.front for p in panel.points} == {"a": True, "b": True, "c": False}
    [panel] = panels([_record(timed=("a", "b"))])  # c has no timing row: left out
    assert {p.descriptor for p in panel.points} == {"a", "b"}
    assert panels([_record(timed=("a",))]) == []  # one point is no trade-off

    # two settings of one descriptor (pck-msnet matchers) are two points, not one overwritten
    rows = [
        ResultRow("a", "none", "d", "all", "pck-msnet", "pck", "pck@3", v, "", "all", f"det=harris:matcher={m}")
        for v, m in ((0.6, "exact"), (0.55, "flann"))
    ]
    rows.append(ResultRow("b", "none", "d", "all", "pck-msnet", "pck", "pck@3", 0.5, "", "all", "det=harris"))
    timings = [TimingRow(d, "none", "cpu", 1, "640x480", "image", 50.0, 1.0, 20.0, 10.0) for d in "ab"]
    [panel] = panels([Record(machine_metadata("cpu", config={"time_batch": 256}), rows, timings)])
    assert {p.descriptor for p in panel.points} >= {"a (det=harris:matcher=exact)", "a (det=harris:matcher=flann)"}


def test_report_has_the_pareto_plot_and_front_table(tmp_path):
    write_record(tmp_path / "run.json", _record())
    written = build_report([tmp_path / "run.json"], tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    assert tmp_path / "out" / "pareto.png" in written and "![Accuracy against speed](pareto.png)" in text
    table = text.split("## Accuracy against speed")[1].split("\n\n")[1]
    assert "| a " in table and "| b " in table and "| c " not in table and "4,000" in table


def test_an_image_benchmark_is_timed_per_image_and_its_report_has_the_front(seq_synth_data, tmp_path):
    import desc_bench
    from desc_bench.bench.benchmarks.base import benchmark
    from desc_bench.bench.runner import RunConfig, _timings
    from desc_bench.datasets.registry import open_dataset

    data = open_dataset("hpatches-seq-synth", data_dir=seq_synth_data, progress=False)
    config = RunConfig(descriptors=("sift-opencv", "sift-torch-vlfeat"), time_batch=256)
    mma, python = benchmark("mma"), benchmark("python")
    timings = [t for name in config.descriptors for t in _timings(desc_bench.descriptor(name), [mma], data, config)]
    assert [t.descriptor for t in timings] == list(config.descriptors)
    for t in timings:  # one dataset image described at the benchmark's frames, batch 1
        assert t.unit == "image" and t.batch == 1 and t.error is None and t.per_second > 0
        assert t.input_size.startswith("480x360 dog 1000 (") and t.input_size.endswith(" kp)")
    sift = desc_bench.descriptor("sift-opencv")
    assert [t.unit for t in _timings(sift, [python, mma], data, RunConfig(descriptors=("sift-opencv",)))] == [
        "patch",
        "image",
    ]
    assert _timings(sift, [mma], data, RunConfig(descriptors=("sift-opencv",), time_batch=0)) == []

    rows = [
        ResultRow(d, "none", data.name, "all", "mma", "mma", "mma@3", v, "", "all", "det=dog:budget=1000")
        for d, v in zip(config.descriptors, (0.8, 0.9))
    ]
    [panel] = panels([Record(machine_metadata("cpu", config={"time_batch": 256}), rows, timings)])
    assert (panel.benchmark, panel.unit) == ("mma", "image") and any(p.front for p in panel.points)
    write_record(tmp_path / "run.json", Record(machine_metadata("cpu", config={"time_batch": 256}), rows, timings))
    build_report([tmp_path / "run.json"], tmp_path / "out")
    assert "one image a call" in (tmp_path / "out" / "report.md").read_text().split("## Accuracy against speed")[1]
