"""`desc-bench compare` and the report's paired differences, on records built for a known answer."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from click.testing import CliRunner

from desc_bench.bench.benchmarks.base import per_unit
from desc_bench.cli import main
from desc_bench.errors import InputError
from desc_bench.records.schema import Record, ResultRow, machine_metadata
from desc_bench.records.store import write_record
from desc_bench.results.compare import compare, unpaired_reason
from desc_bench.results.report import build_report

SEQS = [f"{'iv'[i % 2]}_s{i}" for i in range(24)]


def headline(descriptor, task, variant, values):
    units = per_unit("sequence", dict(zip(SEQS, values)))
    return ResultRow(
        descriptor, "none", "hpatches-synth", "full", "python", task, "map", units.mean(), "mean", "all", variant,
        units=units,
    )  # fmt: skip


def pooled(descriptor, value):
    """A verification AP row as the benchmark writes it: an interval made at evaluation time, no units."""
    note = "interval: bootstrap over 24 sequences, AP of the pooled pairs recomputed, 1000 resamples"
    return ResultRow(
        descriptor, "none", "hpatches-synth", "full", "python", "verification", "ap", value, "mean", "all", "mean",
        notes=note, interval=(value - 0.05, value + 0.05),
    )  # fmt: skip


def record(tmp_path):
    rng = np.random.default_rng(3)
    base = rng.uniform(0.3, 0.8, len(SEQS))
    rows = [  # matching: A beats B by 2 points on every sequence; retrieval: noise around the same mean
        headline("a", "matching", "", base + 0.02 + rng.normal(0, 0.003, len(SEQS))),
        headline("b", "matching", "", base),
        headline("a", "retrieval", "pool=mean", base + rng.normal(0, 0.04, len(SEQS))),
        headline("b", "retrieval", "pool=mean", base + rng.normal(0, 0.04, len(SEQS))),
        pooled("a", 0.7),
        pooled("b", 0.6),
    ]
    return write_record(tmp_path / "run.json", Record(machine_metadata("cpu"), rows))


def test_compare_finds_the_significant_difference_and_not_the_noise(tmp_path):
    from desc_bench.records.store import read_record

    pairs = {p.label: p for p in compare([read_record(record(tmp_path))], "a", "b", resamples=500)}
    matching, retrieval = pairs["matching mAP"].difference, pairs["retrieval mAP"].difference
    assert matching.excludes_zero and matching.low > 0 and matching.verdict == "A better"
    assert matching.value == pytest.approx(0.02, abs=0.002)
    assert not retrieval.excludes_zero and retrieval.verdict == "not significant"
    assert pairs["verification mAP"].difference.low is None  # no units: the difference alone
    assert pairs["verification mAP"].verdict == "not paired"
    assert matching.units == 24


def test_compare_command_prints_the_table_and_refuses_unknown_descriptors(tmp_path):
    path = record(tmp_path)
    result = CliRunner().invoke(main, ["compare", str(path), "-d", "a,b", "--ci-resamples", "300"])
    assert result.exit_code == 0, result.output
    lines = {line.split("|")[2].strip(): line for line in result.output.splitlines() if line.startswith("| python")}
    assert "A better" in lines["matching mAP"] and "not significant" in lines["retrieval mAP"]
    assert "24 sequences" in lines["matching mAP"]
    assert "not paired: pooled statistic (AP over pooled pairs)" in lines["verification mAP"]
    assert "+10.00" in lines["verification mAP"]  # the difference alone
    result = CliRunner().invoke(main, ["compare", str(path), "-d", "a,zzz"])
    assert result.exit_code == 2 and "no headline rows of descriptor 'zzz'" in result.output and "a, b" in result.output
    result = CliRunner().invoke(main, ["compare", str(path), "-d", "a"])
    assert result.exit_code == 2 and "two descriptors" in result.output
    with pytest.raises(InputError, match="twice"):
        compare([], "a", "a")


def test_lower_is_better_headlines_turn_the_verdict():
    units = [per_unit("sequence", dict(zip(SEQS, v))) for v in (np.full(24, 0.02), np.full(24, 0.05))]
    rows = [
        ResultRow(d, "none", "brown", "all", "fpr95", "verification", "fpr95", u.mean(), "", "mean", "mean", units=u)
        for d, u in zip("ab", units)
    ]
    [paired] = compare([Record(machine_metadata("cpu"), rows)], "a", "b", resamples=200)
    assert paired.difference.value == pytest.approx(-0.03) and paired.verdict == "A better"
    old = [dataclasses.replace(r, units=None) for r in rows]  # a record made before units: said so
    assert "no per-unit values in the row of a and b" in unpaired_reason(*old)


def test_report_has_a_paired_differences_section(tmp_path):
    path = record(tmp_path)
    build_report([path], tmp_path / "out")
    text = (tmp_path / "out" / "report.md").read_text()
    section = text.split("## Paired differences")[1]
    assert "A = `a`, B = `b`" in section and "A better" in section and "not significant" in section
