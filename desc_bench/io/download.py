"""Verified downloads: fetch with resume, bounds and checksums, mirrors, archives, git blob ids.

- :func:`fetch` downloads one URL to ``dest`` through a ``.part`` file: an interrupted transfer
  keeps the ``.part`` and the next call resumes it with an HTTP ``Range`` request when the server
  supports one (``206 Partial Content``), else starts again. The whole file is checked (size,
  sha256, md5) *before* the atomic rename to ``dest``; a file that fails is deleted, so ``dest``
  exists only when it verified. ``max_bytes`` bounds a transfer whose size is not pinned.
- :func:`fetch_any` tries mirrors in order, each resuming its own ``.part`` (a partial file of one
  mirror is never continued from another), and reports every failure when all fail.
- :func:`fetch_archive` is what dataset downloads use: an :class:`Archive` (addresses, pinned
  checksum or the reason there is none, download and extraction bounds) is fetched, verified,
  extracted safely (:mod:`desc_bench.io.extract`), checked for the expected structure and moved
  into place. An archive that turns out truncated or undecodable is deleted and fetched once more,
  saying so; one that fails its structure check is deleted too, so a bad file is never reused.
- :func:`git_blob_sha1` hashes a file as ``git hash-object`` does (SHA-1 of ``"blob <size>\\0"``
  followed by the content), the id upstream repositories publish for every file.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from ..errors import DownloadError
from .atomic import staged_folder, write_json
from .extract import (
    CorruptArchiveError,
    ExtractLimits,
    extract_folder,
    extract_into,
    hoist,
    safe_extract,
    unwrap_single_folder,
)
from .progress import bar

__all__ = [
    "Archive",
    "CorruptArchiveError",
    "ExtractLimits",
    "extract_folder",
    "fetch",
    "fetch_any",
    "fetch_archive",
    "git_blob_sha1",
    "safe_extract",
    "sha256_file",
    "verify_file",
]

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


def _transfer(
    response: BinaryIO, part: Path, offset: int, total: int | None, label: str, progress: bool, max_bytes: int | None
) -> int:
    mode = "ab" if offset else "wb"
    written = offset
    with (
        open(part, mode) as out,
        bar(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=label, enabled=progress
        ) as b,
    ):
        if offset:
            out.truncate(offset)
        for block in iter(lambda: response.read(CHUNK), b""):
            if max_bytes is not None and written + len(block) > max_bytes:
                raise _TooLarge(written + len(block))
            out.write(block)
            written += len(block)
            b.update(len(block))
    return written


class _TooLarge(Exception):
    def __init__(self, size: int):
        self.size = size


def part_path(dest: Path, url: str | None = None) -> Path:
    """The ``.part`` file of a transfer of ``url`` to ``dest`` (one per mirror when ``url`` is given)."""
    if url is None:
        return dest.with_name(dest.name + ".part")
    return dest.with_name(f"{dest.name}.{hashlib.sha1(url.encode()).hexdigest()[:8]}.part")


def fetch(
    url: str,
    dest: Path | str,
    *,
    sha256: str | None = None,
    size: int | None = None,
    md5: str | None = None,
    max_bytes: int | None = None,
    progress: bool = True,
    resume: bool = True,
    timeout: float = TIMEOUT_S,
    part: Path | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``part``, default ``dest.part``); verify, then rename atomically.

    Returns ``dest``. An existing ``dest`` that verifies (or any existing ``dest`` when no checksum
    or size is given) is kept without a request. Raises DownloadError on an HTTP error, a network
    error or timeout (the ``.part`` file is kept for resuming, and the message says so only when
    it is), a truncated transfer, a transfer over ``max_bytes``, or a size/checksum mismatch (the
    file is deleted, nothing is left behind).
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
    part = Path(part) if part is not None else part_path(dest)
    if not resume and part.exists():
        part.unlink()
    limit = size if size is not None else max_bytes
    try:
        response, offset, total = _start(url, part, resume, timeout)
        if total is not None and limit is not None and total > limit:
            if response is not None:
                response.close()
            raise _TooLarge(total)
        if response is not None:
            with response:
                written = _transfer(response, part, offset, total, dest.name, progress, limit)
            if total is not None and written < total:
                raise DownloadError(
                    f"transfer of {url} stopped at {written} of {total} bytes; run the command again to "
                    f"resume from {part}"
                )
    except _TooLarge as exc:
        part.unlink(missing_ok=True)
        expected = f"expected {size} bytes" if size is not None else f"at most {max_bytes} bytes are allowed"
        raise DownloadError(
            f"{dest.name} from {url}: {expected}, the server sends at least {exc.size}; nothing was kept. "
            "The address may serve another file now"
        ) from None
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
    """:func:`fetch` from the first mirror that works; DownloadError lists every failure.

    With several mirrors each resumes its own ``.part`` file (:func:`part_path`); they are removed
    once one mirror delivered a verified file.
    """
    urls, dest = list(urls), Path(dest)
    if not urls:
        raise DownloadError(f"no download address given for {dest.name}")
    parts = {url: part_path(dest, url) if len(urls) > 1 else part_path(dest) for url in urls}
    failures = []
    for url in urls:
        try:
            path = fetch(url, dest, part=parts[url], **options)
        except DownloadError as exc:
            failures.append(str(exc))
            continue
        for other in parts.values():
            other.unlink(missing_ok=True)
        return path
    if len(failures) == 1:
        raise DownloadError(failures[0])
    raise DownloadError(f"every mirror failed for {dest.name}:\n  " + "\n  ".join(failures))


# ----------------------------------------------------------------------------------------- archives


@dataclass(frozen=True)
class Archive:
    """A downloadable dataset archive and what it must be.

    ``sha256`` or ``md5`` pin the content where a checksum is published; ``checksum_source`` says
    where it was published, or why there is none (then ``max_bytes`` bounds the download and the
    extracted structure is the check). ``limits`` bounds the extraction.
    """

    urls: tuple[str, ...]
    filename: str
    sha256: str | None = None
    md5: str | None = None
    size: int | None = None
    max_bytes: int | None = None
    checksum_source: str = ""
    limits: ExtractLimits = field(default_factory=ExtractLimits)

    @property
    def verified_by(self) -> str:
        if self.sha256:
            return "sha256"
        if self.md5:
            return "md5"
        return "size bound and structure only (no published checksum)"


def _say(message: str) -> None:
    print(f"desc-bench: {message}", file=sys.stderr)


def fetch_archive(
    archives: Archive | Iterable[Archive],
    downloads: Path | str,
    target: Path | str,
    *,
    check: Callable[[Path], Path | None] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = _say,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Fetch an archive (the first of ``archives`` that works) into ``downloads``, extract it into
    ``target`` and return ``target``.

    ``check(folder)`` raises (a DescBenchError naming what is missing) when the extracted content
    lacks the expected structure; it may return the sub-folder that holds the content (the rest is
    dropped); a single top-level folder is unwrapped before the check. ``target`` appears only when everything
    passed, with a ``SOURCE.json`` recording the address, size and checksums. What does not verify
    is deleted: a truncated or undecodable archive is fetched once more (``log`` says so), a wrong
    checksum, size or structure is refused. The archive is deleted after a successful extraction.
    """
    archives = [archives] if isinstance(archives, Archive) else list(archives)
    downloads, target = Path(downloads), Path(target)
    failures = []
    for archive in archives:
        try:
            return _fetch_one(archive, downloads, target, check, progress, log, timeout)
        except DownloadError as exc:
            if len(archives) == 1:
                raise
            failures.append(str(exc))
    raise DownloadError(f"every address failed for {target.name}:\n  " + "\n  ".join(failures))


