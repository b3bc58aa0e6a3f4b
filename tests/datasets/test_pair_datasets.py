"""The real image-pair datasets around the readers: downloads against a local HTTP server (pinned
checksums, structure checks, clear messages with the manual layout), partial copies and their
completeness, a --data-dir that is the dataset folder itself, stray folders, homography scale."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from _local_http import Server
from click.testing import CliRunner

from desc_bench.cli import main
from desc_bench.datasets import pairs, sequence_downloads
from desc_bench.datasets import sequences as S
from desc_bench.datasets.registry import dataset, open_dataset
from desc_bench.errors import DatasetError, DownloadError
from desc_bench.io.download import Archive


@pytest.fixture()
def server():
    """A local HTTP server for one test (see _local_http.py)."""
    s = Server()
    yield s
    s.close()


def _ppm(value: int) -> bytes:
    return cv2.imencode(".ppm", np.full((6, 8, 3), value, np.uint8))[1].tobytes()


def _homography(scale: float = 1.0) -> bytes:
    return (" ".join(f"{v:.17g}" for v in (np.eye(3) * scale).ravel()) + "\n").encode()


def _oxford_files() -> dict[str, bytes]:
    files = {f"img{k}.ppm": _ppm(20 * k) for k in range(1, 7)}
    files.update({f"H1to{k}p": _homography() for k in range(2, 7)})
    return files


def _hpatches_files() -> dict[str, bytes]:
    files = {f"{k}.ppm": _ppm(20 * k) for k in range(1, 7)}
    files.update({f"H_1_{k}": _homography() for k in range(2, 7)})
    return files


def _targz(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _write(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


@pytest.fixture()
def oxford_server(server, monkeypatch):
    monkeypatch.setattr(sequence_downloads, "OXFORD_URL", server.url("/ox/{seq}.tar.gz"))
    monkeypatch.setattr(sequence_downloads, "OXFORD_SEQUENCES", ("graf", "wall"))
    return server


# ------------------------------------------------------------------------------------- Oxford


def test_oxford_download_verifies_the_pinned_checksum_and_the_structure(oxford_server, data_dir, monkeypatch):
    graf = _targz(_oxford_files())  # flat, as the VGG archives are
    wall = _targz({f"wall/{n}": d for n, d in _oxford_files().items()})  # or with a top folder
    oxford_server.files["/ox/graf.tar.gz"] = graf
    oxford_server.queue["/ox/wall.tar.gz"] = [wall[:50], wall]  # a truncated copy first
    monkeypatch.setattr(sequence_downloads, "OXFORD_SHA256", {"graf": hashlib.sha256(graf).hexdigest()})
    result = CliRunner().invoke(main, ["data", "download", "oxford-affine", "-q"])
    assert result.exit_code == 0, result.output
    assert "truncated or corrupt" in result.output and "downloading it again" in result.output
    root = data_dir / "oxford-affine"
    for seq in ("graf", "wall"):
        assert sorted(p.name for p in (root / seq).iterdir()) == sorted([*_oxford_files(), "SOURCE.json"])
    assert json.loads((root / "graf" / "SOURCE.json").read_text())["verified_by"] == "sha256"
    assert "no published checksum" in json.loads((root / "wall" / "SOURCE.json").read_text())["verified_by"]
    assert list((data_dir / "downloads").iterdir()) == []  # archives removed after extraction

    pairset = dataset("oxford-affine")  # 2 of the 8 sequences: opens, and says it is partial
    assert pairset.names() == ("graf", "wall") and pairset.default_protocol == "oxford-ms"
    assert (pairset.sequence_count, pairset.pair_count) == (2, 10)
    assert (pairset.expected_sequences, pairset.expected_pairs, pairset.complete) == (8, 40, False)
    assert pairset.missing == ("boat", "bark", "bikes", "trees", "leuven", "ubc")
    assert "2 of 8 sequences (10 of 40 pairs); missing boat" in pairset.describe_completeness()


def test_oxford_wrong_checksum_is_refused_with_the_manual_layout(oxford_server, data_dir, monkeypatch):
    oxford_server.files["/ox/graf.tar.gz"] = _targz(_oxford_files())
    monkeypatch.setattr(sequence_downloads, "OXFORD_SHA256", {"graf": "0" * 64})
    result = CliRunner().invoke(main, ["data", "download", "oxford-affine"])
    assert result.exit_code == 2
    message = result.output
    assert "sha256 mismatch" in message and "cannot get the Oxford sequence 'graf'" in message
    assert "img1.ppm..img6.ppm" in message and "H1to2p..H1to6p" in message and "--data-dir" in message
    assert "Traceback" not in message and "Aborted" not in message
    assert not (data_dir / "oxford-affine").exists() and list((data_dir / "downloads").iterdir()) == []


def test_oxford_archive_without_homographies_is_refused_and_deleted(oxford_server, data_dir, monkeypatch):
    files = _oxford_files()
    del files["H1to6p"]
    oxford_server.files["/ox/graf.tar.gz"] = _targz(files)
    monkeypatch.setattr(sequence_downloads, "OXFORD_SHA256", {})
    with pytest.raises(DownloadError, match=r"H1to6p") as info:
        sequence_downloads.download_oxford(data_dir, progress=False, sequences=("graf",))
    assert "lay it out as" in str(info.value)
    assert list((data_dir / "oxford-affine").iterdir()) == [] and list((data_dir / "downloads").iterdir()) == []


def test_oxford_archives_are_https_with_bounds_and_the_known_checksums():
    for seq in S.OXFORD_SEQUENCES:
        archive = sequence_downloads.oxford_archive(seq)
        assert all(url.startswith("https://") for url in archive.urls)
        assert archive.max_bytes and archive.limits.max_entries <= 64
        assert (archive.sha256 is not None) == (seq in ("graf", "boat", "leuven")), seq
    assert sequence_downloads.HPATCHES_ARCHIVES[0].urls[0].startswith("https://")


# ------------------------------------------------------------------------- HPatches sequences


@pytest.fixture()
def small_release(monkeypatch):
    """The structure check scaled down: 2 i_ and 1 v_ sequences, i_dc among the large ones."""
    monkeypatch.setattr(sequence_downloads, "HPATCHES_COUNTS", {"i": 2, "v": 1})
    monkeypatch.setattr(sequence_downloads, "MMA_EXCLUDED", frozenset({"i_dc"}))
    return {f"{seq}/{n}": d for seq in ("i_dc", "i_ok", "v_ok") for n, d in _hpatches_files().items()}


def test_hpatches_sequences_download_checks_the_release(server, data_dir, small_release, monkeypatch):
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        for name, data in small_release.items():
            zf.writestr(f"hpatches-sequences-release/{name}", data)
        zf.writestr("__MACOSX/._junk", b"resource fork")  # beside the release folder: dropped
    server.files["/hp.zip"] = zipped.getvalue()
    monkeypatch.setattr(
        sequence_downloads,
        "HPATCHES_ARCHIVES",
        (Archive((server.url("/missing.zip"),), "a.zip"), Archive((server.url("/hp.zip"),), "hp.zip")),
    )
    result = CliRunner().invoke(main, ["data", "download", "hpatches-seq", "-q"])
    assert result.exit_code == 0, result.output
    root = data_dir / "hpatches-sequences-release"
    assert sorted(p.name for p in root.iterdir()) == ["SOURCE.json", "i_dc", "i_ok", "v_ok"]
    full = dataset("hpatches-seq-full")
    assert full.names() == ("i_dc", "i_ok", "v_ok") and full.expected_sequences == 116 and not full.complete
    assert dataset("hpatches-seq").names() == ("i_ok", "v_ok")  # the MMA subset leaves i_dc out


def test_hpatches_sequences_with_the_wrong_structure_are_refused(server, data_dir, small_release, monkeypatch):
    del small_release["v_ok/H_1_3"]
    server.files["/hp.tar.gz"] = _targz(small_release)
    monkeypatch.setattr(sequence_downloads, "HPATCHES_ARCHIVES", (Archive((server.url("/hp.tar.gz"),), "hp.tar.gz"),))
    with pytest.raises(DownloadError) as info:
        S.HPatchesSequences().download(data_dir, progress=False)
    message = str(info.value)
    assert "v_ok" in message and "H_1_3" in message and "1.ppm..6.ppm" in message and "--data-dir" in message
    assert "hpatches-seq-synth" in message
    assert not (data_dir / "hpatches-sequences-release").exists()
    assert list((data_dir / "downloads").iterdir()) == []


# ----------------------------------------------------------------------------- folders and files


def test_data_dir_may_be_the_dataset_folder_itself(tmp_path):
    mine = tmp_path / "my-hpatches-seq"
    for seq in ("i_one", "v_two"):
        _write(mine / seq, _hpatches_files())
    assert S.HPatchesSequencesFull().availability(mine) is None
    pairset = open_dataset("hpatches-seq-full", data_dir=mine, progress=False)
    assert pairset.names() == ("i_one", "v_two") and pairset.describe_completeness().startswith("2 of 116")
    oxford = tmp_path / "my-oxford"
    _write(oxford / "graf", _oxford_files())
    assert dataset("oxford-affine", data_dir=oxford).names() == ("graf",)


def test_a_folder_beside_the_sequences_is_not_a_sequence(tmp_path):
    root = tmp_path / "hpatches-sequences-release"
    _write(root / "i_one", _hpatches_files())
    _write(root / "notes", {"todo.txt": b"look at v_two"})
    (root / "README.txt").write_text("my copy")
    assert S.HPatchesSequencesFull().open(tmp_path).names() == ("i_one",)
    _write(root / "v_half", {"1.ppm": _ppm(1)})  # looks like a sequence: incomplete, named
    with pytest.raises(DatasetError, match=r"v_half.*H_1_2"):
        S.HPatchesSequencesFull().open(tmp_path)


def test_a_homography_scaled_by_1e5_is_valid_and_a_singular_one_is_refused(tmp_path):
    (tmp_path / "H").write_bytes(_homography(1e-5))
    np.testing.assert_allclose(pairs.read_homography(tmp_path / "H"), np.eye(3) * 1e-5)  # returned as stored
    (tmp_path / "H").write_bytes(_homography(1e5))
    assert pairs.read_homography(tmp_path / "H")[0, 0] == 1e5
    (tmp_path / "S").write_text("1 2 3\n2 4 6\n0 0 1\n")
    with pytest.raises(DatasetError, match="singular"):
        pairs.read_homography(tmp_path / "S")
    (tmp_path / "Z").write_text("0 0 0\n0 0 0\n0 0 0\n")
    with pytest.raises(DatasetError, match="singular"):
        pairs.read_homography(tmp_path / "Z")


def test_completeness_of_the_embedded_sets_and_of_subsets(seq_synth_data):
    pairset = dataset("hpatches-seq-synth", data_dir=seq_synth_data)
    assert pairset.complete and pairset.sequence_count == pairset.expected_sequences == 8
    assert pairset.pair_count == pairset.expected_pairs == 40 and pairset.missing == ()
    small = pairset.subset(["v_camera"])
    assert not small.complete and small.missing == tuple(n for n in pairset.names() if n != "v_camera")
    er = dataset("hpatches-seq-synth-er", data_dir=seq_synth_data)
    assert er.complete and er.expected_sequences == 8 and er.name == "hpatches-seq-synth-er"


def test_open_dataset_progress_false_draws_no_generation_bar(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DESC_BENCH_PROGRESS", "1")  # bars forced on although stderr is captured
    open_dataset("hpatches-seq-synth", data_dir=tmp_path / "quiet", progress=False)
    assert capsys.readouterr().err == ""
    open_dataset("hpatches-seq-synth", data_dir=tmp_path / "loud", progress=True)
    assert "hpatches-seq-synth: sequences" in capsys.readouterr().err
