"""desc_bench.io.download and desc_bench.io.extract against a local HTTP server (127.0.0.1, no
internet; the ``server`` fixture of tests/datasets/conftest.py)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import socket
import subprocess
import tarfile
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from _local_http import Server

from desc_bench.errors import DownloadError
from desc_bench.io.download import (
    Archive,
    CorruptArchiveError,
    ExtractLimits,
    extract_folder,
    fetch,
    fetch_any,
    fetch_archive,
    git_blob_sha1,
    part_path,
    safe_extract,
    sha256_file,
)


@pytest.fixture()
def server():
    """A local HTTP server for one test (see _local_http.py)."""
    s = Server()
    yield s
    s.close()


def _payload(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------------------ fetch


def test_fetch_downloads_verifies_and_skips_a_verified_copy(server, tmp_path):
    data = _payload(3_000_000)
    server.files["/a.bin"] = data
    dest = fetch(
        server.url("/a.bin"),
        tmp_path / "d" / "a.bin",
        sha256=hashlib.sha256(data).hexdigest(),
        md5=hashlib.md5(data).hexdigest(),
        size=len(data),
        progress=False,
    )
    assert dest.read_bytes() == data
    assert _leftovers(tmp_path / "d") == ["a.bin"]  # no .part left
    n = len(server.requests)
    fetch(server.url("/a.bin"), dest, sha256=hashlib.sha256(data).hexdigest(), progress=False)
    assert len(server.requests) == n  # verified copy: no request


def test_resume_after_interrupted_transfer_uses_a_range_request(server, tmp_path):
    data = _payload(2_500_000, seed=1)
    server.files["/big.bin"] = data
    server.cut["/big.bin"] = 1_000_000
    dest = tmp_path / "big.bin"
    sha = hashlib.sha256(data).hexdigest()
    with pytest.raises(DownloadError, match="resume"):
        fetch(server.url("/big.bin"), dest, sha256=sha, progress=False)
    part = tmp_path / "big.bin.part"
    assert not dest.exists()
    assert part.stat().st_size == 1_000_000
    fetch(server.url("/big.bin"), dest, sha256=sha, progress=False)
    assert server.requests[-1] == ("/big.bin", "bytes=1000000-")
    assert dest.read_bytes() == data and not part.exists()


def test_resume_restarts_when_the_server_ignores_ranges(server, tmp_path):
    data = _payload(300_000, seed=2)
    server.files["/x.bin"] = data
    server.ranges = False
    (tmp_path / "x.bin.part").write_bytes(b"stale bytes from somewhere else")
    dest = fetch(server.url("/x.bin"), tmp_path / "x.bin", sha256=hashlib.sha256(data).hexdigest(), progress=False)
    assert server.requests[-1][1] is not None  # it asked for a range, got 200, rewrote from the start
    assert dest.read_bytes() == data


def test_resume_of_a_complete_part_file_416(server, tmp_path):
    data = _payload(100_000, seed=3)
    server.files["/c.bin"] = data
    (tmp_path / "c.bin.part").write_bytes(data)
    dest = fetch(server.url("/c.bin"), tmp_path / "c.bin", sha256=hashlib.sha256(data).hexdigest(), progress=False)
    assert dest.read_bytes() == data
    assert server.requests == [("/c.bin", "bytes=100000-")]


def test_checksum_mismatch_is_refused_and_nothing_is_left(server, tmp_path):
    data = _payload(200_000, seed=4)
    server.files["/m.bin"] = data
    with pytest.raises(DownloadError, match="sha256 mismatch") as info:
        fetch(server.url("/m.bin"), tmp_path / "m.bin", sha256="0" * 64, progress=False)
    assert hashlib.sha256(data).hexdigest() in str(info.value)  # says what it found
    with pytest.raises(DownloadError, match="md5 mismatch"):
        fetch(server.url("/m.bin"), tmp_path / "m.bin", md5="0" * 32, progress=False)
    with pytest.raises(DownloadError, match="expected 5 bytes"):
        fetch(server.url("/m.bin"), tmp_path / "m.bin", size=5, progress=False)
    assert _leftovers(tmp_path) == []


def test_http_error_and_unreachable_host_and_timeout(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(server.url("/missing"), tmp_path / "a", progress=False)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(DownloadError, match="cannot download"):
        fetch(f"http://127.0.0.1:{port}/x", tmp_path / "b", progress=False, timeout=2)
    server.files["/slow"] = b"x"
    server.stall_s = 1.5
    t0 = time.perf_counter()
    with pytest.raises(DownloadError, match="timed out"):
        fetch(server.url("/slow"), tmp_path / "c", progress=False, timeout=0.3)
    assert time.perf_counter() - t0 < 1.4
    assert _leftovers(tmp_path) == []


def test_fetch_any_tries_mirrors_in_order(server, tmp_path):
    data = b"mirror two"
    server.files["/two"] = data
    sha = hashlib.sha256(data).hexdigest()
    dest = fetch_any([server.url("/one"), server.url("/two")], tmp_path / "f", sha256=sha, progress=False)
    assert dest.read_bytes() == data
    assert [p for p, _ in server.requests] == ["/one", "/two"]
    server.files["/bad"] = b"corrupt"
    with pytest.raises(DownloadError) as info:
        fetch_any([server.url("/bad"), server.url("/gone")], tmp_path / "g", sha256=sha, progress=False)
    assert "sha256 mismatch" in str(info.value) and "HTTP 404" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


# ------------------------------------------------------------------------------------- extraction


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, content in members:
            if content is not None:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            else:
                tar.addfile(info)
    return path


def _info(name: str, kind=tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    return info


def test_safe_extract_tar_gz_and_zip(tmp_path):
    archive = _tar(
        tmp_path / "ok.tar.gz",
        [
            (_info("rel/", tarfile.DIRTYPE), None),
            (_info("rel/seq/ref.png"), b"png bytes"),
            (_info("rel/seq/alias.png", tarfile.SYMTYPE, "ref.png"), None),
            (_info("rel/seq/copy.png", tarfile.LNKTYPE, "rel/seq/ref.png"), None),
        ],
    )
    out = safe_extract(archive, tmp_path / "out")
    assert (out / "rel/seq/ref.png").read_bytes() == b"png bytes"
    assert (out / "rel/seq/alias.png").is_symlink() and (out / "rel/seq/alias.png").read_bytes() == b"png bytes"
    assert (out / "rel/seq/copy.png").read_bytes() == b"png bytes"
    with zipfile.ZipFile(tmp_path / "ok.zip", "w") as zf:
        zf.writestr("z/a.txt", "alpha")
        zf.writestr("z/sub/", "")
    out = safe_extract(tmp_path / "ok.zip", tmp_path / "zout")
    assert (out / "z/a.txt").read_text() == "alpha" and (out / "z/sub").is_dir()
    plain = _tar(tmp_path / "plain.tar", [(_info("p.txt"), b"p")], mode="w")
    assert (safe_extract(plain, tmp_path / "pout") / "p.txt").read_bytes() == b"p"


def test_extract_folder_unwraps_a_single_top_folder_and_keeps_flat_archives(tmp_path):
    wrapped = _tar(tmp_path / "w.tar.gz", [(_info("top/", tarfile.DIRTYPE), None), (_info("top/img1.ppm"), b"1")])
    out = extract_folder(wrapped, tmp_path / "data" / "seq-a")
    assert (out / "img1.ppm").read_bytes() == b"1"
    flat = _tar(tmp_path / "f.tar.gz", [(_info("img1.ppm"), b"1"), (_info("H1to2p"), b"h")])
    out = extract_folder(flat, tmp_path / "data" / "seq-b")
    assert sorted(p.name for p in out.iterdir()) == ["H1to2p", "img1.ppm"]
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["seq-a", "seq-b"]  # no staging left


def test_existing_target_needs_overwrite(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [(_info("new.txt"), b"new")])
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "old.txt").write_text("old")
    with pytest.raises(DownloadError, match="already exists"):
        safe_extract(archive, tmp_path / "t")
    safe_extract(archive, tmp_path / "t", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "t"]


UNSAFE_TARS = {
    "dotdot": [(_info("ok.txt"), b"fine"), (_info("../evil.txt"), b"evil")],
    "nested-dotdot": [(_info("a/b/../../../evil.txt"), b"evil")],
    "absolute": [(_info("/tmp/desc-bench-evil.txt"), b"evil")],
    "symlink-out": [(_info("link", tarfile.SYMTYPE, "../.."), None)],
    "symlink-absolute": [(_info("link", tarfile.SYMTYPE, "/etc"), None)],
    "write-through-symlink": [(_info("d", tarfile.SYMTYPE, "sub"), None), (_info("d", tarfile.REGTYPE), b"x")],
    "symlink-retargeted": [(_info("a", tarfile.SYMTYPE, "b/../evil"), None), (_info("b", tarfile.SYMTYPE, "."), None)],
    "hardlink-out": [(_info("h", tarfile.LNKTYPE, "../../etc/passwd"), None)],
    "device": [(_info("dev", tarfile.CHRTYPE), None)],
    "fifo": [(_info("fifo", tarfile.FIFOTYPE), None)],
}


@pytest.mark.parametrize("case", sorted(UNSAFE_TARS))
def test_unsafe_tar_is_refused_and_leaves_nothing(tmp_path, case):
    work = tmp_path / "work"
    work.mkdir()
    archive = _tar(tmp_path / "bad.tar.gz", UNSAFE_TARS[case])
    with pytest.raises(DownloadError, match="unsafe archive"):
        safe_extract(archive, work / "target")
    assert _leftovers(work) == []  # no target, no staging folder
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/desc-bench-evil.txt").exists()


@pytest.mark.parametrize("name", ["../evil.txt", "/abs/evil.txt", "a/../../evil.txt", "..\\evil.txt"])
def test_unsafe_zip_is_refused(tmp_path, name):
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr(name, "evil")
    with pytest.raises(DownloadError, match="unsafe archive"):
        safe_extract(tmp_path / "bad.zip", tmp_path / "work" / "target")
    assert _leftovers(tmp_path / "work") == []
    assert not (tmp_path / "evil.txt").exists()


def test_zip_symlink_escape_is_refused(tmp_path):
    info = zipfile.ZipInfo("link")
    info.external_attr = 0o120777 << 16
    with zipfile.ZipFile(tmp_path / "bad.zip", "w") as zf:
        zf.writestr(info, "../../outside")
    with pytest.raises(DownloadError, match="symlink"):
        safe_extract(tmp_path / "bad.zip", tmp_path / "target")
    assert not (tmp_path / "target").exists()


def test_truncated_or_foreign_archive(tmp_path):
    archive = _tar(tmp_path / "a.tar.gz", [(_info("big.bin"), _payload(400_000, seed=5))])
    data = archive.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DownloadError):
        safe_extract(tmp_path / "cut.tar.gz", tmp_path / "w" / "t")
    assert _leftovers(tmp_path / "w") == []
    (tmp_path / "page.html").write_text("<html>not an archive</html>")
    with pytest.raises(DownloadError, match="not a tar or zip"):
        safe_extract(tmp_path / "page.html", tmp_path / "w" / "t")


# ---------------------------------------------------------------------------------------- hashing


def test_git_blob_sha1_matches_git(tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "hello").write_bytes(b"hello\n")
    assert git_blob_sha1(tmp_path / "empty") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert git_blob_sha1(tmp_path / "hello") == "ce013625030ba8dba906f756967f9e9ca394464a"
    big = tmp_path / "big"
    big.write_bytes(_payload(3_000_000, seed=6))  # several read blocks
    if shutil.which("git"):
        out = subprocess.run(
            ["git", "hash-object", "--no-filters", str(big)],
            capture_output=True,
            text=True,
            check=True,
            cwd=tmp_path,
            env={**os.environ, "GIT_DIR": str(tmp_path / "none")},
        )
        assert git_blob_sha1(big) == out.stdout.strip()
    assert sha256_file(big) == hashlib.sha256(big.read_bytes()).hexdigest()


# ------------------------------------------------------------------------------ bounds (bombs)


def _many_files_tar(path: Path, n: int) -> Path:
    return _tar(path, [(_info(f"f/{i:05d}.txt"), b"x") for i in range(n)])


def test_tar_with_too_many_entries_is_refused(tmp_path):
    archive = _many_files_tar(tmp_path / "many.tar.gz", 300)
    with pytest.raises(DownloadError, match="more than 100 entries") as info:
        safe_extract(archive, tmp_path / "w" / "t", limits=ExtractLimits(max_entries=100))
    assert "refusing to extract" in str(info.value) and "Delete the file" in str(info.value)
    assert _leftovers(tmp_path / "w") == []


def test_tar_expanding_far_beyond_its_size_is_refused(tmp_path):
    zeros = _tar(tmp_path / "zeros.tar.gz", [(_info("zeros.bin"), bytes(8 << 20))])  # 8 MiB -> ~8 KiB
    assert zeros.stat().st_size < 100_000
    with pytest.raises(DownloadError, match="compression bomb"):
        safe_extract(zeros, tmp_path / "w" / "t", limits=ExtractLimits(ratio_floor_bytes=1 << 20))
    assert _leftovers(tmp_path / "w") == []
    with pytest.raises(DownloadError, match="member 'zeros.bin' of 8.0 MiB"):
        safe_extract(zeros, tmp_path / "w" / "t", limits=ExtractLimits(max_member_bytes=1 << 20))
    with pytest.raises(DownloadError, match="more than 4.0 MiB of content"):
        safe_extract(zeros, tmp_path / "w" / "t", limits=ExtractLimits(max_total_bytes=4 << 20))
    assert _leftovers(tmp_path / "w") == []


def test_a_declared_huge_member_is_refused_before_anything_is_written(tmp_path):
    """A 2 KB archive whose header announces 3 GiB (the data need not even be there): refused with
    the default limits, from the header alone."""
    info = _info("huge.bin")
    info.size = 3 << 30
    import gzip

    (tmp_path / "huge.tar.gz").write_bytes(gzip.compress(info.tobuf() + bytes(1024)))
    with pytest.raises(DownloadError, match="compression bomb"):
        safe_extract(tmp_path / "huge.tar.gz", tmp_path / "w" / "t")
    assert _leftovers(tmp_path / "w") == []


def test_zip_bombs_are_refused_before_extraction(tmp_path):
    with zipfile.ZipFile(tmp_path / "many.zip", "w") as zf:
        for i in range(300):
            zf.writestr(f"z/{i}.txt", "x")
    with pytest.raises(DownloadError, match="more than 100 entries"):
        safe_extract(tmp_path / "many.zip", tmp_path / "w" / "t", limits=ExtractLimits(max_entries=100))
    with zipfile.ZipFile(tmp_path / "zeros.zip", "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", bytes(8 << 20))
    with pytest.raises(DownloadError, match="compression bomb"):
        safe_extract(tmp_path / "zeros.zip", tmp_path / "w" / "t", limits=ExtractLimits(ratio_floor_bytes=1 << 20))
    assert _leftovers(tmp_path / "w") == []


@pytest.mark.parametrize("cut", [5, 100, 0.5])
def test_truncated_archives_are_reported_as_corrupt(tmp_path, cut):
    """A truncated tar.gz is a CorruptArchiveError (a DownloadError), never a bare EOFError."""
    archive = _tar(tmp_path / "a.tar.gz", [(_info("top/big.bin"), _payload(200_000, seed=7))])
    data = archive.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: int(cut * len(data)) if cut < 1 else cut])
    with pytest.raises(CorruptArchiveError, match="truncated or corrupt"):
        extract_folder(tmp_path / "cut.tar.gz", tmp_path / "w" / "t")
    assert _leftovers(tmp_path / "w") == []


# --------------------------------------------------------------------------- resume messages


def test_resume_advice_names_only_part_files_that_exist(server, tmp_path):
    data = _payload(400_000, seed=8)
    server.files["/one"] = data
    server.cut["/one"] = 100_000  # mirror one drops the transfer; mirror two is missing
    dest, sha = tmp_path / "f.bin", hashlib.sha256(data).hexdigest()
    with pytest.raises(DownloadError) as info:
        fetch_any([server.url("/one"), server.url("/two")], dest, sha256=sha, progress=False)
    message = str(info.value)
    advised = re.findall(r"resume from (\S+)", message)
    assert advised and all(Path(p).exists() for p in advised), message
    assert Path(advised[0]) == part_path(dest, server.url("/one"))  # each mirror resumes its own file
    dest_done = fetch_any([server.url("/one"), server.url("/two")], dest, sha256=sha, progress=False)
    assert dest_done.read_bytes() == data and server.requests[-1][1] == "bytes=100000-"
    assert _leftovers(tmp_path) == ["f.bin"]  # every .part removed after success


def test_a_refused_file_is_deleted_and_no_resume_is_advised(server, tmp_path):
    server.files["/x"] = _payload(50_000, seed=9)
    with pytest.raises(DownloadError) as info:
        fetch(server.url("/x"), tmp_path / "x", md5="0" * 32, progress=False)
    assert "resume" not in str(info.value) and _leftovers(tmp_path) == []
    with pytest.raises(DownloadError, match="at most 1000 bytes") as info:
        fetch(server.url("/x"), tmp_path / "x", max_bytes=1000, progress=False)
    assert "resume" not in str(info.value) and _leftovers(tmp_path) == []


# -------------------------------------------------------------------------- verified archives


def _archive_spec(server, path="/a.tar.gz", **kw) -> Archive:
    return Archive(urls=(server.url(path),), filename="a.tar.gz", **kw)


def _good_archive(tmp_path: Path) -> bytes:
    archive = _tar(tmp_path / "good.tar.gz", [(_info("top/", tarfile.DIRTYPE), None), (_info("top/img1.ppm"), b"1")])
    return archive.read_bytes()


def test_fetch_archive_verifies_extracts_and_records_its_source(server, tmp_path):
    data = _good_archive(tmp_path)
    server.files["/a.tar.gz"] = data
    target = fetch_archive(
        _archive_spec(server, sha256=hashlib.sha256(data).hexdigest()), tmp_path / "dl", tmp_path / "data" / "seq"
    )
    assert (target / "img1.ppm").read_bytes() == b"1"  # the single top folder is unwrapped
    import json

    source = json.loads((target / "SOURCE.json").read_text())
    assert source["sha256"] == hashlib.sha256(data).hexdigest() and source["verified_by"] == "sha256"
    assert _leftovers(tmp_path / "dl") == [] and _leftovers(tmp_path / "data") == ["seq"]


def test_fetch_archive_refuses_a_wrong_checksum_and_leaves_nothing(server, tmp_path):
    server.files["/a.tar.gz"] = _good_archive(tmp_path)
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        fetch_archive(_archive_spec(server, sha256="0" * 64), tmp_path / "dl", tmp_path / "data" / "seq")
    assert _leftovers(tmp_path / "dl") == [] and _leftovers(tmp_path / "data") == []


def test_a_tar_bomb_from_the_server_is_refused_and_deleted(server, tmp_path):
    server.files["/a.tar.gz"] = _many_files_tar(tmp_path / "bomb.tar.gz", 200).read_bytes()
    spec = _archive_spec(server, limits=ExtractLimits(max_entries=50))
    with pytest.raises(DownloadError, match="more than 50 entries"):
        fetch_archive(spec, tmp_path / "dl", tmp_path / "data" / "seq")
    assert _leftovers(tmp_path / "dl") == [] and _leftovers(tmp_path / "data") == []


def test_a_truncated_archive_is_deleted_fetched_again_and_reported(server, tmp_path):
    good = _good_archive(tmp_path)
    server.queue["/a.tar.gz"] = [good[:60], good]  # first a truncated copy, then the real one
    said = []
    target = fetch_archive(_archive_spec(server), tmp_path / "dl", tmp_path / "data" / "seq", log=said.append)
    assert (target / "img1.ppm").read_bytes() == b"1"
    assert len(said) == 1 and "truncated or corrupt" in said[0] and "downloading it again" in said[0]
    server.queue["/a.tar.gz"] = [good[:60], good[:60]]
    with pytest.raises(CorruptArchiveError, match="failed twice"):
        fetch_archive(_archive_spec(server), tmp_path / "dl", tmp_path / "data" / "other", log=said.append)
    assert _leftovers(tmp_path / "dl") == [] and _leftovers(tmp_path / "data") == ["seq"]


def test_a_wrong_structure_is_refused_and_the_file_deleted(server, tmp_path):
    server.files["/a.tar.gz"] = _good_archive(tmp_path)

    def check(folder):
        if not (folder / "H1to2p").is_file():
            raise DownloadError(f"{folder.name} has no H1to2p")

    with pytest.raises(DownloadError, match="no H1to2p"):
        fetch_archive(_archive_spec(server), tmp_path / "dl", tmp_path / "data" / "seq", check=check)
    assert _leftovers(tmp_path / "dl") == [] and _leftovers(tmp_path / "data") == []


def test_progress_false_draws_no_bar_even_when_forced(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DESC_BENCH_PROGRESS", "1")  # bars forced on for a terminal-less test
    data = _good_archive(tmp_path)
    server.files["/a.tar.gz"] = data
    fetch_archive(_archive_spec(server), tmp_path / "dl", tmp_path / "data" / "quiet", progress=False)
    assert capsys.readouterr().err == ""
    fetch_archive(_archive_spec(server), tmp_path / "dl", tmp_path / "data" / "loud", progress=True)
    assert "a.tar.gz" in capsys.readouterr().err
