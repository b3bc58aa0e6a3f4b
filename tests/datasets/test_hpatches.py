"""The real-HPatches loader on tiny release-layout folders, its errors, and its download wiring.

Downloads run against a local HTTP server on 127.0.0.1 (the archive and task files are built here);
the task generator is replaced by a recording stub so these tests do not depend on its speed.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import sys
import tarfile
import threading
import types
from pathlib import Path

import cv2
import numpy as np
import pytest

from desc_bench.datasets import hpatches
from desc_bench.datasets.base import PATCH_TYPES, PatchSet, read_patch_file
from desc_bench.datasets.registry import dataset, datasets
from desc_bench.errors import DatasetError, DownloadError
from desc_bench.io.download import Archive, sha256_file

COUNTS = {"i_tiny": 3, "v_tiny": 2}
SPLITS = {
    "a": {"name": "a", "test": ["v_tiny"], "train": ["i_tiny"]},
    "full": {"name": "full", "test": ["i_tiny", "v_tiny"]},
}


def _patches(seq: str, patch_type: str, n: int) -> np.ndarray:
    seed = sum(map(ord, seq + patch_type))
    return np.random.default_rng(seed).integers(0, 256, (n, 65, 65), dtype=np.uint8)


def make_release(root: Path, counts=COUNTS) -> Path:
    for seq, n in counts.items():
        (root / seq).mkdir(parents=True, exist_ok=True)
        for t in PATCH_TYPES:
            cv2.imwrite(str(root / seq / f"{t}.png"), _patches(seq, t, n).reshape(n * 65, 65))
    return root


def make_tasks(tasks: Path) -> Path:
    (tasks / "splits").mkdir(parents=True, exist_ok=True)
    (tasks / "splits" / "splits.json").write_text(json.dumps(SPLITS))
    return tasks


@pytest.fixture()
def installed(data_dir) -> Path:
    make_release(data_dir / "hpatches" / "hpatches-release")
    make_tasks(data_dir / "hpatches" / "tasks")
    return data_dir


# ---------------------------------------------------------------------------------------- loading


def test_open_and_load_a_release(installed):
    ds = dataset("hpatches")  # data root from DESC_BENCH_DATA (the data_dir fixture)
    assert isinstance(ds, PatchSet) and ds.name == "hpatches" and ds.version == hpatches.VERSION
    assert ds.root == installed / "hpatches" / "hpatches-release"
    assert ds.sequence_names() == ("i_tiny", "v_tiny")
    patches = ds.load("i_tiny")
    assert set(patches) == set(PATCH_TYPES)
    for t, p in patches.items():
        assert p.dtype == np.uint8 and p.shape == (3, 65, 65)
        np.testing.assert_array_equal(p, _patches("i_tiny", t, 3))
    assert ds.patch_count("v_tiny") == 2
    assert ds.split("a").test == ("v_tiny",) and ds.split("a").train == ("i_tiny",)
    assert hpatches.check_release(ds.root) == COUNTS
    row = {d.name: d for d in datasets()}["hpatches"]
    assert row.available and row.status == "ok" and row.kind == "patches"


def test_a_loaded_sequence_is_kept_until_its_files_change(installed, monkeypatch):
    from desc_bench.datasets import base

    ds = dataset("hpatches")
    reads = []
    monkeypatch.setattr(base, "read_patch_file", lambda path: reads.append(path.name) or read_patch_file(path))
    first = ds.load("i_tiny")
    assert len(reads) == 16 and not first["ref"].flags.writeable  # shared: read-only
    again = ds.load("i_tiny")
    assert len(reads) == 16 and all(np.array_equal(again[t], first[t]) for t in PATCH_TYPES)
    changed = _patches("i_tiny", "e1", 3)[::-1]
    cv2.imwrite(str(installed / "hpatches" / "hpatches-release" / "i_tiny" / "ref.png"), changed.reshape(-1, 65))
    fresh = ds.load("i_tiny")  # another size or modification time: read again
    assert len(reads) == 32 and np.array_equal(fresh["ref"], changed)


def test_benchmark_layout_is_found(data_dir):
    make_release(data_dir / "hpatches-release")  # hpatches-benchmark's data/hpatches-release
    make_tasks(data_dir / "hpatches" / "tasks")
    assert dataset("hpatches").root == data_dir / "hpatches-release"


def test_missing_dataset_says_how_to_get_it(data_dir):
    with pytest.raises(DatasetError) as info:
        dataset("hpatches")
    message = str(info.value)
    assert "desc-bench data download hpatches" in message and "hpatches-synth" in message
    assert str(data_dir) in message
    make_release(data_dir / "hpatches" / "hpatches-release")
    with pytest.raises(DatasetError, match="task files are missing.*splits.json"):
        dataset("hpatches")
    row = {d.name: d for d in datasets()}["hpatches"]
    assert not row.available and "desc-bench data download hpatches" in row.status


def _seq(installed: Path) -> Path:
    return installed / "hpatches" / "hpatches-release" / "v_tiny"


def test_height_not_a_multiple_of_65_names_the_file(installed):
    bad = _seq(installed) / "h2.png"
    cv2.imwrite(str(bad), np.zeros((2 * 65 + 7, 65), np.uint8))
    for check in (lambda: dataset("hpatches").load("v_tiny"), lambda: hpatches.check_sequence(bad.parent)):
        with pytest.raises(DatasetError, match="multiple of 65") as info:
            check()
        assert str(bad) in str(info.value) and "137" in str(info.value)


def test_wrong_width_names_the_file(installed):
    bad = _seq(installed) / "e4.png"
    cv2.imwrite(str(bad), np.zeros((130, 64), np.uint8))
    with pytest.raises(DatasetError, match="64x130") as info:
        read_patch_file(bad)
    assert str(bad) in str(info.value)
    with pytest.raises(DatasetError, match=str(bad)):
        hpatches.check_sequence(bad.parent)


def test_missing_type_file_names_the_file(installed):
    gone = _seq(installed) / "t3.png"
    gone.unlink()
    for check in (lambda: dataset("hpatches").load("v_tiny"), lambda: hpatches.check_release(gone.parent.parent)):
        with pytest.raises(DatasetError, match="missing patch file") as info:
            check()
        assert str(gone) in str(info.value)


def test_different_patch_counts_name_the_file(installed):
    bad = _seq(installed) / "e2.png"
    cv2.imwrite(str(bad), _patches("x", "y", 4).reshape(4 * 65, 65))
    for check in (lambda: dataset("hpatches").load("v_tiny"), lambda: hpatches.check_sequence(bad.parent)):
        with pytest.raises(DatasetError, match="same number|as many patches") as info:
            check()
        assert f"{bad} has 4" in str(info.value)


def test_not_a_png_names_the_file(installed):
    bad = _seq(installed) / "ref.png"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(DatasetError, match="not a PNG") as info:
        hpatches.check_sequence(bad.parent)
    assert str(bad) in str(info.value)
    with pytest.raises(DatasetError, match=str(bad)):
        read_patch_file(bad)


def test_missing_sequence_folder(installed):
    with pytest.raises(DatasetError, match="v_nowhere"):
        dataset("hpatches").load("v_nowhere")


def test_real_patch_file(shared):
    path = shared / "data" / "hpatches-patches-sample" / "likely_v_graffiti" / "ref.png"
    assert hpatches.png_size(path) == (65, 72995)
    patches = read_patch_file(path)
    assert patches.shape == (1123, 65, 65) and patches.dtype == np.uint8
    assert 40 < patches.mean() < 215 and patches.std(axis=(1, 2)).min() > 0  # real texture, no blank patch


def test_task_checksums_match_the_shared_copies(shared):
    tasks = shared / "data" / "hpatches-tasks"
    for name, sha in hpatches.TASK_SHA256.items():
        assert sha256_file(tasks / name) == sha, name
    assert set(hpatches.task_file_names(["a"])) >= {"retr_queries_split-a.csv", "verif_neg_inter_split-a.csv"}


# --------------------------------------------------------------------------------------- download


class Files(http.server.ThreadingHTTPServer):
    """Serves ``self.files`` (URL path -> bytes), 404 otherwise; records the paths asked for."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.asked: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.asked.append(self.path)
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        super().__init__(("127.0.0.1", 0), Handler)
        self.daemon_threads = True
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


