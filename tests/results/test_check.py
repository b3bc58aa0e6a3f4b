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
