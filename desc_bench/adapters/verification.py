"""Verification of weight files: the upstream checksums, and a record that keeps a cached file verified.

A weight file is checked against the git blob id and/or sha256 its :class:`WeightFile` pins
(:func:`verify`). A file in the cache is checked again before *every* use (:func:`verify_cached`):
``<file>.verified.json`` records its sha256 with the size, ``mtime_ns``, ``ctime_ns`` and inode it had
when it was last verified and the pins it was verified against. While these are unchanged the
recorded sha256 is used (no rehash on every run); any change (a file moved over it, written in place,
touched, chmod-ed) makes the file be hashed and checked again, and a file that fails is refused with
the command that fixes it. Weights that no upstream checksum pins
(files only ``weights add`` can import) are checked against the sha256 recorded when they were added.

The record is a cache of a check, not a signature: whoever can write the cache folder can rewrite the
record too. It does catch every ordinary replacement, including one that restores the old mtime
(``ctime`` cannot be set back), except a same-size rewrite within one tick of the file system clock.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import WeightsError
from ..io.atomic import write_json
from .base import WeightFile


def git_blob_sha1(path: Path | str) -> str:
    from ..io.download import git_blob_sha1 as blob

    return blob(path)


def sha256_of(path: Path | str) -> str:
    """Hex sha256 of a file (recorded with every weight file; part of the cache keys)."""
    from ..io.download import sha256_file

    return sha256_file(path)


def verify(path: Path | str, weight: WeightFile, label: str) -> str:
    """Check ``path`` against the git blob id and/or sha256 of ``weight``; return its sha256.

    Raises WeightsError naming the file, what was expected and what was found.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{label}: no file at {path}")
    if weight.git_blob is not None:
        found = git_blob_sha1(path)
        if found != weight.git_blob.lower():
            raise WeightsError(
                f"{label}: {path} does not verify: its git blob id is {found}, expected "
                f"{weight.git_blob} (the upstream file). The file is corrupt, truncated or a "
                "different file"
            )
    digest = sha256_of(path)
    if weight.sha256 is not None and digest != weight.sha256.lower():
        raise WeightsError(f"{label}: {path} does not verify: sha256 {digest}, expected {weight.sha256}")
    return digest


def record_path(path: Path) -> Path:
    """The verification record of a cached weight file: ``<file>.verified.json`` beside it."""
    return path.with_name(path.name + ".verified.json")


def _pins(weight: WeightFile) -> dict[str, str | None]:
    return {"git_blob": weight.git_blob, "sha256": weight.sha256}


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(record_path(path).read_text())
    except (OSError, ValueError):
        return None  # absent or damaged: the file is hashed again
    return record if isinstance(record, dict) and isinstance(record.get("sha256"), str) else None


def _identity(path: Path) -> dict[str, int]:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns, "inode": stat.st_ino}


def write_record(path: Path, digest: str, weight: WeightFile) -> None:
    """Record that ``path`` (as it is now) verified with sha256 ``digest`` against ``weight``'s pins."""
    record = {"sha256": digest, **_identity(path), "pins": _pins(weight)}
    try:
        write_json(record_path(path), record)
    except OSError:
        pass  # a read-only cache: the file is then hashed at each use


def forget(path: Path) -> None:
    """Delete a cached weight file and its verification record."""
    path.unlink(missing_ok=True)
    record_path(path).unlink(missing_ok=True)


def verify_cached(path: Path, weight: WeightFile, label: str, fix: str) -> str:
    """The sha256 of the cached file ``path`` once it verifies; else WeightsError ending with ``fix``.

    ``fix`` says how to replace the file (``desc-bench weights fetch NAME`` / ``weights add NAME PATH``).
    """
    identity = _identity(path)
    record = _read_record(path)
    if (
        record is not None
        and all(record.get(k) == v for k, v in identity.items())
        and record.get("pins") == _pins(weight)
    ):
        return record["sha256"]
    try:
        if weight.git_blob is None and weight.sha256 is None:  # nothing upstream to check against
            if record is None:
                raise WeightsError(
                    f"{label}: {path} has no record of the file that was added (no upstream checksum exists "
                    "for these weights, so only the digest recorded by `weights add` can vouch for it)"
                )
            digest = sha256_of(path)
            if digest != record["sha256"]:
                raise WeightsError(
                    f"{label}: {path} changed since it was added: sha256 {digest}, recorded {record['sha256']}"
                )
        else:
            digest = verify(path, weight, label)
    except WeightsError as exc:
        raise WeightsError(f"{exc}. Refusing to use it: {fix}") from None
    if _identity(path) == identity:  # not changed while it was hashed
        write_record(path, digest, weight)
    return digest
