"""Brown / PhotoTour datasets: the original layout read lazily and cached; verified mirror downloads
against a local HTTP server (127.0.0.1) serving a Brown-layout zip built here."""

from __future__ import annotations

import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from desc_bench.datasets import brown, brown_layout
from desc_bench.datasets.brown_layout import BrownPairs, BrownSubset, write_subset
from desc_bench.datasets.registry import dataset, unavailable_message
from desc_bench.errors import DatasetError, DownloadError


def _tiles(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 64, 64), dtype=np.uint8)


def _subset(folder: Path, count: int = 600, seed: int = 0) -> dict:
    """A subset of ``count`` random patches (2 per point, 100 patches per reference image)."""
    rng = np.random.default_rng(seed)
    patches = _tiles(count, seed)
    points = np.arange(count) // 2 + 7
    interest = np.stack([np.arange(count) // 100 + 3, *rng.uniform(0, 500, (4, count))], 1)
    pairs = BrownPairs(np.arange(0, 40), np.arange(1, 41), None)
    write_subset(folder, patches, points, interest, pairs)
    return {"patches": patches, "points": points, "images": interest[:, 0].astype(int)}


def test_reads_the_original_layout_row_major(tmp_path):
    # mosaics written by hand here (not by write_subset): patch k = file k // 256, row (k % 256) // 16, col k % 16
    count = 300
    patches = _tiles(count)
    folder = tmp_path / "liberty"
    folder.mkdir()
    for f in range(2):
        mosaic = np.zeros((1024, 1024), np.uint8)
        for k in range(f * 256, min(count, (f + 1) * 256)):
            r, c = (k % 256) // 16, k % 16
            mosaic[64 * r : 64 * r + 64, 64 * c : 64 * c + 64] = patches[k]
        cv2.imwrite(str(folder / f"patches{f:04d}.bmp"), mosaic)
    (folder / "info.txt").write_text("".join(f"{k // 3} 0\n" for k in range(count)))
    (folder / "interest.txt").write_text("".join(f"{k // 50} 1.5 2.5 0.1 3.0\n" for k in range(count)))
    (folder / brown_layout.TEST_PAIRS).write_text("0 0 0 1 0 0\n0 0 0 3 1 0\n299 99 0 298 99 0\n")
    subset = BrownSubset("liberty", folder)
    np.testing.assert_array_equal(subset.patches, patches)
    np.testing.assert_array_equal(subset.point_ids, np.arange(count) // 3)
    np.testing.assert_array_equal(subset.image_ids, np.arange(count) // 50)
    pairs = subset.pairs
    np.testing.assert_array_equal(pairs.patch1, [0, 0, 299])
    np.testing.assert_array_equal(pairs.patch2, [1, 3, 298])
    np.testing.assert_array_equal(pairs.is_match, [True, False, True])
    assert subset.subset == "liberty" and len(subset) == count


def test_cache_is_memory_mapped_on_reuse_and_follows_edits(tmp_path, monkeypatch):
    made = _subset(tmp_path / "notredame")
    first = BrownSubset("notredame", tmp_path / "notredame")
    np.testing.assert_array_equal(first.patches, made["patches"])
    cached = sorted(p.name for p in (tmp_path / "notredame" / ".cache").iterdir())
    assert [n.split("-")[0] for n in cached] == ["meta", "patches"]

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded again")

    monkeypatch.setattr(brown_layout, "decode_mosaics", no_decode)
    again = BrownSubset("notredame", tmp_path / "notredame")
    assert isinstance(again.patches, np.memmap)
    np.testing.assert_array_equal(again.patches, made["patches"])
    assert again.version == first.version
    monkeypatch.undo()

    # an edited mosaic changes the key: decoded again, the old cache file removed
    edited = made["patches"].copy()
    edited[256:512] = 255 - edited[256:512]
    mosaic = cv2.imread(str(tmp_path / "notredame" / "patches0001.bmp"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(tmp_path / "notredame" / "patches0001.bmp"), 255 - mosaic)
    changed = BrownSubset("notredame", tmp_path / "notredame")
    assert changed.version != first.version
    np.testing.assert_array_equal(changed.patches, edited)
    assert len(list((tmp_path / "notredame" / ".cache").glob("patches-*.npy"))) == 1

    # a damaged cache file is a miss, not a crash
    npy = next((tmp_path / "notredame" / ".cache").glob("patches-*.npy"))
    npy.write_bytes(npy.read_bytes()[:1000])
    np.testing.assert_array_equal(BrownSubset("notredame", tmp_path / "notredame").patches, edited)


def test_malformed_files_name_the_file(tmp_path):
    _subset(tmp_path / "a", count=300)
    (tmp_path / "a" / "patches0001.bmp").unlink()
    with pytest.raises(DatasetError, match="need 2 patch mosaics"):
        _ = BrownSubset("a", tmp_path / "a").patches
    _subset(tmp_path / "b", count=300)
    cv2.imwrite(str(tmp_path / "b" / "patches0001.bmp"), np.zeros((512, 1024), np.uint8))
    with pytest.raises(DatasetError, match="patches0001.bmp: expected 1024x1024"):
        _ = BrownSubset("b", tmp_path / "b").patches
    _subset(tmp_path / "c", count=300)
    (tmp_path / "c" / brown_layout.TEST_PAIRS).write_text("0 0 0 300 150 0\n")
    with pytest.raises(DatasetError, match="names patch 300; the subset has 300"):
        _ = BrownSubset("c", tmp_path / "c").pairs
    _subset(tmp_path / "d", count=300)
    (tmp_path / "d" / "interest.txt").unlink()
    with pytest.raises(DatasetError, match="interest.txt is missing"):
        _ = BrownSubset("d", tmp_path / "d").image_ids


def test_registry_layouts_and_missing_message(data_dir):
    message = unavailable_message("brown-liberty")
    assert "desc-bench data download brown-liberty" in message and "brown-synth" in message
    made = _subset(data_dir / "liberty")  # torchvision's PhotoTour root layout
    opened = dataset("brown-liberty")
    assert opened.names() == ("liberty",) and opened.subsets[0].root == data_dir / "liberty"
    np.testing.assert_array_equal(opened.subset("liberty").image_ids, made["images"])
    assert "notredame, yosemite" in unavailable_message("brown")


# --------------------------------------------------------------------------------------- download


class Files(http.server.ThreadingHTTPServer):
    """Serves ``self.files`` (URL path -> bytes), 404 otherwise."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
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


def _zip(tmp_path: Path, inner: str = "") -> tuple[bytes, dict]:
    made = _subset(tmp_path / "src", count=520)
    with zipfile.ZipFile(tmp_path / "liberty.zip", "w") as zf:
        for path in sorted((tmp_path / "src").iterdir()):
            if path.is_file():
                zf.write(path, inner + path.name)
    return (tmp_path / "liberty.zip").read_bytes(), made


def test_download_refuses_a_wrong_md5_then_uses_the_next_mirror(data_dir, tmp_path, files, monkeypatch):
    archive, made = _zip(tmp_path, inner="liberty/")
    files.files["/one/liberty.zip"] = archive[:-10] + b"0123456789"  # corrupted copy: md5 differs
    files.files["/two/liberty.zip"] = archive
    md5 = hashlib.md5(archive).hexdigest()
    monkeypatch.setattr(
        brown,
        "MIRRORS",
        {
            "liberty": (
                brown.Mirror(files.url("/one/liberty.zip"), "a.zip", md5),
                brown.Mirror(files.url("/two/liberty.zip"), "b.zip", md5),
            )
        },
    )
    from click.testing import CliRunner

    from desc_bench.cli import main

    result = CliRunner().invoke(main, ["data", "download", "brown-liberty", "--quiet"])
    assert result.exit_code == 0, result.output
    folder = data_dir / "brown" / "liberty"
    assert brown_layout.is_subset_folder(folder)
    manifest = (folder / "MANIFEST.json").read_text()
    assert md5 in manifest and "/two/liberty.zip" in manifest
    assert not list((data_dir / "brown").glob(".*extract*")) and not list((data_dir / "brown" / ".downloads").iterdir())
    opened = dataset("brown-liberty").subsets[0]
    np.testing.assert_array_equal(opened.patches, made["patches"])
    np.testing.assert_array_equal(opened.point_ids, made["points"])


def test_download_with_every_mirror_wrong_leaves_nothing(data_dir, tmp_path, files, monkeypatch):
    archive, _ = _zip(tmp_path)
    files.files["/liberty.zip"] = archive
    wrong = "0" * 32
    monkeypatch.setattr(brown, "MIRRORS", {"liberty": (brown.Mirror(files.url("/liberty.zip"), "a.zip", wrong),)})
    with pytest.raises(DownloadError, match="md5 mismatch"):
        brown.download_subset(data_dir, "liberty", progress=False)
    assert not (data_dir / "brown" / "liberty").exists()
    assert not [p for p in (data_dir / "brown" / ".downloads").iterdir()]


def test_archive_without_the_layout_is_refused(data_dir, tmp_path, files, monkeypatch):
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.writestr("readme.txt", "no patches here")
    archive = (tmp_path / "bad.zip").read_bytes()
    files.files["/bad.zip"] = archive
    mirror = brown.Mirror(files.url("/bad.zip"), "bad.zip", hashlib.md5(archive).hexdigest())
    monkeypatch.setattr(brown, "MIRRORS", {"liberty": (mirror,)})
    with pytest.raises(DatasetError, match="does not have the Brown layout"):
        brown.download_subset(data_dir, "liberty", progress=False)
    assert not (data_dir / "brown" / "liberty").exists()


def test_read_only_data_folder_caches_under_the_cache_root(data_dir, tmp_path, monkeypatch):
    made = _subset(tmp_path / "yosemite", count=300)
    real = brown_layout.atomic_path

    def refuse_data_folder(path, suffix=""):
        if (tmp_path / "yosemite") in Path(path).parents:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, suffix)

    monkeypatch.setattr(brown_layout, "atomic_path", refuse_data_folder)
    subset = BrownSubset("yosemite", tmp_path / "yosemite")
    np.testing.assert_array_equal(subset.patches, made["patches"])
    assert not (tmp_path / "yosemite" / ".cache").exists()
    assert list((data_dir.parent / "cache" / "brown").rglob("patches-*.npy"))
    assert isinstance(BrownSubset("yosemite", tmp_path / "yosemite").patches, np.memmap)
