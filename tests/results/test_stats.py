"""Bootstrap intervals over per-unit values (results/stats.py), their record fields and their display."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from desc_bench.bench.benchmarks.base import grouped_units, per_unit
from desc_bench.errors import InputError, RecordError
from desc_bench.records.schema import Record, ResultRow, Units, machine_metadata
from desc_bench.records.store import read_record, write_record
from desc_bench.results.stats import add_intervals, paired_difference, unit_interval, with_intervals
from desc_bench.results.tables import records_report, summary_table


def units_of(values, kind="sequence", weights=None):
    names = [f"s{i}" for i in range(len(values))]
    return per_unit(kind, dict(zip(names, values)), dict(zip(names, weights)) if weights is not None else None)


def headline(descriptor: str, units: Units, task="matching") -> ResultRow:
    variant = {"matching": "", "retrieval": "pool=mean"}[task]
    return ResultRow(
        descriptor, "none", "hpatches-synth", "full", "python", task, "map", units.mean(), "mean", "all", variant,
        units=units,
    )  # fmt: skip


def test_percentile_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    trials, hits = 200, 0
    for t in range(trials):
        sample = rng.beta(4, 6, size=40)  # true mean 0.4
        low, high = unit_interval(units_of(sample), resamples=400, seed=t)
        hits += low <= 0.4 <= high
    assert 0.88 <= hits / trials <= 0.99  # percentile bootstrap at n=40: close to 95 %, a little under


def test_same_seed_same_interval_other_seed_other_interval():
    units = units_of(np.random.default_rng(1).uniform(size=30))
    first = unit_interval(units, seed=3, key=("a",))
    assert first == unit_interval(units, seed=3, key=("a",))
    assert first != unit_interval(units, seed=4, key=("a",))
    low, high = first
    assert low < units.mean() < high


def test_weights_count_units_like_their_items():
    """Pairs grouped by sequence: the weighted mean of the units is the mean of all pairs."""
    names = ["a"] * 5 + ["b"] * 1 + ["c"] * 4
    values = [0.9, 0.8, 0.7, 0.9, 0.8, 0.1, 0.5, 0.6, 0.4, 0.5]
    units = grouped_units("sequence", names, values)
    assert units.weights == (5.0, 1.0, 4.0)
    assert units.mean() == pytest.approx(np.mean(values))


def test_rows_without_enough_units_get_no_interval_and_constant_units_a_point():
    rows = [
        headline("one", units_of([0.5])),
        headline("flat", units_of([0.5, 0.5, 0.5])),
        ResultRow("plain", "none", "d", "full", "python", "verification", "ap", 0.5, "mean", "all", "mean"),
    ]
    one, flat, plain = with_intervals(rows, resamples=200)
    assert one.interval is None and plain.interval is None
    assert flat.interval == (0.5, 0.5)
    with pytest.raises(InputError, match="ci-resamples"):
        add_intervals(Record(metadata={}), resamples=10)


def test_row_refuses_units_whose_mean_is_not_its_value_and_a_bad_interval():
    units = units_of([0.2, 0.4])
    with pytest.raises(RecordError, match="not the mean"):
        dataclasses.replace(headline("x", units), value=0.5)
    with pytest.raises(RecordError, match="interval"):
        dataclasses.replace(headline("x", units), interval=(0.4, 0.2))


def test_records_with_intervals_round_trip_and_old_records_still_load(tmp_path):
    meta = machine_metadata("cpu")
    record = add_intervals(Record(meta, [headline("sift", units_of([0.2, 0.4, 0.3, 0.5]))]), resamples=200)
    path = write_record(tmp_path / "new.json", record)
    back = read_record(path)
    assert back.results == record.results and back.results[0].interval is not None
    assert back.metadata["intervals"]["resamples"] == 200
    raw = json.loads(path.read_text())
    for row in raw["results"]:  # a record written before intervals existed
        del row["units"], row["interval"]
    (tmp_path / "old.json").write_text(json.dumps(raw))
    old = read_record(tmp_path / "old.json")
    assert old.results[0].interval is None and old.results[0].units is None
    raw["results"][0]["units"] = {"kind": "sequence", "names": ["a", "a"], "values": [0.1, 0.2]}
    (tmp_path / "dup.json").write_text(json.dumps(raw))
    with pytest.raises(RecordError, match=r"dup\.json.*names must be unique"):
        read_record(tmp_path / "dup.json")
    raw["results"][0]["units"] = None
    raw["results"][0]["interval"] = "wide"
    (tmp_path / "bad.json").write_text(json.dumps(raw))
    with pytest.raises(RecordError, match=r"bad\.json.*interval"):
        read_record(tmp_path / "bad.json")


def test_tables_show_value_plus_minus_half_width_and_say_what_it_is():
    record = add_intervals(
        Record(machine_metadata("cpu"), [headline("sift", units_of([0.2, 0.4, 0.3, 0.5, 0.6, 0.1]))]), resamples=300
    )
    row = record.results[0]
    half = (row.interval[1] - row.interval[0]) / 2 * 100
    assert f"{row.value * 100:.2f} ± {half:.2f}" in summary_table([record])
    assert "interval over sequences (95% percentile bootstrap, 300 resamples, seed 0)" in records_report([record])


def test_paired_difference_significant_when_one_is_better_on_every_unit():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, size=30)  # sequences differ a lot, the gap between A and B hardly
    a, b = units_of(base + 0.03 + rng.normal(0, 0.005, 30)), units_of(base)
    diff = paired_difference(a, b, resamples=500)
    assert diff.excludes_zero and diff.verdict == "A better" and diff.low > 0
    assert diff.value == pytest.approx(a.mean() - b.mean())
    # unpaired, the same gap is lost in the spread between sequences: the pairing is what finds it
    assert unit_interval(b, resamples=500)[1] > a.mean()


def test_paired_difference_not_significant_for_noise_around_the_same_mean():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.2, 0.8, size=30)
    a, b = units_of(base + rng.normal(0, 0.05, 30)), units_of(base + rng.normal(0, 0.05, 30))
    diff = paired_difference(a, b, resamples=500)
    assert not diff.excludes_zero and diff.verdict == "not significant"
    assert diff.low < diff.value < diff.high


def test_paired_difference_uses_only_shared_units_and_refuses_disjoint_ones():
    a = per_unit("sequence", {"x": 0.5, "y": 0.7, "z": 0.9})
    b = per_unit("sequence", {"z": 0.8, "y": 0.6})
    assert paired_difference(a, b, resamples=200).units == 2
    with pytest.raises(InputError, match="share no sequence"):
        paired_difference(a, per_unit("sequence", {"q": 0.1}))


def test_run_refuses_too_few_resamples_before_any_work(tmp_path):
    from click.testing import CliRunner

    from desc_bench.cli import main

    result = CliRunner().invoke(main, ["run", "-d", "sift-opencv", "-o", str(tmp_path), "--ci-resamples", "5"])
    assert result.exit_code == 2 and "--ci-resamples must be 0 (no intervals) or at least 100" in result.output
    assert not list(tmp_path.iterdir())