@pytest.fixture()
def files():
    server = Files()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture()
def generator(monkeypatch):
    """A stand-in for desc_bench.datasets.tasks that records its calls and writes placeholder CSVs."""
    calls = []

    def generate_task_files(tasks_dir, splits, patch_counts, *, split_names=None, progress=True, **kw):
        calls.append({"splits": dict(splits), "patch_counts": dict(patch_counts), "split_names": split_names, **kw})
        for s in split_names:
            for kind in hpatches.TASK_KINDS:
                (Path(tasks_dir) / f"{kind}_split-{s}.csv").write_text(f"generated {kind} {s}\n")

    module = types.ModuleType("desc_bench.datasets.tasks")
    module.generate_task_files = generate_task_files
    monkeypatch.setitem(sys.modules, "desc_bench.datasets.tasks", module)
    import desc_bench.datasets as package

    monkeypatch.setattr(package, "tasks", module, raising=False)
    return calls


def _release_archive(tmp_path: Path) -> bytes:
    src = make_release(tmp_path / "src" / "hpatches-release")
    with tarfile.open(tmp_path / "release.tar.gz", "w:gz") as tar:
        tar.add(src, arcname="hpatches-release")
    return (tmp_path / "release.tar.gz").read_bytes()


def test_download_fetches_verifies_extracts_and_regenerates(data_dir, tmp_path, files, generator, monkeypatch):
    archive = _release_archive(tmp_path)
    files.files["/mirror2/hpatches-release.tar.gz"] = archive
    splits_json = json.dumps(SPLITS).encode()
    files.files["/tasks/splits/splits.json"] = splits_json
    for s in ("a", "full"):
        files.files[f"/tasks/retr_queries_split-{s}.csv"] = b"s,idx\nv_tiny,1\n"
        files.files[f"/tasks/retr_distractors_split-{s}.csv"] = b"s,idx\ni_tiny,0\n"
    files.files["/tasks/verif_pos_split-a.csv"] = b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n"
    md5 = hashlib.md5(archive).hexdigest()
    monkeypatch.setattr(
        hpatches,
        "ARCHIVE_MIRRORS",
        (
            Archive((files.url("/mirror1/hpatches-release.tar.gz"),), "one.tar.gz", md5=md5),
            Archive((files.url("/mirror2/hpatches-release.tar.gz"),), "two.tar.gz", md5=md5),
        ),
    )
    monkeypatch.setattr(hpatches, "TASKS_BASE_URL", files.url("/tasks/"))
    monkeypatch.setattr(hpatches, "TASK_SHA256", {"splits/splits.json": hashlib.sha256(splits_json).hexdigest()})

    from click.testing import CliRunner

    from desc_bench.cli import main
    from desc_bench.datasets.registry import download

    result = CliRunner().invoke(main, ["data", "download", "hpatches", "--quiet"])
    assert result.exit_code == 0, result.output
    folder = data_dir / "hpatches"
    assert f"ready at {folder}" in result.output
    assert files.asked[0] == "/mirror1/hpatches-release.tar.gz"  # 404, then the second mirror
    assert sorted(p.name for p in folder.iterdir()) == ["MANIFEST.json", "hpatches-release", "tasks"]

    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(archive).hexdigest() and manifest["md5"] == md5
    assert manifest["size"] == len(archive) and manifest["sequences"] == 2 and manifest["patches"] == 5

    # every verification file failed (404 or an LFS pointer): regenerated, one call for both splits
    assert len(generator) == 1
    assert generator[0]["split_names"] == ["a", "full"] and generator[0]["patch_counts"] == COUNTS
    assert generator[0]["kinds"] == ("verification",)  # the retrieval files were downloaded
    sources = json.loads((folder / "tasks" / "SOURCES.json").read_text())
    assert sources["retr_queries_split-a.csv"]["origin"] == "downloaded"
    assert sources["verif_pos_split-a.csv"]["origin"] == "regenerated"
    assert "git-lfs" in sources["verif_pos_split-a.csv"]["detail"]
    assert (folder / "tasks" / "retr_queries_split-a.csv").read_bytes() == b"s,idx\nv_tiny,1\n"  # kept
    assert (folder / "tasks" / "verif_pos_split-a.csv").read_text() == "generated verif_pos a\n"
    assert not [p for p in (folder / "tasks").iterdir() if p.name.startswith(".")]

    ds = dataset("hpatches")
    np.testing.assert_array_equal(ds.load("v_tiny")["h5"], _patches("v_tiny", "h5", 2))

    n = len(files.asked)
    download("hpatches", progress=False)  # everything present: no request
    assert len(files.asked) == n


