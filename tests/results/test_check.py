"""`desc-bench check` cannot be bypassed: tolerances, timings, value ranges and schema versions.

Each case was a bypass before: ``--accuracy-tolerance nan`` passed a 5-point drop, negative
tolerances were accepted, NaN or negative timings passed, an AP of 5.0 counted as "better", and a
record of an unknown schema version was read (by ``check`` and by ``report``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_report import make_record  # tests/results is on sys.path (pytest rootdir-less prepend import)

from desc_bench.cli import main
from desc_bench.errors import DescBenchError, RecordError
from desc_bench.records.schema import validate
from desc_bench.records.store import read_record, write_record
from desc_bench.results.regression import Status, compare


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture()
def baseline(tmp_path) -> Path:
    return write_record(tmp_path / "baseline.json", make_record())


def write_raw(path: Path, raw: dict) -> Path:
    path.write_text(json.dumps(raw))  # json writes NaN as NaN, as a careless writer would
    return path


@pytest.mark.parametrize(
    "option, value",
    [
        ("--accuracy-tolerance", "nan"),
        ("--accuracy-tolerance", "-0.01"),
        ("--accuracy-tolerance", "inf"),
        ("--accuracy-tolerance", "1.5"),
        ("--speed-tolerance", "nan"),
        ("--speed-tolerance", "-0.5"),
    ],
)
def test_bad_tolerances_are_refused(baseline, tmp_path, option, value):
    current = write_record(tmp_path / "current.json", make_record(shift=-0.05))  # 5 points worse
    result = cli("check", "--baseline", str(baseline), str(current), option, value)
    assert result.exit_code == 2, result.output
    assert f"{option} must be a finite number" in result.output and "Traceback" not in result.output


def test_compare_refuses_bad_tolerances_too():
    from desc_bench.results.regression import ToleranceError

    for kwargs in ({"accuracy_tolerance": math.nan}, {"accuracy_tolerance": -1e-3}, {"speed_tolerance": math.nan}):
        with pytest.raises(ToleranceError):
            compare([make_record()], [make_record(shift=-0.05)], **kwargs)
    assert isinstance(ToleranceError("x"), DescBenchError)


def timing_raw(**changes) -> dict:
    raw = make_record().to_json()
    raw["timings"][1].update(changes)
    return raw


@pytest.mark.parametrize("median", [math.nan, -0.25, math.inf])
def test_nan_negative_or_infinite_timings_are_refused(baseline, tmp_path, median):
    path = write_raw(tmp_path / "current.json", timing_raw(median_ms=median))
    result = cli("check", "--baseline", str(baseline), str(path))
    assert result.exit_code == 2, result.output
    assert str(path) in result.output and "median_ms" in result.output and "finite number >= 0" in result.output


def test_timings_made_in_memory_never_pass(baseline):
    record = make_record()
    for median in (math.nan, -0.25, 0.0):
        bad = dataclasses.replace(record, timings=[dataclasses.replace(t, median_ms=median) for t in record.timings])
        result = compare([record], [bad])
        assert result.failed and {d.status for d in result.differences if d.kind == "speed"} == {Status.ERROR}


def test_values_outside_their_range_are_refused_not_better(baseline, tmp_path):
    raw = make_record().to_json()
    row = next(r for r in raw["results"] if r["task"] == "verification" and r["metric"] == "ap")
    row["value"] = 5.0
    path = write_raw(tmp_path / "current.json", raw)
    result = cli("check", "--baseline", str(baseline), str(path))
    assert result.exit_code == 2 and str(path) in result.output and "outside its range 0..1" in result.output
    with pytest.raises(RecordError, match="ap value 5.0 is outside its range"):
        validate(raw, "x")
    # rows made in memory: an ERROR, never "better"
    record = make_record()
    bad = dataclasses.replace(record, results=[dataclasses.replace(r, value=r.value * 10) for r in record.results])
    statuses = {d.status for d in compare([record], [bad]).differences if d.kind == "accuracy"}
    assert statuses == {Status.ERROR}


def test_metric_ranges():
    from desc_bench.records.schema import metric_range

    for metric in ("ap", "auc", "map", "mma@3", "pck@5", "matching-score", "repeatability"):
        assert metric_range(metric) == (0.0, 1.0)
    assert metric_range("matches") == (0.0, math.inf) and metric_range("something-new") is None


@pytest.mark.parametrize(
    "schema, found", [(2, "record schema 2"), ("1", "record schema '1'"), (None, "no schema version")]
)
def test_unknown_schema_versions_are_refused_by_check_and_report(baseline, tmp_path, schema, found):
    raw = make_record().to_json()
    if schema is None:
        del raw["schema"]
    else:
        raw["schema"] = schema
    path = write_raw(tmp_path / "current.json", raw)
    for args in (("check", "--baseline", str(baseline), str(path)), ("report", str(path), "-o", str(tmp_path / "r"))):
        result = cli(*args)
        assert result.exit_code == 2, result.output
        assert f"{path}: {found}; this desc-bench reads record schema 1" in result.output
    assert not (tmp_path / "r").exists()


def test_the_committed_baseline_is_still_read():
    record = read_record(Path(__file__).resolve().parents[2] / "results" / "baseline.json")
    assert len(record.results) == 340 and record.calibration is not None


# ---- --common-only, new rows in one line, loaded-machine warnings ---------------------------------
BASELINE = Path(__file__).resolve().parents[2] / "results" / "baseline.json"
FIRST_RUN = ("sift-opencv", "rootsift-opencv")  # the README's first command


def readme_first_run(tmp_path) -> Path:
    """The README's first run, as the committed baseline's rows of its two descriptors."""
    base = read_record(BASELINE)
    run = dataclasses.replace(
        base,
        results=[r for r in base.results if r.descriptor in FIRST_RUN],
        timings=[t for t in base.timings if t.descriptor in FIRST_RUN],
    )
    return write_record(tmp_path / "first-run.json", run)


def test_common_only_compares_what_both_records_hold(tmp_path):
    run = readme_first_run(tmp_path)
    result = cli("check", "--baseline", str(BASELINE), str(run))
    assert result.exit_code == 1 and "207 MISSING" in result.output
    result = cli("check", "--baseline", str(BASELINE), str(run), "--common-only")
    assert result.exit_code == 0, result.output
    assert "138 ok" in result.output and "MISSING" not in result.output  # 2 x 68 accuracy rows + 2 speed rows
    [line] = [line for line in result.output.splitlines() if "--common-only" in line]
    assert line == (
        "- --common-only: 207 baseline row(s) that the run does not hold were skipped: "
        "beblid-opencv (68 accuracy, 1 speed), sift-torch-mp (68 accuracy, 1 speed), "
        "sift-torch-vlfeat (68 accuracy, 1 speed)"
    )
    # a regression in a common row still fails
    worse = read_record(run)
    worse = dataclasses.replace(worse, results=[dataclasses.replace(r, value=r.value * 0.9) for r in worse.results])
    path = write_record(tmp_path / "worse.json", worse)
    result = cli("check", "--baseline", str(BASELINE), str(path), "--common-only")
    assert result.exit_code == 1 and "WORSE" in result.output


def test_nothing_in_common_fails(tmp_path):
    other = make_record()
    other = dataclasses.replace(
        other,
        results=[dataclasses.replace(r, descriptor="x-" + r.descriptor) for r in other.results],
        timings=[dataclasses.replace(t, descriptor="x-" + t.descriptor) for t in other.timings],
    )
    result = compare([make_record()], [other], common_only=True)
    assert result.failed and "nothing was compared" in result.markdown()


def test_new_rows_are_summarised_in_one_line(tmp_path):
    base = make_record()
    extra = [dataclasses.replace(r, descriptor="sift-flow") for r in base.results if r.descriptor == "sift-opencv"]
    current = dataclasses.replace(base, results=base.results + extra)
    text = compare([base], [current]).markdown()
    assert f"- {len(extra)} new row(s) only in the run, not compared: sift-flow ({len(extra)} accuracy)" in text
    assert "sift-flow /" not in text  # not one table line per new row
    assert "sift-flow /" in compare([base], [current]).markdown(show_ok=True)


def test_loaded_machine_warnings():
    from desc_bench.records.machine_load import loaded_machine_warnings
    from desc_bench.records.schema import Calibration

    quiet = make_record()
    assert loaded_machine_warnings(quiet, [quiet]) == []
    busy = dataclasses.replace(
        quiet,
        timings=[dataclasses.replace(t, iqr_ms=t.median_ms * 3) if t.batch == 16 else t for t in quiet.timings],
        calibration=Calibration(quiet.calibration.name, 90.0, iqr_ms=120.0),
    )
    warnings = loaded_machine_warnings(busy, [quiet])
    assert len(warnings) == 3
    assert "calibration workload's spread (IQR 120 ms) is larger than its median (90 ms)" in warnings[0]
    assert "2 of 4 timing rows have an IQR larger than their median (sift-opencv batch 16, rootsift" in warnings[1]
    assert "took 2.2x as long as in the baseline (90 ms vs 40 ms" in warnings[2]
    # a calibration of another workload or thread count is not compared
    other = dataclasses.replace(busy, calibration=Calibration("other", 90.0))
    assert len(loaded_machine_warnings(other, [quiet])) == 1
    # check prints them
    text = compare([quiet], [busy], speed_tolerance=10).markdown()
    assert text.count("- warning: loaded") == 3


def test_time_command_prints_the_warning(tmp_path, monkeypatch):
    import desc_bench.bench.timing as timing

    busy = make_record()
    busy = dataclasses.replace(busy, results=[], timings=[dataclasses.replace(t, iqr_ms=1.0) for t in busy.timings])
    monkeypatch.setattr(timing, "time_descriptors", lambda config, progress: busy)
    result = CliRunner().invoke(main, ["time", "-d", "sift-opencv", "-o", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    assert "warning: loaded machine? 4 of 4 timing rows have an IQR larger than their median" in result.output
