"""Safe downloads: fetch with resume and checksums, mirrors, safe archive extraction, git blob ids.

- :func:`fetch` downloads one URL to ``dest`` through ``dest.part``: an interrupted transfer keeps
  the ``.part`` file and the next call resumes it with an HTTP ``Range`` request when the server
  supports one (``206 Partial Content``), else starts again. The whole file is checked (size,
  sha256, md5) *before* the atomic rename to ``dest``; a file that fails is deleted, so ``dest``
  exists only when it verified.
- :func:`fetch_any` tries mirrors in order and reports every failure when all fail.
- :func:`safe_extract` unpacks ``.tar``, ``.tar.gz``/``.tgz`` (any compression tarfile reads) and
  ``.zip`` into a temporary folder next to ``target`` that is renamed into place at the end; it
  refuses absolute names, ``..`` escapes, symlinks or hard links that point outside the target,
  device files and FIFOs. An interrupted or refused extraction leaves nothing at ``target``.
- :func:`git_blob_sha1` hashes a file as ``git hash-object`` does (SHA-1 of ``"blob <size>\\0"``
  followed by the content), the id upstream repositories publish for every file.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import posixpath
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from ..errors import DownloadError

CHUNK = 1 << 20
TIMEOUT_S = 60.0
USER_AGENT = "desc-bench (https://github.com/; python urllib)"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


# --------------------------------------------------------------------------------------- hashing


def _hash_file(path: Path, *algorithms: str) -> dict[str, str]:
    hashes = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            for h in hashes.values():
                h.update(block)
    return {name: h.hexdigest() for name, h in hashes.items()}


def sha256_file(path: Path | str) -> str:
    """Hex SHA-256 of a file's content."""
    return _hash_file(Path(path), "sha256")["sha256"]


def git_blob_sha1(path: Path | str) -> str:
    """The git blob id of a file, as ``git hash-object <path>`` prints it (no filters applied)."""
    path = Path(path)
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify_file(
    path: Path, *, sha256: str | None = None, md5: str | None = None, size: int | None = None, source: str = ""
) -> dict[str, str]:
    """Check size and checksums of ``path``; return its sha256 (and md5); raise DownloadError on a mismatch."""
    where = f" from {source}" if source else ""
    found_size = path.stat().st_size
    if size is not None and found_size != size:
        raise DownloadError(f"{path.name}{where}: expected {size} bytes, found {found_size}")
    hashes = _hash_file(path, "sha256", "md5")
    for name, expected in (("sha256", sha256), ("md5", md5)):
        if expected is not None and hashes[name] != expected.lower():
            raise DownloadError(
                f"{path.name}{where}: {name} mismatch: expected {expected.lower()}, found {hashes[name]} "
                f"({found_size} bytes); the file was deleted. The mirror may be corrupt or changed: try "
                "again later or another mirror"
            )
    return hashes


# --------------------------------------------------------------------------------------- fetching


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _start(url: str, part: Path, resume: bool, timeout: float):
    """Open the transfer; return (response, offset to write at, total size or None)."""
    offset = part.stat().st_size if (resume and part.exists()) else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:  # range not satisfiable: the .part may already be complete
            match = re.search(r"/(\d+)", exc.headers.get("Content-Range", "") or "")
            exc.close()
            if match and int(match.group(1)) == offset:
                return None, offset, offset
            part.unlink()
            return _start(url, part, False, timeout)
        raise
    if offset and response.status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == offset:
            total = None if match.group(3) == "*" else int(match.group(3))
            return response, offset, total
        response.close()  # a range we did not ask for: start again
        part.unlink()
        return _start(url, part, False, timeout)
    # 200: the server ignored the range (or none was sent): write from the start
    length = response.headers.get("Content-Length")
    return response, 0, int(length) if length and length.isdigit() else None


def _transfer(response: BinaryIO, part: Path, offset: int, total: int | None, label: str, progress: bool) -> int:
    mode = "ab" if offset else "wb"
    written = offset
    with (
        open(part, mode) as out,
        tqdm(
            total=total,
            initial=offset,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=label,
            disable=not progress,
            leave=False,
        ) as bar,
    ):
        if offset:
            out.truncate(offset)
        for block in iter(lambda: response.read(CHUNK), b""):
            out.write(block)
            written += len(block)
            bar.update(len(block))
    return written