def test_download_refuses_a_corrupt_archive(data_dir, tmp_path, files, monkeypatch):
    archive = _release_archive(tmp_path)
    files.files["/r.tar.gz"] = archive
    monkeypatch.setattr(hpatches, "ARCHIVE_MIRRORS", (Archive((files.url("/r.tar.gz"),), "r.tar.gz", md5="0" * 32),))
    with pytest.raises(DownloadError, match="md5 mismatch") as info:
        hpatches.HPatches().download(data_dir, progress=False)
    assert "hpatches-synth" in str(info.value)
    assert [p.name for p in (data_dir / "hpatches").iterdir()] == []


def test_download_refuses_an_archive_without_the_release_layout(data_dir, tmp_path, files, monkeypatch):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "readme.txt").write_text("not hpatches")
    with tarfile.open(tmp_path / "j.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "junk", arcname="junk")
    files.files["/j.tar.gz"] = (tmp_path / "j.tar.gz").read_bytes()
    monkeypatch.setattr(hpatches, "ARCHIVE_MIRRORS", (Archive((files.url("/j.tar.gz"),), "j.tar.gz"),))
    with pytest.raises(DatasetError, match="hpatches-release layout"):
        hpatches.download_release(data_dir / "hpatches", progress=False)
    # an unverifiable file that is not the release is deleted (never reused), nothing is extracted
    assert sorted(p.name for p in (data_dir / "hpatches").iterdir()) == []


def test_download_tasks_without_regeneration_reports_failures(data_dir, files, monkeypatch):
    release = make_release(data_dir / "hpatches" / "hpatches-release")
    files.files["/t/splits/splits.json"] = json.dumps(SPLITS).encode()
    monkeypatch.setattr(hpatches, "TASK_SHA256", {})
    with pytest.raises(DatasetError, match="HTTP 404"):
        hpatches.download_tasks(
            data_dir / "hpatches" / "tasks",
            release,
            progress=False,
            split_names=("a",),
            base_url=files.url("/t/"),
            regenerate=False,
        )
    with pytest.raises(DatasetError, match="splits file"):
        hpatches.download_tasks(data_dir / "other", release, progress=False, base_url=files.url("/none/"))


def test_regeneration_with_the_real_generator(data_dir, monkeypatch):
    """The wiring against desc_bench.datasets.tasks itself, at toy sizes (the official sizes are slow)."""
    import functools

    tasks_module = pytest.importorskip("desc_bench.datasets.tasks")
    monkeypatch.setattr(
        tasks_module,
        "generate_task_files",
        functools.partial(tasks_module.generate_task_files, n_pairs=50, n_queries=2, n_distractors=2),
    )
    release = make_release(data_dir / "hpatches" / "hpatches-release")
    tasks = make_tasks(data_dir / "hpatches" / "tasks")
    made = hpatches.download_tasks(tasks, release, progress=False, base_url="http://127.0.0.1:9/")
    assert {f.name for f in made if f.origin == "regenerated"} == set(hpatches.task_file_names(["a", "full"]))
    assert hpatches.missing_task_files(tasks, ["a", "full"]) == ()
    pairs = tasks_module.read_pairs(tasks / "verif_pos_split-full.csv")
    assert len(pairs) == 50
