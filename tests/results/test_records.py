"""Record schema validation, atomic writes, tables and the regression check."""

from __future__ import annotations

import dataclasses
import json

import pytest

from desc_bench.errors import RecordError
from desc_bench.io.atomic import atomic_path
from desc_bench.records.schema import Calibration, Record, ResultRow, TimingRow, machine_metadata, validate
from desc_bench.records.store import read_record, write_record, write_run
from desc_bench.results.regression import Status, compare
from desc_bench.results.tables import benchmark_tables, summary_table


def rows(descriptor="sift-opencv", shift=0.0):
    out = []
    # the headline conventions of bench/hpatches_tasks.py
    for task, metric, variant, base in (
        ("verification", "ap", "mean", 0.6),
        ("matching", "map", "", 0.3),
        ("retrieval", "map", "pool=mean", 0.4),
    ):
        for i, noise in enumerate(("easy", "hard", "tough")):
            out.append(
                ResultRow(
                    descriptor,
                    "none",
                    "hpatches-synth",
                    "full",
                    "python",
                    task,
                    metric,
                    base - 0.1 * i + shift,
                    noise=noise,
                    variant=variant,
                )
            )
        out.append(
            ResultRow(
                descriptor,
                "none",
                "hpatches-synth",
                "full",
                "python",
                task,
                metric,
                base - 0.1 + shift,
                noise="mean",
                variant=variant,
            )
        )
    return out


def timing(median=0.2):
    return TimingRow("sift-opencv", "none", "cpu", 256, "65", "patch", median, 0.01, 1000 / median, 10.0)


def record(shift=0.0, median=0.2, calibration=10.0):
    return Record(machine_metadata(), rows(shift=shift), [timing(median)], Calibration("conv+matmul", calibration))


def test_round_trip(tmp_path):
    rec = record()
    path = write_record(tmp_path / "r.json", rec)
    back = read_record(path)
    assert back.results == rec.results and back.timings == rec.timings and back.calibration == rec.calibration


def test_validation_errors():
    raw = record().to_json()
    broken = json.loads(json.dumps(raw))
    del broken["metadata"]["torch"]
    with pytest.raises(RecordError, match="torch"):
        validate(broken)
    broken = json.loads(json.dumps(raw))
    broken["results"][0]["surprise"] = 1
    with pytest.raises(RecordError, match="unknown fields"):
        validate(broken)
    with pytest.raises(RecordError, match="no finite value"):
        ResultRow("d", "none", "x", "full", "python", "matching", "map", float("nan"))
    ResultRow("d", "none", "x", "full", "python", "matching", "map", None, error="weights missing")


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_write_run_never_overwrites(tmp_path):
    first = write_run(tmp_path, "x", record(), "# a")
    second = write_run(tmp_path, "x", record(), "# b")
    assert first[0] != second[0] and first[0].exists() and second[0].exists()


def test_tables():
    rec = record()
    summary = summary_table([rec])
    assert "sift-opencv" in summary and "50.00" in summary and "0.200" in summary
    tables = "\n".join(t for _, ts in benchmark_tables(rec.results) for t in ts)
    assert "Easy" in tables and "60.00" in tables


def test_check_passes_against_itself():
    assert not compare([record()], [record()]).failed


def test_check_fails_on_five_points_worse():
    result = compare([record()], [record(shift=-0.05)])
    assert result.failed
    worse = [d for d in result.differences if d.status is Status.WORSE]
    assert len(worse) == len(rows())
    assert "matching" in result.markdown() and "WORSE" in result.markdown()


def test_check_fails_on_twice_slower_but_not_on_a_slower_machine():
    assert compare([record()], [record(median=0.4)]).failed
    # twice slower, but the calibration workload is twice slower too: same normalised speed
    assert not compare([record()], [record(median=0.4, calibration=20.0)]).failed


def test_check_reports_new_and_missing_rows():
    base = record()
    extra = dataclasses.replace(rows()[0], descriptor="rootsift-opencv")
    cur = Record(base.metadata, base.results[1:] + [extra], base.timings, base.calibration)
    result = compare([base], [cur])
    statuses = {d.status for d in result.differences}
    assert Status.MISSING in statuses and Status.NEW in statuses and result.failed
