"""Safe, bounded archive extraction: ``.tar`` (any compression tarfile reads) and ``.zip``.

:func:`safe_extract` writes the members into a staging folder beside ``target``
(:func:`~desc_bench.io.atomic.staged_folder`) that is renamed into place only when the whole
archive extracted and passed every check; a refused, corrupt or interrupted extraction leaves
nothing at ``target``.

Tar members go through the standard library's ``'data'`` extraction filter
(:func:`tarfile.data_filter`, PEP 706): it refuses members and links that resolve outside the
target, absolute links, device files and FIFOs, and drops owners, setuid bits and group/other write
permissions. On top of it, because the filter resolves paths with ``realpath`` at the moment each
member is written (Python releases before 3.11.13 / 3.12.11 could be fooled by symlink chains):

- absolute member names are refused (the filter would strip the ``/`` and accept them);
- nothing is written *through* an already extracted symlink (a parent component or, for files and
  folders, the member itself being a link);
- after extraction every symlink must still resolve inside the target (a later link can change
  where an earlier one points).

Zip archives (no standard filter exists) get the same rules by hand: no absolute or ``..`` names,
only regular files, folders and in-target symlinks.

Every archive is bounded (:class:`ExtractLimits`): number of entries, size of one member, total
size, and total size relative to the archive (a compression bomb). Sizes come from the member
headers, which cap what is read. A truncated or undecodable archive raises
:class:`CorruptArchiveError`, so that callers can delete it and fetch it again.
"""

from __future__ import annotations

import gzip
import lzma
import os
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import DownloadError
from .atomic import staged_folder
from .progress import bar

CHUNK = 1 << 20
_CORRUPT = (tarfile.ReadError, tarfile.HeaderError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile)
_CORRUPT += (lzma.LZMAError,)


class CorruptArchiveError(DownloadError):
    """The archive is truncated or undecodable (not unsafe): deleting and fetching it again may help."""


@dataclass(frozen=True)
class ExtractLimits:
    """Bounds on what one archive may hold. Defaults are generous; datasets pass tighter ones."""

    max_entries: int = 50_000
    max_member_bytes: int = 8 << 30
    max_total_bytes: int = 16 << 30
    max_ratio: float = 100.0  # total member bytes / archive bytes
    ratio_floor_bytes: int = 64 << 20  # below this total, the ratio is not checked

    def describe(self) -> str:
        return (
            f"at most {self.max_entries} entries, {_size(self.max_member_bytes)} per member, "
            f"{_size(self.max_total_bytes)} in all and {self.max_ratio:g}x the archive size"
        )


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


class _Budget:
    """Counts entries and declared sizes as members arrive; refuses the first one over a bound."""

    def __init__(self, archive: Path, limits: ExtractLimits):
        self.archive, self.limits = archive, limits
        self.archive_bytes = max(archive.stat().st_size, 1)
        self.entries = self.total = 0

    def add(self, name: str, size: int) -> None:
        limits, self.entries, self.total = self.limits, self.entries + 1, self.total + max(size, 0)
        problem = None
        if self.entries > limits.max_entries:
            problem = f"more than {limits.max_entries} entries"
        elif size > limits.max_member_bytes:
            problem = f"member {name!r} of {_size(size)} (more than {_size(limits.max_member_bytes)})"
        elif self.total > limits.max_total_bytes:
            problem = f"more than {_size(limits.max_total_bytes)} of content"
        elif self.total > limits.ratio_floor_bytes and self.total > limits.max_ratio * self.archive_bytes:
            problem = (
                f"{_size(self.total)} of content from a {_size(self.archive_bytes)} archive "
                f"(more than {limits.max_ratio:g}x: a compression bomb?)"
            )
        if problem:
            raise DownloadError(
                f"refusing to extract {self.archive}: it holds {problem}; the limits for it are "
                f"{limits.describe()}. Delete the file; if it really is the dataset, extract it by hand"
            )


def _unsafe(archive: Path, what: str) -> DownloadError:
    return DownloadError(f"unsafe archive {archive}: {what}; refusing it")


def _is_absolute(name: str) -> bool:
    return name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name) is not None


def _relative(name: str, archive: Path) -> str:
    """A member name as a clean relative path; refuse absolute names and ``..`` escapes."""
    clean = name.replace("\\", "/")
    if _is_absolute(clean):
        raise _unsafe(archive, f"member {name!r} has an absolute path")
    norm = posixpath.normpath(clean)
    if norm == ".." or norm.startswith("../"):
        raise _unsafe(archive, f"member {name!r} escapes the target folder")
    return "" if norm == "." else norm


def _through_link(root: Path, rel: str, archive: Path, final_too: bool) -> None:
    """Refuse a member whose path passes through an extracted symlink."""
    parts = [p for p in rel.split("/") if p]
    path = root
    for index, part in enumerate(parts):
        path = path / part
        last = index == len(parts) - 1
        if path.is_symlink() and (final_too or not last):
            raise _unsafe(archive, f"member {rel!r} would be written through the symlink {path.relative_to(root)}")