def fetch(
    url: str,
    dest: Path | str,
    *,
    sha256: str | None = None,
    size: int | None = None,
    md5: str | None = None,
    progress: bool = True,
    resume: bool = True,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``); verify, then rename atomically.

    Returns ``dest``. An existing ``dest`` that verifies (or any existing ``dest`` when no checksum
    or size is given) is kept without a request. Raises DownloadError on an HTTP error, a network
    error or timeout (the ``.part`` file is kept for resuming), a truncated transfer, or a
    size/checksum mismatch (the file is deleted, nothing is left behind).
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        if sha256 is None and md5 is None and size is None:
            return dest
        try:
            verify_file(dest, sha256=sha256, md5=md5, size=size)
            return dest
        except DownloadError:
            dest.unlink()  # stale copy: download it again
    part = dest.with_name(dest.name + ".part")
    if not resume and part.exists():
        part.unlink()
    try:
        response, offset, total = _start(url, part, resume, timeout)
        if response is not None:
            with response:
                written = _transfer(response, part, offset, total, dest.name, progress)
            if total is not None and written < total:
                raise DownloadError(
                    f"transfer of {url} stopped at {written} of {total} bytes; run the command again to "
                    f"resume from {part}"
                )
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"HTTP {exc.code} {exc.reason} fetching {url}") from None
    except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        kept = f"; the partial download {part} is kept, run again to resume" if part.exists() else ""
        raise DownloadError(f"cannot download {url}: {reason}{kept}") from None
    try:
        verify_file(part, sha256=sha256, md5=md5, size=size, source=url)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


def fetch_any(urls: Iterable[str], dest: Path | str, **options) -> Path:
    """:func:`fetch` from the first mirror that works; DownloadError lists every failure."""
    failures = []
    for url in urls:
        try:
            return fetch(url, dest, **options)
        except DownloadError as exc:
            failures.append(str(exc))
            # a .part from one mirror must not be resumed from another
            Path(str(dest) + ".part").unlink(missing_ok=True)
    if not failures:
        raise DownloadError(f"no download address given for {Path(dest).name}")
    raise DownloadError(f"every mirror failed for {Path(dest).name}:\n  " + "\n  ".join(failures))


# ------------------------------------------------------------------------------------- extraction


