"""Oxford5k / Paris6k / ROxford5k / RParis6k: downloads verified and extracted from archives built
here in the real layouts, served from 127.0.0.1; ground truth read as plain data (a pickle that
would run code is refused before anything runs)."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from _local_http import Server

from desc_bench.datasets import retrieval
from desc_bench.datasets.registry import dataset, download, unavailable_message
from desc_bench.errors import DatasetError


@pytest.fixture()
def server():
    s = Server()
    yield s
    s.close()


def _jpg(seed: int, size=(48, 64)) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


def _tgz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


OX = [f"all_souls_{k:06d}" for k in range(4)] + [f"radcliffe_{k:06d}" for k in range(4)]
PA = [f"paris_defense_{k:06d}" for k in range(6)]


def _serve(server: Server, monkeypatch) -> None:
    server.files["/ox/oxbuild_images-v1.tgz"] = _tgz({f"{n}.jpg": _jpg(i) for i, n in enumerate(OX)})
    gt = {
        "all_souls_1_query.txt": b"oxc1_all_souls_000000 10.2 5.0 40.7 30.1\n",
        "all_souls_1_good.txt": b"all_souls_000000\nall_souls_000001\n",
        "all_souls_1_ok.txt": b"all_souls_000002\n",
        "all_souls_1_junk.txt": b"all_souls_000003\n",
    }
    server.files["/ox/gt_files_170407.tgz"] = _tgz(gt)
    half = {f"paris/defense/{n}.jpg": _jpg(10 + i) for i, n in enumerate(PA)}
    server.files["/pa/paris_1-v1.tgz"] = _tgz(dict(list(half.items())[:3]))
    server.files["/pa/paris_2-v1.tgz"] = _tgz(dict(list(half.items())[3:]))
    pgt = {
        "defense_1_query.txt": b"paris_defense_000000 1 2 30 40\n",
        "defense_1_good.txt": b"paris_defense_000001\n",
        "defense_1_ok.txt": b"",
        "defense_1_junk.txt": b"",
    }
    server.files["/pa/paris_120310.tgz"] = _tgz(pgt)
    ox, pa = retrieval.ORIGINALS["oxford5k"], retrieval.ORIGINALS["paris6k"]
    monkeypatch.setitem(retrieval.ORIGINALS, "oxford5k", replace(ox, base=server.url("/ox/"), expected_images=8))
    monkeypatch.setitem(retrieval.ORIGINALS, "paris6k", replace(pa, base=server.url("/pa/"), expected_images=6))
    monkeypatch.setattr(retrieval, "_REVISITOP", server.url("/gnd/"))


def test_original_download_and_ground_truth(data_dir, server, monkeypatch):
    _serve(server, monkeypatch)
    assert "desc-bench data download oxford5k" in unavailable_message("oxford5k")
    download("oxford5k", progress=False)
    ox = dataset("oxford5k")
    assert ox.expected_images == 8 and len(ox.images) == 8  # complete: its rows carry no incomplete= marker
    assert [p.stem for p in ox.images] == sorted(OX) and len(ox.train_images) == 6 and ox.train_source == "paris6k"
    (q,) = ox.queries
    names = [p.stem for p in ox.images]
    positives, junk = q.truth["original"]
    assert [names[i] for i in positives] == ["all_souls_000000", "all_souls_000001", "all_souls_000002"]
    assert [names[i] for i in junk] == ["all_souls_000003"] and names[q.image] == "all_souls_000000"
    assert ox.query_image(q).shape == (25, 31, 3)  # PIL crop: rows round(5)..round(30.1), columns 10..41
    pa = dataset("paris6k")
    assert len(pa.images) == 6 and pa.queries[0].truth["original"] == ((1,), ())
    assert (data_dir / "oxford5k" / "jpg" / "SOURCE.json").is_file()


def test_a_truncated_image_archive_is_refused(data_dir, server, monkeypatch):
    _serve(server, monkeypatch)
    server.files["/ox/oxbuild_images-v1.tgz"] = _tgz({f"{n}.jpg": _jpg(i) for i, n in enumerate(OX[:2])})
    with pytest.raises(DatasetError, match="holds 2 images"):
        retrieval.download_original(data_dir, "oxford5k", progress=False)
    assert not (data_dir / "oxford5k" / "jpg").exists()


def _gnd() -> dict:
    return {
        "imlist": OX[1:],  # the query image all_souls_000000 is not in the database, as in revisitop
        "qimlist": ["all_souls_000000"],
        "gnd": [
            {
                "bbx": np.array([1.0, 2.0, 30.0, 40.0]),
                "easy": np.array([0, 1]),
                "hard": [np.int64(4)],
                "junk": np.array([2]),
            }
        ],
    }


def test_revisited_ground_truth_easy_medium_hard(data_dir, server, monkeypatch):
    _serve(server, monkeypatch)
    server.files["/gnd/roxford5k/gnd_roxford5k.pkl"] = pickle.dumps(_gnd(), protocol=4)
    download("roxford5k", progress=False)
    rox = dataset("roxford5k")
    assert rox.protocols == ("easy", "medium", "hard") and len(rox.images) == 7
    (q,) = rox.queries
    assert q.truth == {"easy": ((0, 1), (2, 4)), "medium": ((0, 1, 4), (2,)), "hard": ((4,), (2, 0, 1))}
    assert rox.query_path(q).stem == "all_souls_000000" and q.image >= len(rox.images)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_a_pickle_that_runs_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "gnd_roxford5k.pkl"
    data = _gnd()
    data["gnd"][0]["easy"] = _Exploit()
    bad.write_bytes(pickle.dumps(data))
    with pytest.raises(DatasetError, match="refusing posix.system|refusing nt.system|refusing os.system"):
        retrieval.read_gnd(bad)
    assert not Path("pwned").exists()
    bad.write_bytes(b"not a pickle")
    with pytest.raises(DatasetError, match="not a revisitop gnd pickle"):
        retrieval.read_gnd(bad)