def _tar_filter(root: Path, archive: Path):
    def check(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
        rel = _relative(member.name, archive)
        try:
            member = tarfile.data_filter(member, dest)
        except tarfile.FilterError as exc:
            raise _unsafe(archive, str(exc)) from None
        _through_link(root, rel, archive, final_too=not member.issym())
        return member

    return check


def _extract_tar(archive: Path, root: Path, limits: ExtractLimits, progress: bool) -> None:
    if not hasattr(tarfile, "data_filter"):  # Python < 3.10.12 / 3.11.4
        raise DownloadError("extracting archives safely needs tarfile.data_filter: use Python 3.10.12 or later")
    budget = _Budget(archive, limits)
    progress_bar = bar(desc=f"extracting {archive.name}", unit=" files", enabled=progress)
    with tarfile.open(archive, "r:*") as tar, progress_bar as b:

        def members():
            for member in tar:  # streamed: one pass over the (possibly compressed) archive
                budget.add(member.name, member.size if member.isreg() else 0)
                yield member
                b.update()

        tar.extractall(root, members=members(), filter=_tar_filter(root, archive))


def _extract_zip(archive: Path, root: Path, limits: ExtractLimits, progress: bool) -> None:
    budget = _Budget(archive, limits)
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # every bound is checked before anything is written
            budget.add(info.filename, info.file_size)
        for info in bar(infos, desc=f"extracting {archive.name}", unit=" files", enabled=progress):
            rel = _relative(info.filename, archive)
            mode = info.external_attr >> 16  # Unix mode when made on Unix, else 0
            kind = stat.S_IFMT(mode)
            if not rel:
                continue
            _through_link(root, rel, archive, final_too=True)
            path = root / rel
            if info.is_dir():
                path.mkdir(parents=True, exist_ok=True)
            elif kind == stat.S_IFLNK:
                link = zf.read(info).decode("utf-8", "surrogateescape")
                _check_link(root, rel, link, archive)
                path.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(link, path)
            elif kind in (0, stat.S_IFREG):
                path.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as source, open(path, "wb") as out:
                    _copy(source, out)
                if mode & 0o777:
                    os.chmod(path, (mode & 0o755) | 0o600)
            else:
                raise _unsafe(archive, f"{info.filename!r} is not a regular file, folder or symlink")


def _copy(source: BinaryIO, out: BinaryIO) -> None:
    shutil.copyfileobj(source, out, CHUNK)


def _check_link(root: Path, rel: str, link: str, archive: Path) -> None:
    if _is_absolute(link):
        raise _unsafe(archive, f"symlink {rel!r} points to the absolute path {link!r}")
    target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), link.replace("\\", "/")))
    real = os.path.realpath(os.path.join(root, target))
    if target == ".." or target.startswith("../") or not _inside(os.path.realpath(root), real):
        raise _unsafe(archive, f"symlink {rel!r} -> {link!r} points outside the target folder")


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


def _check_links(root: Path, archive: Path) -> None:
    """Every symlink must still resolve inside ``root`` once all members exist."""
    real_root = os.path.realpath(root)
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path) and not _inside(real_root, os.path.realpath(path)):
                rel = os.path.relpath(path, root)
                raise _unsafe(archive, f"symlink {rel!r} -> {os.readlink(path)!r} points outside the target folder")


def extract_into(archive: Path | str, root: Path | str, *, limits: ExtractLimits | None = None, progress: bool = False):
    """Extract ``archive`` into the existing empty folder ``root`` with every check of this module.

    Raises CorruptArchiveError (truncated, undecodable, not an archive) or DownloadError (unsafe,
    over a limit, or a write error). ``root`` may hold part of the archive afterwards: callers
    extract into a staging folder (as :func:`safe_extract` does).
    """
    archive, root, limits = Path(archive), Path(root), limits or ExtractLimits()
    if not archive.is_file():
        raise DownloadError(f"archive {archive} does not exist")
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, root, limits, progress)
        elif tarfile.is_tarfile(archive):
            _extract_tar(archive, root, limits, progress)
        else:
            raise CorruptArchiveError(f"{archive} is not a tar or zip archive (or it is truncated)")
        _check_links(root, archive)
    except _CORRUPT as exc:
        raise CorruptArchiveError(
            f"cannot extract {archive}: it is truncated or corrupt ({exc or type(exc).__name__})"
        ) from None
    except OSError as exc:
        raise DownloadError(f"cannot extract {archive} into {root}: {exc}") from None


def hoist(inner: Path, root: Path) -> None:
    """Make the content of ``inner`` (a folder somewhere under ``root``) the content of ``root``;
    everything else under ``root`` is removed."""
    inner = inner.rename(root / f".hoist-{os.getpid()}")
    for child in root.iterdir():
        if child != inner:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    for child in inner.iterdir():
        os.replace(child, root / child.name)
    inner.rmdir()


def unwrap_single_folder(root: Path) -> None:
    """When ``root`` holds exactly one entry (not counting dot files) and it is a folder, move that
    folder's content up into ``root`` (``graf/img1.ppm`` -> ``img1.ppm``)."""
    entries = [p for p in root.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        hoist(entries[0], root)


def safe_extract(
    archive: Path | str,
    target: Path | str,
    *,
    overwrite: bool = False,
    progress: bool = False,
    limits: ExtractLimits | None = None,
) -> Path:
    """Extract a .tar/.tar.gz/.tgz/.tar.xz/.zip archive so that its members end up under ``target``.

    Atomic: the members are written to a staging folder renamed to ``target`` only at the end.
    An existing ``target`` raises DownloadError unless ``overwrite``.
    """
    archive, target = Path(archive), Path(target)
    if target.exists() and not overwrite:
        raise DownloadError(f"cannot extract {archive.name}: {target} already exists (remove it first)")
    with staged_folder(target, overwrite=overwrite) as staging:
        extract_into(archive, staging, limits=limits, progress=progress)
    return target


def extract_folder(
    archive: Path | str, target: Path | str, *, progress: bool = False, limits: ExtractLimits | None = None
) -> Path:
    """Safely extract ``archive`` into ``target``, unwrapping a single top-level folder: the target
    appears complete or not at all."""
    with staged_folder(Path(target), overwrite=False) as staging:
        extract_into(archive, staging, limits=limits, progress=progress)
        unwrap_single_folder(staging)
    return Path(target)