def _member_path(name: str, archive: Path) -> str:
    """Normalise an archive member name; refuse absolute names and ``..`` escapes."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean):
        raise DownloadError(f"unsafe archive {archive}: member {name!r} has an absolute path")
    norm = posixpath.normpath(clean)
    if norm == ".." or norm.startswith("../"):
        raise DownloadError(f"unsafe archive {archive}: member {name!r} escapes the target folder")
    return "" if norm == "." else norm


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


class _Writer:
    """Writes members under ``root`` (a real, resolved folder), checking every real path."""

    def __init__(self, root: Path, archive: Path):
        self.root = os.path.realpath(root)
        self.archive = archive

    def _target(self, name: str, what: str) -> Path:
        rel = _member_path(name, self.archive)
        path = Path(self.root, rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not _inside(self.root, os.path.realpath(path.parent)):
            raise DownloadError(
                f"unsafe archive {self.archive}: {what} {name!r} is written through a link "
                "that points outside the target folder"
            )
        if path.is_symlink():
            raise DownloadError(f"unsafe archive {self.archive}: {what} {name!r} would be written through a symlink")
        return path

    def directory(self, name: str) -> None:
        if _member_path(name, self.archive):
            path = self._target(name, "folder")
            path.mkdir(exist_ok=True)

    def file(self, name: str, source: BinaryIO, mode: int | None) -> None:
        path = self._target(name, "file")
        with open(path, "wb") as out:
            shutil.copyfileobj(source, out, CHUNK)
        if mode is not None:
            os.chmod(path, (mode & 0o777 & ~0o022) | 0o600)

    def _link_target(self, name: str, link: str, relative_to_member: bool, kind: str) -> str:
        if link.startswith("/") or re.match(r"^[A-Za-z]:", link):
            raise DownloadError(f"unsafe archive {self.archive}: {kind} {name!r} points to the absolute path {link!r}")
        base = posixpath.dirname(_member_path(name, self.archive)) if relative_to_member else ""
        target = posixpath.normpath(posixpath.join(base, link.replace("\\", "/")))
        real = os.path.realpath(os.path.join(self.root, target))
        if target == ".." or target.startswith("../") or not _inside(self.root, real):
            raise DownloadError(
                f"unsafe archive {self.archive}: {kind} {name!r} -> {link!r} points outside the target folder"
            )
        return real

    def symlink(self, name: str, link: str) -> None:
        self._link_target(name, link, True, "symlink")
        path = self._target(name, "symlink")
        os.symlink(link, path)

    def hardlink(self, name: str, link: str) -> None:
        real = self._link_target(name, link, False, "hard link")
        if not os.path.isfile(real):
            raise DownloadError(
                f"unsafe archive {self.archive}: hard link {name!r} -> {link!r} does not "
                "point to a file extracted before it"
            )
        shutil.copyfile(real, self._target(name, "hard link"))


def _extract_tar(archive: Path, writer: _Writer, progress: bool) -> int:
    count = 0
    with (
        tarfile.open(archive, "r:*") as tar,
        tqdm(unit=" files", desc=f"extracting {archive.name}", disable=not progress, leave=False) as bar,
    ):
        for member in tar:  # streamed: one pass over the (possibly compressed) archive
            if member.isdir():
                writer.directory(member.name)
            elif member.isreg():
                with tar.extractfile(member) as source:
                    writer.file(member.name, source, member.mode)
            elif member.issym():
                writer.symlink(member.name, member.linkname)
            elif member.islnk():
                writer.hardlink(member.name, member.linkname)
            else:
                kind = (
                    "device file"
                    if (member.ischr() or member.isblk())
                    else "FIFO"
                    if member.isfifo()
                    else f"member of type {member.type!r}"
                )
                raise DownloadError(f"unsafe archive {archive}: {member.name!r} is a {kind}; refusing it")
            count += 1
            bar.update()
    return count


def _extract_zip(archive: Path, writer: _Writer, progress: bool) -> int:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in tqdm(infos, unit=" files", desc=f"extracting {archive.name}", disable=not progress, leave=False):
            mode = info.external_attr >> 16  # Unix mode when made on Unix, else 0
            file_type = stat.S_IFMT(mode)
            if info.is_dir():
                writer.directory(info.filename)
            elif file_type == stat.S_IFLNK:
                writer.symlink(info.filename, zf.read(info).decode("utf-8", "surrogateescape"))
            elif file_type not in (0, stat.S_IFREG):
                raise DownloadError(
                    f"unsafe archive {archive}: {info.filename!r} is not a regular file, folder or symlink; refusing it"
                )
            else:
                with zf.open(info) as source:
                    writer.file(info.filename, source, (mode & 0o777) or None)
        return len(infos)


def _check_links(root: Path, archive: Path) -> None:
    """Every symlink must still resolve inside ``root`` once all members exist (links made later can
    change where an earlier one points)."""
    real_root = os.path.realpath(root)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path) and not _inside(real_root, os.path.realpath(path)):
                rel = os.path.relpath(path, root)
                raise DownloadError(
                    f"unsafe archive {archive}: symlink {rel!r} -> {os.readlink(path)!r} "
                    "points outside the target folder"
                )


def safe_extract(archive: Path | str, target: Path | str, *, overwrite: bool = False, progress: bool = False) -> Path:
    """Extract a .tar/.tar.gz/.tgz/.zip archive so that its members end up under ``target``.

    Members are written to a temporary sibling folder that is renamed to ``target`` only when the
    whole archive extracted; anything unsafe (see the module docstring) raises DownloadError and
    leaves nothing behind. An existing ``target`` raises DownloadError unless ``overwrite``.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise DownloadError(f"archive {archive} does not exist")
    if target.exists() and not overwrite:
        raise DownloadError(f"cannot extract {archive.name}: {target} already exists (remove it first)")
    if zipfile.is_zipfile(archive):
        extractor = _extract_zip
    elif tarfile.is_tarfile(archive):
        extractor = _extract_tar
    else:
        raise DownloadError(f"{archive} is not a tar or zip archive (or it is truncated)")
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.extracting-", dir=target.parent))
    try:
        try:
            extractor(archive, _Writer(staging, archive), progress)
            _check_links(staging, archive)
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
            raise DownloadError(
                f"cannot extract {archive}: {exc} (the archive may be truncated or "
                "corrupt: delete it and download it again)"
            ) from None
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


def extract_folder(archive: Path | str, target: Path | str, *, progress: bool = False) -> Path:
    """Safely extract ``archive`` and move its single top-level folder (or, when it has several
    entries, all of it) to ``target``: the target appears complete or not at all."""
    target = Path(target)
    staging = target.parent / f".{target.name}.extract"
    if staging.exists():  # left by an extraction that was killed
        shutil.rmtree(staging)
    safe_extract(archive, staging, progress=progress)
    try:
        entries = [p for p in staging.iterdir() if not p.name.startswith(".")]
        inner = entries[0] if len(entries) == 1 and entries[0].is_dir() else staging
        os.replace(inner, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
