"""st-peters: GIFT's pair selection (100 <= vis <= 200, i < j row-major, the first 100), its
principal-point shift and pose composition, on a tiny copy served from 127.0.0.1. GIFT's own
``get_rel_pair_dataset`` (h5py ``.value`` read as ``[()]``), run in a scratch folder on this copy,
selected the same four pairs with the same R01, T01, K0 and K1."""

from __future__ import annotations

import io
import tarfile

import cv2
import numpy as np
import pytest
from _local_http import Server

from desc_bench.datasets import st_peters as SP
from desc_bench.errors import DownloadError
from desc_bench.io.download import Archive

h5py = pytest.importorskip("h5py", reason="st-peters reads HDF5: pip install 'desc-bench[stpeters]'")


@pytest.fixture()
def server():
    s = Server()
    yield s
    s.close()


def h5_bytes(R, T, K, imsize) -> bytes:
    out = io.BytesIO()
    with h5py.File(out, "w") as f:
        f["R"], f["T"], f["K"], f["dc"], f["imsize"] = R, T, K, np.zeros(5), imsize
    return out.getvalue()


VIS = np.array([[0, 150, 99, 200], [150, 0, 201, 100], [99, 201, 0, 120], [200, 100, 120, 0]])


def release(drop: str = "") -> tuple[bytes, list]:
    """A tar.gz of st_peters_square/test with 4 images; returns it and the (R, T, K) written."""
    jpg = cv2.imencode(".jpg", np.full((6, 8, 3), 100, np.uint8))[1].tobytes()
    files, views = {}, []
    rng = np.random.default_rng(0)
    for i in range(4):
        R, _ = cv2.Rodrigues(rng.normal(size=3) * 0.1)
        T, K = rng.normal(size=(3, 1)), np.array([[500.0, 0, 1.0], [0, 500.0, -2.0], [0, 0, 1]])
        views.append((R, T.ravel(), K))
        files[f"test/images/{i:06d}.jpg"] = jpg
        files[f"test/calibration/calibration_{i:06d}.h5"] = h5_bytes(R, T, K, np.array([[8.0, 6.0]]))
        files[f"test/visibility/vis_{i:06d}.txt"] = "\n".join(map(str, VIS[i])).encode()
    files["test/images.txt"] = "\n".join(f"images/{i:06d}.jpg" for i in range(4)).encode()
    files["test/calibration.txt"] = "\n".join(f"calibration/calibration_{i:06d}.h5" for i in range(4)).encode()
    files.pop(drop, None)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"st_peters_square/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue(), views


def test_download_and_gift_pair_selection(server, data_dir, monkeypatch):
    body, views = release()
    server.files["/sp.tar.gz"] = body
    monkeypatch.setattr(SP, "ARCHIVES", (Archive((server.url("/sp.tar.gz"),), "sp.tar.gz", max_bytes=1 << 20),))
    assert "desc-bench data download st-peters" in SP.StPeters().availability(data_dir)
    SP.StPeters().download(data_dir, progress=False)
    data = SP.StPeters().open(data_dir)
    # 100 <= vis <= 200 above the diagonal, row-major: (0,1)=150, (0,3)=200, (1,3)=100, (2,3)=120
    assert [p.name for p in data.pairs] == ["0-1", "0-3", "1-3", "2-3"] and not data.complete
    pair = data.pairs[1]
    (R0, T0, _), (R3, T3, _) = views[0], views[3]
    np.testing.assert_allclose(pair.R, R3 @ R0.T)
    np.testing.assert_allclose(pair.t, T3 - R3 @ R0.T @ T0)
    np.testing.assert_allclose(pair.K0, [[500, 0, 1.0 + 3.5], [0, 500, -2.0 + 2.5], [0, 0, 1]])  # + (w-1)/2, (h-1)/2


def test_first_hundred_only(tmp_path, monkeypatch):
    monkeypatch.setattr(SP, "FIRST", 2)
    body, _ = release()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        tar.extractall(tmp_path, filter="data")
    data = SP.open_st_peters(tmp_path / "st_peters_square" / "test")
    assert [p.name for p in data.pairs] == ["0-1", "0-3"]


def test_missing_calibration_is_refused(server, data_dir, monkeypatch):
    body, _ = release(drop="test/calibration/calibration_000002.h5")
    server.files["/sp.tar.gz"] = body
    monkeypatch.setattr(SP, "ARCHIVES", (Archive((server.url("/sp.tar.gz"),), "sp.tar.gz", max_bytes=1 << 20),))
    with pytest.raises(DownloadError, match="calibration_000002.h5 is missing"):
        SP.StPeters().download(data_dir, progress=False)
    assert not (data_dir / "st_peters_square").exists()
