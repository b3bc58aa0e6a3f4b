"""megadepth-1500: the download is bounded and its structure checked (served from 127.0.0.1), and the
poses and intrinsics are read as glue-factory reads them (T_0to1 = T_1 T_0^-1; COLMAP's corner
convention moved to pixel centres at integers)."""

from __future__ import annotations

import io
import zipfile

import cv2
import numpy as np
import pytest
from _local_http import Server

from desc_bench.datasets import megadepth1500 as M
from desc_bench.datasets.registry import dataset
from desc_bench.errors import DatasetError, DownloadError
from desc_bench.io.download import Archive


@pytest.fixture()
def server():
    s = Server()
    yield s
    s.close()


def rot(deg):
    R, _ = cv2.Rodrigues(np.array([0.1, 1.0, 0.2]) * np.deg2rad(deg) / np.linalg.norm([0.1, 1.0, 0.2]))
    return R


def view_line(name, R, t, camera="PINHOLE 8 6 500 510 4 3"):
    return " ".join([name, *map(repr, R.ravel().tolist()), *map(repr, t.tolist()), camera])


def archive(views: str, pairs: str, images=("a.jpg", "b.jpg")) -> bytes:
    jpg = cv2.imencode(".jpg", np.full((6, 8, 3), 128, np.uint8))[1].tobytes()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name in images:
            zf.writestr(f"megadepth1500/images/{name}", jpg)
        zf.writestr("megadepth1500/views.txt", views)
        zf.writestr("megadepth1500/pairs.txt", pairs)
    return out.getvalue()


def test_download_checks_structure_and_reads_the_poses(server, data_dir, monkeypatch):
    R0, t0, R1, t1 = rot(10), np.array([0.1, 0.2, 0.3]), rot(-5), np.array([1.0, 0.0, -0.5])
    views = view_line("a.jpg", R0, t0) + "\n" + view_line("b.jpg", R1, t1, "SIMPLE_RADIAL 8 6 500 4 3 0") + "\n"
    server.files["/md.zip"] = archive(views, "a.jpg b.jpg\n")
    monkeypatch.setattr(M, "ARCHIVES", (Archive((server.url("/md.zip"),), "md.zip", max_bytes=1 << 20),))
    assert "desc-bench data download megadepth-1500" in M.MegaDepth1500().availability(data_dir)
    M.MegaDepth1500().download(data_dir, progress=False)
    data = dataset("megadepth-1500")
    assert len(data.pairs) == 1 and not data.complete  # 1 of 1500 pairs
    pair = data.pairs[0]
    np.testing.assert_allclose(pair.R, R1 @ R0.T)
    np.testing.assert_allclose(pair.t, t1 - R1 @ R0.T @ t0)
    np.testing.assert_allclose(pair.K0, [[500, 0, 3.5], [0, 510, 2.5], [0, 0, 1]])
    np.testing.assert_allclose(pair.K1, [[500, 0, 3.5], [0, 500, 2.5], [0, 0, 1]])
    assert (data_dir / "megadepth1500" / "SOURCE.json").is_file()


def test_missing_image_or_distortion_is_refused(server, data_dir, monkeypatch):
    R, t = np.eye(3), np.zeros(3)
    views = view_line("a.jpg", R, t) + "\n" + view_line("b.jpg", R, t) + "\n"
    server.files["/md.zip"] = archive(views, "a.jpg b.jpg\n", images=("a.jpg",))
    monkeypatch.setattr(M, "ARCHIVES", (Archive((server.url("/md.zip"),), "md.zip", max_bytes=1 << 20),))
    with pytest.raises(DownloadError, match="b.jpg is missing"):
        M.MegaDepth1500().download(data_dir, progress=False)
    assert not (data_dir / "megadepth1500").exists()
    with pytest.raises(DatasetError, match="distortion"):
        M._camera("OPENCV 8 6 500 500 4 3 0.1 0 0 0".split(), "views.txt line 1")
    with pytest.raises(DatasetError, match="not supported"):
        M._camera("FISHEYE 8 6 500".split(), "views.txt line 1")
