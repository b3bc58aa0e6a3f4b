"""The published-figure registry and `desc-bench published`: records built to match and to miss."""

from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner

from desc_bench.bench.benchmarks.base import per_unit, registered
from desc_bench.cli import main
from desc_bench.records.schema import Record, ResultRow, machine_metadata
from desc_bench.records.store import write_record
from desc_bench.results.published import FIGURES
from desc_bench.results.published_check import DIFFERS, MATCHES, NOT_COMPARED, check_records
from desc_bench.results.report import build_report

SIFT_FULL_MATCHING = 0.25471  # iago-suarez CSV, sift (VLFeat), split full


def hpatches_row(value, sequences=116, dataset="hpatches", protocol="python", split="full", descriptor="sift-vlfeat"):
    names = [f"{'iv'[i % 2]}_s{i}" for i in range(sequences)]
    units = per_unit("sequence", dict.fromkeys(names, value))
    return ResultRow(
        descriptor, "none", dataset, split, protocol, "matching", "map", value, "mean", "all", "", units=units
    )


def record(*rows):
    return Record(machine_metadata("cpu"), list(rows))


def status(rec):
    return [(c.status, c.reason) for c in check_records([rec])]


def test_a_record_built_to_match_matches_and_one_built_to_miss_differs():
    [(matched, _)] = {s for s in status(record(hpatches_row(SIFT_FULL_MATCHING + 0.004)))}
    assert matched == MATCHES
    [(missed, _)] = {s for s in status(record(hpatches_row(SIFT_FULL_MATCHING + 0.03)))}
    assert missed == DIFFERS
    two = check_records([record(hpatches_row(0.2447, descriptor="sift-opencv"))])  # OpenCV SIFT: 26.15
    assert [c.status for c in two] == [DIFFERS] and two[0].figure.published_as == "OPENCV-SIFT"


def test_bow_retrieval_and_relative_pose_rows_meet_their_figures():
    """The Oxford5k table and GIFT's pose line use the benchmarks' own row names (any detector variant)."""
    bow = ResultRow(
        "rootsift-opencv", "none", "oxford5k", "all", "bow-retrieval", "retrieval", "bow+sv", 0.625, "", "original",
        "det=dog:budget=2000:words=65536",
    )  # fmt: skip
    pose = ResultRow(
        "gift", "none", "st-peters", "all", "relative-pose", "relative-pose", "correct@10", 0.45, "", "all",
        "det=superpoint:budget=2000:matcher=mutual:estimator=ransac:th=0.5",
    )  # fmt: skip
    found = {c.figure.protocol: c.status for c in check_records([record(bow, pose)])}
    assert found == {"bow-retrieval": MATCHES, "relative-pose": DIFFERS}  # 63.0 published; 0.35 published
    pck = ResultRow(
        "gift", "none", "hpatches-seq-full-es", "all", "pck-gift", "pck", "pck@5", 0.281, "", "all",
        "det=superpoint:budget=all", units=per_unit("sequence", {f"v_{i}": 0.281 for i in range(116)}),
    )  # fmt: skip
    [checked] = check_records([record(pck)])
    assert (checked.figure.published_as, checked.status) == ("GIFT", MATCHES)  # 0.290 published, within 0.02


@pytest.mark.parametrize(
    "row, reason",
    [
        (hpatches_row(SIFT_FULL_MATCHING, sequences=40), "40 sequences, the figure 116"),
        (hpatches_row(SIFT_FULL_MATCHING, dataset="hpatches-synth"), "generated, synthetic"),
        (hpatches_row(SIFT_FULL_MATCHING, protocol="matlab"), "published with the python protocol, this row matlab"),
    ],
)
def test_other_data_or_protocol_is_never_compared_and_the_variant_is_named(row, reason):
    found = set(status(record(row)))  # one line per figure of the quantity (VLFeat SIFT has two)
    assert found and all(got == NOT_COMPARED and reason in why for got, why in found)


def test_incomplete_pair_sets_and_records_without_units_are_not_compared():
    pck = ResultRow(
        "daisy-msnet", "none", "hpatches-seq-full", "all", "pck-msnet", "pck", "pck@3", 0.592, "", "all",
        "det=harris:budget=1000:matcher=flann:incomplete=3of116",
    )  # fmt: skip
    assert status(record(pck)) == [(NOT_COMPARED, "incomplete pair set (3 of 116)")]
    full = ResultRow(
        "daisy-msnet", "none", "hpatches-seq-full", "all", "pck-msnet", "pck", "pck@3", 0.60, "", "all",
        "det=harris:budget=1000:matcher=flann",
    )  # fmt: skip
    assert [s for s, _ in status(record(full))] == [MATCHES]
    old = ResultRow("sift-vlfeat", "none", "hpatches", "full", "python", "matching", "map", 0.2547, "mean", "all", "")
    assert "does not say how many sequences" in status(record(old))[0][1]


def test_cli_exit_status_and_report_section(tmp_path):
    good = write_record(tmp_path / "good.json", record(hpatches_row(SIFT_FULL_MATCHING)))
    bad = write_record(tmp_path / "bad" / "bad.json", record(hpatches_row(0.35)))
    result = CliRunner().invoke(main, ["published", str(good)])
    assert result.exit_code == 0, result.output
    assert "matches" in result.output and "iago-suarez" in result.output
    assert "split full (116 sequences)" in result.output
    result = CliRunner().invoke(main, ["published", str(bad)])
    assert result.exit_code == 1 and "DIFFERS" in result.output and "+9.53" in result.output
    build_report([bad], tmp_path / "out")
    assert "## Published figures" in (tmp_path / "out" / "report.md").read_text()


def test_the_registry_covers_its_sources_and_names_real_benchmarks(shared):
    names = set(registered())
    for f in FIGURES:
        assert f.protocol in names, f
        assert f.source and f.setting and f.tolerance > 0
    csv_path = shared / "data" / "reference-numbers" / "hpatches_python_results_iago-suarez.csv"
    for row in csv.DictReader(csv_path.open()):  # every CSV row's verification and matching headline
        for task, column in (("verification", "verif_imbAP_mean6"), ("matching", "match_mAP_mean3")):
            [fig] = [
                f
                for f in FIGURES
                if f.published_as == row["descriptor"] and f.split == row["split"] and f.task == task
                and f.noise == "mean" and "iago-suarez" in f.source and "CSV" in f.source
            ]  # fmt: skip
            assert fig.value == pytest.approx(float(row[column]) / 100)
    covered = {f.protocol for f in FIGURES}
    assert {"python", "pck-msnet", "fpr95", "brown-snn-map", "mma", "bow-retrieval", "relative-pose"} <= covered
    assert {(f.metric, f.value) for f in FIGURES if f.protocol == "pck-gift"} == {
        ("pck@5", 0.290),
        ("pck@2", 0.132),
        ("pck@1", 0.057),
    }  # the GIFT README's ES line
