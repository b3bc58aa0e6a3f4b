"""`desc-bench export` then `desc-bench evaluate`: the round trip with defaults, row counts, bad CSV files.

The embedded default dataset (hpatches-synth) is made tiny here (4 sequences x 40 patches) by
replacing its default parameters, so the commands run exactly as a user types them, without
``--dataset``, in seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from desc_bench.cli import main
from desc_bench.datasets.synth import hpatches_synth as synthetic

TINY = synthetic.TINY_PARAMS


@pytest.fixture(autouse=True)
def tiny_default_dataset(monkeypatch, tmp_path):
    monkeypatch.setattr(synthetic, "DEFAULT_PARAMS", TINY)
    monkeypatch.setenv("DESC_BENCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def made(tmp_path_factory, tiny_hpatches_factory):
    """(data dir holding the tiny hpatches-synth, a sift-opencv export made with the defaults).

    The tiny set of conftest (generated once per session, in the release layout) is laid out
    as hpatches-synth: its folder with params.json, and tasks/ inside it."""
    root = tmp_path_factory.mktemp("evaluate")
    source = tiny_hpatches_factory(sequences=TINY.sequences, patches=TINY.patches) / "hpatches"
    data = root / "data"
    shutil.copytree(source / "hpatches-release", data / "hpatches-synth")
    shutil.copytree(source / "tasks", data / "hpatches-synth" / "tasks")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(synthetic, "DEFAULT_PARAMS", TINY)
        mp.setenv("DESC_BENCH_CACHE", str(root / "cache"))
        result = invoke(["export", "-d", "sift-opencv", "--data-dir", str(data), "-o", str(root / "export"), "-q"])
    assert result.exit_code == 0, result.output
    return data, root / "export"


def invoke(args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.fixture()
def exported(made, tmp_path) -> Path:
    """A private copy of the export, to damage."""
    return Path(shutil.copytree(made[1], tmp_path / "export"))


def evaluate(data: Path, folder: Path, out: Path, *extra: str):
    args = ["evaluate", "--descriptor-dir", str(folder), "--name", "mine", "--data-dir", str(data), "-o", str(out)]
    return invoke(args + ["-q", *extra])


def record_rows(out: Path) -> list[dict]:
    return json.loads(next(out.glob("*.json")).read_text())["results"]


def test_round_trip_without_dataset_gives_the_numbers_of_the_descriptor(made, tmp_path):
    from desc_bench.adapters.registry import descriptor
    from desc_bench.bench.benchmarks.hpatches import describe_sequence
    from desc_bench.bench.hpatches_tasks import evaluate_all
    from desc_bench.datasets.registry import dataset
    from desc_bench.datasets.tasks import TaskFiles

    data, folder = made
    manifest = json.loads((folder / "desc-bench-export.json").read_text())
    assert manifest["dataset"] == "hpatches-synth" and manifest["distance"] == "l2"
    assert manifest["patch_counts"] == {s: 40 for s in manifest["patch_counts"]} and len(manifest["patch_counts"]) == 4
    result = evaluate(data, folder, tmp_path / "out")  # no --dataset: export's dataset
    assert result.exit_code == 0, result.output
    rows = record_rows(tmp_path / "out")
    assert {r["dataset"] for r in rows} == {"hpatches-synth"} and {r["distance"] for r in rows} == {"l2"}
    patchset = dataset("hpatches-synth", data_dir=data)
    desc = descriptor("sift-opencv")
    descs = {s: describe_sequence(desc, patchset.load(s)) for s in patchset.sequence_names()}
    expected = {
        (s.task, s.metric, s.noise, s.subset, s.variant): s.value
        for s in evaluate_all(descs, TaskFiles(patchset.tasks_dir), patchset.split("full"), "l2", progress=False)
    }
    assert len(rows) == len(expected)
    for r in rows:
        assert r["value"] == pytest.approx(expected[(r["task"], r["metric"], r["noise"], r["subset"], r["variant"])])


def test_manifest_names_the_dataset_and_distance_of_a_binary_descriptor(made, tmp_path):
    data, _ = made
    folder = tmp_path / "beblid"
    result = invoke(["export", "-d", "beblid-opencv", "--data-dir", str(data), "-o", str(folder), "-q"])
    assert result.exit_code == 0, result.output
    tasks = data / "hpatches-synth" / "tasks"
    result = evaluate(data, folder, tmp_path / "out", "--tasks-dir", str(tasks), "--tasks", "matching")
    assert result.exit_code == 0, result.output
    rows = record_rows(tmp_path / "out")
    assert {r["distance"] for r in rows} == {"hamming"} and {r["dataset"] for r in rows} == {"hpatches-synth"}
    # another descriptor's export is not mixed into this folder
    result = invoke(["export", "-d", "sift-opencv", "--data-dir", str(data), "-o", str(folder), "-q"])
    assert result.exit_code == 2 and "holds an export of beblid-opencv" in result.output
    assert "--overwrite" in result.output


def append_row(path: Path) -> None:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines + [lines[-1]]) + "\n")


def test_extra_rows_are_refused_naming_the_file(made, exported, tmp_path):
    data, _ = made
    seq = sorted(p.name for p in exported.iterdir() if p.is_dir())[1]
    append_row(exported / seq / "e1.csv")
    result = evaluate(data, exported, tmp_path / "a")
    assert result.exit_code == 2
    assert f"{exported / seq / 'e1.csv'} has 41 rows, but sequence {seq} has 40 patches in dataset hpatches-synth" in (
        result.output
    )
    # with --tasks-dir the dataset is not opened: the manifest's counts are checked
    tasks = str(data / "hpatches-synth" / "tasks")
    result = evaluate(data, exported, tmp_path / "b", "--tasks-dir", tasks)
    assert result.exit_code == 2 and "has 41 rows" in result.output and "desc-bench-export.json" in result.output
    # every file of the sequence has the extra row: still refused (the dataset has 40 patches)
    for t in ("ref", *(f"{n}{i}" for n in "eht" for i in range(1, 6) if f"{n}{i}" != "e1")):
        append_row(exported / seq / f"{t}.csv")
    result = evaluate(data, exported, tmp_path / "c")
    assert result.exit_code == 2 and "has 41 rows" in result.output


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda v: v[:-1], "ragged row: line 3 has 127 values, line 1 has 128"),
        (lambda v: v + ["1"], "ragged row: line 3 has 129 values, line 1 has 128"),
        (lambda v: v[:5] + ["nan"] + v[6:], "line 3, value 6 is NaN or infinite"),
        (lambda v: v[:5] + ["abc"] + v[6:], "line 3, value 6 is not a number: 'abc'"),
    ],
)
def test_bad_rows_are_reported_with_file_and_line(made, exported, tmp_path, damage, message):
    data, _ = made
    path = exported / sorted(p.name for p in exported.iterdir() if p.is_dir())[0] / "h2.csv"
    lines = path.read_text().splitlines()
    lines[2] = ",".join(damage(lines[2].split(",")))
    path.write_text("\n".join(lines) + "\n")
    result = evaluate(data, exported, tmp_path / "out")
    assert result.exit_code == 2
    assert f"{path}: {message}" in result.output, result.output


def test_other_folders_beside_the_sequences_are_ignored(made, exported, tmp_path):
    data, _ = made
    (exported / "notes").mkdir()
    (exported / ".ipynb_checkpoints").mkdir()
    (exported / ".ipynb_checkpoints" / "x.txt").write_text("x")
    result = evaluate(data, exported, tmp_path / "out", "--tasks", "matching")
    assert result.exit_code == 0, result.output
    # a sequence the split needs is still required
    shutil.rmtree(exported / sorted(p.name for p in exported.iterdir() if p.name.startswith(("i_", "v_")))[0])
    result = evaluate(data, exported, tmp_path / "out2", "--tasks", "matching")
    assert result.exit_code == 2 and "missing from" in result.output


def test_export_of_another_dataset_version_is_refused(made, exported, tmp_path):
    data, _ = made
    path = exported / "desc-bench-export.json"
    manifest = json.loads(path.read_text())
    manifest["dataset_version"] = "hpatches-synth-g0-000000000000"
    path.write_text(json.dumps(manifest))
    result = evaluate(data, exported, tmp_path / "out")
    assert result.exit_code == 2 and "export them again" in result.output
    path.write_text("{" * 100_000)  # deeply nested: a clear error, not a RecursionError
    result = evaluate(data, exported, tmp_path / "out")
    assert result.exit_code == 2 and "cannot read export manifest" in result.output


def test_descriptor_files_without_a_manifest_still_evaluate(made, exported, tmp_path):
    data, _ = made
    (exported / "desc-bench-export.json").unlink()
    result = evaluate(data, exported, tmp_path / "out", "--tasks", "matching")  # default dataset: hpatches-synth
    assert result.exit_code == 0, result.output
    assert {r["dataset"] for r in record_rows(tmp_path / "out")} == {"hpatches-synth"}
    assert np.isfinite([r["value"] for r in record_rows(tmp_path / "out")]).all()