def _fetch_one(archive: Archive, downloads: Path, target: Path, check, progress, log, timeout) -> Path:
    dest = downloads / archive.filename
    for attempt in (1, 2):
        path = fetch_any(
            archive.urls,
            dest,
            sha256=archive.sha256,
            md5=archive.md5,
            size=archive.size,
            max_bytes=archive.max_bytes,
            progress=progress,
            timeout=timeout,
        )
        try:
            hashes = verify_file(path)
            with staged_folder(target, overwrite=False) as staging:
                extract_into(path, staging, limits=archive.limits, progress=progress)
                unwrap_single_folder(staging)
                content = check(staging) if check is not None else None
                if content is not None and Path(content) != staging:
                    hoist(Path(content), staging)
                write_json(staging / "SOURCE.json", _source_record(archive, path, hashes))
        except CorruptArchiveError as exc:
            path.unlink(missing_ok=True)
            if attempt == 2:
                raise CorruptArchiveError(
                    f"{exc}; it was deleted. It failed twice: the server may be sending a broken file"
                ) from None
            log(f"{exc}; deleted it and downloading it again")
            continue
        except BaseException:
            path.unlink(missing_ok=True)  # wrong structure, unsafe, over a limit or interrupted: never reused as is
            raise
        path.unlink(missing_ok=True)
        return target
    raise AssertionError("unreachable")


def _source_record(archive: Archive, path: Path, hashes: dict[str, str]) -> dict:
    return {
        "file": archive.filename,
        "urls": list(archive.urls),
        "size": path.stat().st_size,
        "sha256": hashes["sha256"],
        "md5": hashes["md5"],
        "verified_by": archive.verified_by,
        "checksum_source": archive.checksum_source,
        "downloaded": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def read_source_record(folder: Path | str) -> dict | None:
    """The ``SOURCE.json`` that :func:`fetch_archive` wrote into ``folder``, or None."""
    try:
        return json.loads((Path(folder) / "SOURCE.json").read_text())
    except (OSError, ValueError):
        return None
