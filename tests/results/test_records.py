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


# ---- damaged records: one clear RecordError naming the file, never a traceback --------------------
def damaged(tmp_path, change) -> str:
    raw = record().to_json()
    change(raw)
    path = tmp_path / "damaged.json"
    path.write_text(json.dumps(raw))
    return str(path)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r["timings"][0].update(median_ms="fast"), "field 'median_ms' must be a number or null, got 'fast'"),
        (lambda r: r["timings"][0].update(batch="256"), "field 'batch' must be an integer, got '256'"),
        (lambda r: r["timings"][0].update(fp16="no"), "field 'fp16' must be true or false"),
        (lambda r: r["results"][0].update(value="0.5"), "value must be a number unless error is set"),
        (lambda r: r["results"][0].update(metric=3), "field 'metric' must be a string"),
        (lambda r: r["results"][0].update(value=10**400), "is not a finite number"),
        (lambda r: r["calibration"].pop("median_ms"), "calibration: missing fields ['median_ms']"),
        (lambda r: r["calibration"].update(median_ms=0), "calibration median_ms 0 must be finite and > 0"),
        (lambda r: r.update(calibration=[1, 2]), "calibration: expected an object, got list"),
        (lambda r: r.update(results={"a": 1}), "results: expected a list"),
        (lambda r: r.update(timings=[3]), "timings[0]: expected an object, got int"),
    ],
)
def test_damaged_records_name_the_file(tmp_path, change, message):
    path = damaged(tmp_path, change)
    with pytest.raises(RecordError) as info:
        read_record(path)
    assert str(info.value).startswith(path) and message in str(info.value)


def test_unreadable_json_names_the_file(tmp_path):
    for name, content in (
        ("deep.json", b"[" * 200_000 + b"]" * 200_000),  # json.loads raises RecursionError
        ("deep-object.json", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
        ("binary.json", b"\xff\xfe\x00garbage"),
        ("truncated.json", b'{"schema": 1, "metadata": {'),
        ("digits.json", b'{"schema": 1, "x": ' + b"9" * 5000 + b"}"),  # int longer than Python converts
    ):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(RecordError, match=f"cannot read record {path}"):
            read_record(path)


def test_every_record_field_type_is_checked():
    from desc_bench.records.schema import _TYPE_CHECKS

    for cls in (ResultRow, TimingRow, Calibration):
        assert {f.type for f in dataclasses.fields(cls)} <= _TYPE_CHECKS.keys(), cls


def test_check_cli_reports_a_damaged_record_in_one_line(tmp_path):
    from click.testing import CliRunner

    from desc_bench.cli import main

    good = write_record(tmp_path / "good.json", record())
    path = damaged(tmp_path, lambda r: r["calibration"].pop("name"))
    result = CliRunner().invoke(main, ["check", "--baseline", str(good), path])
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert result.output.startswith(f"error: {path}: calibration: missing fields ['name']")


def test_write_errors_name_the_file(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(RecordError, match=f"cannot write record {blocker}/x-.*json: .*writable output folder"):
        write_run(blocker, "x", record(), "# a")
    with pytest.raises(RecordError, match=f"cannot write record {blocker / 'r.json'}"):
        write_record(blocker / "r.json", record())
    for prefix in ("a/b", "../up", ".hidden", ""):
        with pytest.raises(RecordError, match="must be a plain file name"):
            write_run(tmp_path, prefix, record(), "# a")
    assert list(tmp_path.iterdir()) == [blocker]
    json_path, md_path = write_run(tmp_path, "evaluate-sift.v2", record(), "# a")  # a dot in the name
    assert json_path.name.startswith("evaluate-sift.v2-") and json_path.suffix == ".json"
    assert md_path == json_path.with_name(json_path.stem + ".md") and md_path.read_text() == "# a"
    with pytest.raises(OSError):  # callers that catch OSError still catch it
        write_run(blocker, "x", record(), "# a")
