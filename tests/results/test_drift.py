"""Drift guard: `check` and `report` warn when the libraries that change numbers differ."""

from __future__ import annotations

import copy

from desc_bench.records.schema import NUMERIC_LIBRARIES, Record, ResultRow, library_versions, machine_metadata
from desc_bench.records.store import write_record
from desc_bench.results.drift import drift_warnings, mixed_versions
from desc_bench.results.regression import compare
from desc_bench.results.report import build_report

ROW = ResultRow("sift-opencv", "none", "hpatches-synth", "full", "python", "matching", "map", 0.5, "mean", "all", "")


BROWN = ResultRow("sift", "none", "brown-synth", "all", "fpr95", "verification", "fpr95", 0.3, "", "mean", "mean")


def record(row=ROW, **changes) -> Record:
    meta = copy.deepcopy(machine_metadata("cpu"))
    for key, value in changes.items():
        if key in ("torch", "opencv"):
            meta[key] = value
        else:
            meta["libraries"][key] = value
    return Record(meta, [row])


def test_the_record_lists_the_installed_numeric_libraries():
    versions = library_versions()
    assert "numpy" in versions and set(versions) <= set(NUMERIC_LIBRARIES)
    assert machine_metadata("cpu")["libraries"] == versions


def test_check_warns_on_opencv_numpy_and_estimator_changes_and_not_otherwise():
    assert drift_warnings([record()], [record()]) == []
    warnings = drift_warnings([record(opencv="4.9.0", numpy="1.26.4", poselib="2.0.4")], [record(poselib="2.0.5")])
    assert any(w.startswith("OpenCV (cv2)") and "4.9.0 in the baseline" in w for w in warnings)
    assert any(w.startswith("numpy") for w in warnings)
    assert any(w.startswith("poselib 2.0.5 in the run") for w in warnings)
    comparison = compare([record(torch="2.0.0")], [record()])
    assert not comparison.failed and any("torch" in w for w in comparison.warnings)
    assert "warning: torch" in comparison.markdown()


def test_records_without_a_library_list_say_what_was_not_compared():
    old = record()
    del old.metadata["libraries"]
    [warning] = drift_warnings([old], [record()])
    assert "only torch and OpenCV" in warning


def test_report_warns_when_side_by_side_records_differ(tmp_path):
    assert mixed_versions([record(), record()]) == []
    write_record(tmp_path / "runs" / "a.json", record(BROWN))  # no figure to draw: fast
    write_record(tmp_path / "runs" / "b.json", record(BROWN, numpy="1.0.0"))
    build_report([tmp_path / "runs"], tmp_path / "out")
    assert "warning: numpy differs between the records" in (tmp_path / "out" / "report.md").read_text()
