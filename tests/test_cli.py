"""End to end through the command line, on a tiny synthetic set in the real HPatches layout.

The tiny set is made by the embedded generator and laid out as `desc-bench data download hpatches`
lays out the real release, so the same loader, tasks and CLI paths run as on real data.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from desc_bench.cli import main


@pytest.fixture(scope="module")
def tiny_hpatches(tiny_hpatches_factory):
    return tiny_hpatches_factory(sequences=4, patches=40)


def invoke(args, env):
    result = CliRunner().invoke(main, args, env=env, catch_exceptions=False)
    return result


@pytest.fixture()
def env(tmp_path):
    return {"DESC_BENCH_CACHE": str(tmp_path / "cache")}


def test_run_evaluate_export_report_check(tiny_hpatches, tmp_path, env, monkeypatch):
    import desc_bench.cli.run as cli_run

    seen = []  # run warns of a loaded machine, as time and check do
    monkeypatch.setattr(cli_run, "loaded_machine_warnings", lambda record: seen.append(record) or ["busy (test)"])
    runs = tmp_path / "runs"
    result = invoke(
        [
            "run",
            "-d",
            "sift-opencv,rootsift-opencv",
            "--dataset",
            "hpatches",
            "--data-dir",
            str(tiny_hpatches),
            "-o",
            str(runs),
            "-q",
            "--time-batch",
            "16",
        ],
        env,
    )
    assert result.exit_code == 0, result.output
    assert "## Summary" in result.output and "Easy" in result.output and "rootsift-opencv" in result.output
    assert "warning: busy (test)" in result.output and len(seen) == 1 and seen[0].timings
    records = sorted(runs.glob("*.json"))
    assert len(records) == 1 and records[0].with_suffix(".md").is_file()
    record = json.loads(records[0].read_text())
    assert record["calibration"] is not None and record["timings"][0]["batch"] == 16
    matching = {
        (r["descriptor"], r["noise"]): r["value"]
        for r in record["results"]
        if r["task"] == "matching" and r["subset"] == "all" and r["variant"] == ""
    }
    assert 0.0 < matching[("sift-opencv", "easy")] <= 1.0
    # the pooled verification AP: an interval recomputed on resampled sequences, in the record and the table
    [verification] = [
        r
        for r in record["results"]
        if r["descriptor"] == "sift-opencv"
        and (r["task"], r["metric"], r["noise"], r["variant"]) == ("verification", "ap", "mean", "mean")
    ]
    low, high = verification["interval"]
    assert verification["units"] is None and low <= verification["value"] <= high and low < high
    assert "interval: bootstrap over 4 sequences, AP of the pooled pairs recomputed" in verification["notes"]
    assert f"{verification['value'] * 100:.2f} ± {(high - low) * 50:.2f}" in records[0].with_suffix(".md").read_text()

    # export, then evaluate the exported files: the same numbers as the run
    exported = tmp_path / "exported"
    result = invoke(
        [
            "export",
            "-d",
            "sift-opencv",
            "--dataset",
            "hpatches",
            "--data-dir",
            str(tiny_hpatches),
            "-o",
            str(exported),
            "-q",
        ],
        env,
    )
    assert result.exit_code == 0, result.output
    assert (exported / sorted(p.name for p in exported.iterdir() if p.is_dir())[0] / "t5.csv").is_file()
    evaluated = tmp_path / "evaluated"
    result = invoke(
        [
            "evaluate",
            "--descriptor-dir",
            str(exported),
            "--name",
            "sift-opencv",
            "--tasks-dir",
            str(tiny_hpatches / "hpatches" / "tasks"),
            "-o",
            str(evaluated),
            "-q",
        ],
        env,
    )
    assert result.exit_code == 0, result.output
    ours = json.loads(next(evaluated.glob("*.json")).read_text())["results"]
    theirs = {
        (r["task"], r["metric"], r["noise"], r["subset"], r["variant"]): r["value"]
        for r in record["results"]
        if r["descriptor"] == "sift-opencv"
    }
    assert len(ours) == len(theirs)
    for r in ours:
        assert r["value"] == pytest.approx(
            theirs[(r["task"], r["metric"], r["noise"], r["subset"], r["variant"])], abs=1e-6
        )

    # report and check from records alone
    result = invoke(["report", str(runs), "-o", str(tmp_path / "report")], env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "report" / "report.md").is_file() and (tmp_path / "report" / "hpatches.png").is_file()
    result = invoke(["check", "--baseline", str(records[0]), str(runs), "--speed-tolerance", "100"], env)
    assert result.exit_code == 0, result.output

    # a second run resumes from the cache and gives the same numbers
    result = invoke(
        [
            "run",
            "-d",
            "sift-opencv",
            "--dataset",
            "hpatches",
            "--data-dir",
            str(tiny_hpatches),
            "-o",
            str(tmp_path / "runs2"),
            "-q",
            "--time-batch",
            "0",
        ],
        env,
    )
    assert result.exit_code == 0
    again = json.loads(next((tmp_path / "runs2").glob("*.json")).read_text())["results"]
    assert [r["value"] for r in again] == [r["value"] for r in record["results"] if r["descriptor"] == "sift-opencv"]


def test_clear_errors(tiny_hpatches, tmp_path, env):
    result = invoke(["run", "-d", "no-such-descriptor", "--data-dir", str(tiny_hpatches)], env)
    assert result.exit_code == 2 and "unknown descriptor" in result.output and "sift-opencv" in result.output
    result = invoke(["run", "-d", "sift-opencv", "--dataset", "nope", "--data-dir", str(tiny_hpatches)], env)
    assert result.exit_code == 2 and "hpatches-synth" in result.output
    result = invoke(["run", "-d", "sift-opencv", "--dataset", "hpatches", "--data-dir", str(tmp_path / "empty")], env)
    assert result.exit_code == 2 and "desc-bench data download hpatches" in result.output
    result = invoke(
        ["run", "-d", "sift-opencv", "--dataset", "hpatches", "--data-dir", str(tiny_hpatches), "--split", "zzz"], env
    )
    assert result.exit_code == 2 and "full" in result.output


def test_list(tiny_hpatches, env):
    result = invoke(["list", "--data-dir", str(tiny_hpatches)], env)
    assert result.exit_code == 0
    for name in ("sift-opencv", "rootsift-opencv", "hpatches", "hpatches-synth"):
        assert name in result.output


def test_time_command(tmp_path, env):
    result = invoke(
        ["time", "-d", "sift-opencv", "--batch-sizes", "1,8", "--repeats", "2", "-o", str(tmp_path / "t"), "-q"], env
    )
    assert result.exit_code == 0, result.output
    record = json.loads(next((tmp_path / "t").glob("*.json")).read_text())
    assert [t["batch"] for t in record["timings"]] == [1, 8]
    assert all(t["median_ms"] > 0 for t in record["timings"]) and record["calibration"]["median_ms"] > 0
    assert np.isfinite([t["per_second"] for t in record["timings"]]).all()


def test_a_failing_descriptor_becomes_error_rows_and_the_run_goes_on(tiny_hpatches, tmp_path, monkeypatch):
    from desc_bench.adapters.sift_opencv import RootSiftOpenCV

    def explode(self, prepared):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(RootSiftOpenCV, "describe_patches", explode)
    monkeypatch.setenv("DESC_BENCH_CACHE", str(tmp_path / "cache"))
    result = invoke(
        [
            "run",
            "-d",
            "rootsift-opencv,sift-opencv",
            "--dataset",
            "hpatches",
            "--data-dir",
            str(tiny_hpatches),
            "-o",
            str(tmp_path / "runs"),
            "-q",
            "--time-batch",
            "0",
        ],
        {},
    )
    assert result.exit_code == 3, result.output  # documented: something asked for was not measured
    record = json.loads(next((tmp_path / "runs").glob("*.json")).read_text())
    failed = [r for r in record["results"] if r["descriptor"] == "rootsift-opencv"]
    assert failed and all("out of memory (simulated)" in r["error"] and r["value"] is None for r in failed)
    assert any(r["descriptor"] == "sift-opencv" and r["error"] is None for r in record["results"])
    assert "Skipped or failed" in result.output


def test_options_are_checked_before_any_work(tiny_hpatches, tmp_path, env):
    data = ["--data-dir", str(tmp_path / "nothing-generated")]
    cases = [
        (["--dataset", "hpatches-seq-synth", "--protocol", "foo"], "unknown protocol"),
        (["--dataset", "hpatches-seq-synth", "--split", "illum"], "--split applies to HPatches"),
        (["--dataset", "hpatches-seq-synth", "--detector", "sift"], "unknown detector"),
        (["--dataset", "hpatches-synth", "--protocol", "mma"], "runs on pairs datasets"),
        (["--dataset", "hpatches-synth", "--tasks", "matchin"], "valid tasks"),
        (["--dataset", "hpatches-synth", "--budget", "10"], "--budget does not apply"),
    ]
    for args, message in cases:
        result = invoke(["run", "-d", "sift-opencv", *args, *data], env)
        assert result.exit_code == 2 and message in result.output, (args, result.output)
    assert not (tmp_path / "nothing-generated").exists()  # no dataset was generated for a bad request


def test_distance_and_protocol_are_part_of_every_row(tiny_hpatches, tmp_path, env):
    common = [
        "-d",
        "sift-torch-mp",
        "--dataset",
        "hpatches",
        "--data-dir",
        str(tiny_hpatches),
        "--tasks",
        "matching",
        "-q",
        "--time-batch",
        "0",
    ]
    assert invoke(["run", *common, "-o", str(tmp_path / "l2")], env).exit_code == 0
    result = invoke(["run", *common, "--distance", "l1", "-o", str(tmp_path / "l1")], env)
    assert result.exit_code == 0 and "sift-torch-mp (l1)" in result.output
    rows = json.loads(next((tmp_path / "l1").glob("*.json")).read_text())["results"]
    assert {r["distance"] for r in rows} == {"l1"}
    # an L1 run is not compared with an L2 baseline as if it were the same measurement
    result = invoke(["check", "--baseline", str(tmp_path / "l2"), str(tmp_path / "l1")], env)
    assert result.exit_code == 1 and "MISSING" in result.output


def test_evaluate_refuses_float_files_as_hamming_and_pair_datasets(tiny_hpatches, tmp_path, env):
    exported = tmp_path / "exported"
    invoke(
        [
            "export",
            "-d",
            "sift-torch-mp",
            "--dataset",
            "hpatches",
            "--data-dir",
            str(tiny_hpatches),
            "-o",
            str(exported),
            "-q",
        ],
        env,
    )  # unit-norm floats, not bytes
    tasks = str(tiny_hpatches / "hpatches" / "tasks")
    result = invoke(
        [
            "evaluate",
            "--descriptor-dir",
            str(exported),
            "--name",
            "x",
            "--tasks-dir",
            tasks,
            "--distance",
            "hamming",
            "-q",
            "-o",
            str(tmp_path / "e"),
        ],
        env,
    )
    assert result.exit_code == 2 and "packed bytes" in result.output
    result = invoke(
        [
            "evaluate",
            "--descriptor-dir",
            str(exported),
            "--name",
            "x",
            "--dataset",
            "hpatches-seq-synth",
            "--data-dir",
            str(tmp_path / "pairs"),
            "-q",
        ],
        env,
    )
    assert result.exit_code == 2 and "image-pair dataset" in result.output
