"""``desc-bench data make-patches``: real image sequences (four of the Oxford sequences in ../shared)
become an HPatches-style patch dataset that ``run`` evaluates like hpatches; bad input is refused."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from desc_bench.cli import main
from desc_bench.datasets import registry
from desc_bench.datasets.base import PATCH_TYPES, read_patch_file
from desc_bench.datasets.made_patches import MakeParams, make_patches
from desc_bench.errors import DatasetError, InputError, UnknownNameError

SEQUENCES = ("graf", "leuven")  # one viewpoint, one photometric (light) sequence


@pytest.fixture(scope="module")
def oxford(shared, tmp_path_factory):
    source = tmp_path_factory.mktemp("oxford-source")
    for name in SEQUENCES:
        shutil.copytree(shared / "data" / "oxford-affine" / name, source / name)
    return source


@pytest.fixture(scope="module")
def made(oxford, tmp_path_factory):
    data = tmp_path_factory.mktemp("made-data")
    result = CliRunner().invoke(
        main,
        [
            "data",
            "make-patches",
            "--from",
            str(oxford),
            "--name",
            "my-oxford",
            "--patches",
            "40",
            "--data-dir",
            str(data),
        ]
        + ["--pairs", "300", "--queries", "30", "--distractors", "60", "-q"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "desc-bench run -d sift-opencv --dataset my-oxford" in result.output
    return data


def test_made_dataset_has_the_hpatches_layout_and_jitter(made):
    root = made / "my-oxford"
    info = json.loads((root / "made.json").read_text())
    assert sorted(info["sequences"]) == ["i_leuven", "v_graf"]
    for name, about in info["sequences"].items():
        assert about["patches"] == 40 and about["valid_frames"] > 1000
        # HPatches' Easy / Hard / Tough jitter: median overlaps about 0.85, 0.72, 0.61
        assert about["overlap_median"]["e"] == pytest.approx(0.85, abs=0.03)
        assert about["overlap_median"]["h"] == pytest.approx(0.72, abs=0.03)
        assert about["overlap_median"]["t"] == pytest.approx(0.61, abs=0.03)
        files = {t: read_patch_file(root / name / f"{t}.png") for t in PATCH_TYPES}
        assert {p.shape for p in files.values()} == {(40, 65, 65)}
        # the targets show the reference regions: e1 is closer to ref than a shuffled ref is
        ref, e1 = files["ref"].astype(np.float32), files["e1"].astype(np.float32)
        same = np.corrcoef(ref.reshape(40, -1), e1.reshape(40, -1))[:40, 40:]
        assert np.median(np.diag(same)) > np.median(same[~np.eye(40, dtype=bool)]) + 0.2
    splits = json.loads((root / "tasks" / "splits" / "splits.json").read_text())
    assert sorted(splits["full"]["test"]) == sorted(info["sequences"]) and splits["view"]["test"] == ["v_graf"]
    assert (root / "tasks" / "verif_pos_split-a.csv").is_file() and (
        root / "tasks" / "retr_queries_split-c.csv"
    ).is_file()


def test_run_evaluates_a_made_dataset_like_hpatches(made, tmp_path):
    listed = CliRunner().invoke(main, ["list", "--data-dir", str(made)])
    assert "my-oxford" in listed.output
    result = CliRunner().invoke(
        main,
        ["run", "-d", "sift-opencv", "--dataset", "my-oxford", "--data-dir", str(made), "-o", str(tmp_path), "-q"]
        + ["--time-batch", "0", "--tasks", "matching"],
        env={"DESC_BENCH_CACHE": str(tmp_path / "cache")},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    record = json.loads(next(tmp_path.glob("my-oxford-*.json")).read_text())
    mean = next(
        r["value"]
        for r in record["results"]
        if r["task"] == "matching" and r["noise"] == "easy" and r["subset"] == "all" and r["variant"] == ""
    )
    assert 0.3 < mean <= 1.0  # SIFT on real Easy patches matches well above chance (1/40)
    assert registry.dataset("my-oxford", data_dir=made).version.startswith("made1-")


def test_bad_requests_are_refused(oxford, made, tmp_path):
    with pytest.raises(InputError, match="exists; pass --overwrite"):
        make_patches(oxford, "my-oxford", made, MakeParams(patches=5))
    with pytest.raises(InputError, match="built-in dataset"):
        make_patches(oxford, "hpatches", tmp_path, MakeParams(patches=5))
    with pytest.raises(InputError, match="must be letters"):
        make_patches(oxford, "../x", tmp_path, MakeParams(patches=5))
    views = tmp_path / "views"
    shutil.copytree(oxford / "graf", views / "graf")
    with pytest.raises(DatasetError, match="need both i_ and v_"):
        make_patches(views, "x", tmp_path, MakeParams(patches=5))
    shutil.copytree(oxford / "graf", views / "mine")
    with pytest.raises(DatasetError, match="needs an i_ .* or v_ .* prefix"):
        make_patches(views, "x", tmp_path, MakeParams(patches=5))
    with pytest.raises(UnknownNameError):
        registry.dataset("no-such-made", data_dir=made)
    assert not (tmp_path / "x").exists()  # nothing half-made is left
