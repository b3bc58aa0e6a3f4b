"""Atomic writes: a file or folder is either absent or complete, never half-written.

- :func:`atomic_path` / :func:`write_text` / :func:`write_json` / :func:`write_npz`: one file,
  written to a temporary sibling and renamed over the target.
- :func:`staged_folder`: one folder (a generated or extracted dataset), built in a staging sibling
  ``.<name>.tmp-<pid>@<host>-<random>`` and renamed into place when the block succeeds; removed
  when it fails or is interrupted (KeyboardInterrupt, SystemExit). Staging folders respect the
  umask (``mkdtemp`` would make them 0700 and the dataset unreadable to others in a shared
  ``DESC_BENCH_DATA``).
- :func:`remove_stale_staging`: what a killed process left (SIGKILL, or SIGTERM without a
  handler) is removed at the next start: staging folders whose process is gone (same host), any
  staging folder older than an hour (another host sharing the folder), and replaced folders
  ``.<name>.old-*``. :mod:`desc_bench.io.interrupt` turns SIGTERM into a clean exit for the CLI.
- :func:`scratch_folder`: a staging folder that is always removed (for files moved out one by one).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

STALE_S = 3600.0  # a staging folder of another host (or an unparsable one) older than this is abandoned
_STAGING = re.compile(r"\.tmp-(\d+)@(.+)-[0-9a-f]{8}$")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: Path | str, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it over ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_text(path: Path | str, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: Path | str, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n")


def write_npz(path: Path | str, arrays: dict[str, np.ndarray]) -> Path:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)
    return Path(path)


# ------------------------------------------------------------------------------------------ folders


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9._]", "_", socket.gethostname()) or "host"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _make_staging(target: Path) -> Path:
    """A new empty staging folder beside ``target``, created with the umask's permissions."""
    for _ in range(100):
        path = target.with_name(f".{target.name}.tmp-{os.getpid()}@{_host()}-{secrets.token_hex(4)}")
        try:
            os.mkdir(path, 0o777)  # the umask applies, as for any folder the user makes
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a staging folder beside {target}")


def staging_folders(target: Path | str) -> list[Path]:
    """Staging and replaced folders that belong to ``target`` (``.<name>.tmp-*``, ``.<name>.old-*``)."""
    target = Path(target)
    if not target.parent.is_dir():
        return []
    prefixes = (f".{target.name}.tmp-", f".{target.name}.old-")
    return sorted(p for p in target.parent.iterdir() if p.name.startswith(prefixes))


def remove_stale_staging(target: Path | str, stale_s: float = STALE_S) -> list[Path]:
    """Remove what killed processes left beside ``target``; returns the removed paths.

    A staging folder is removed when its process (named in the folder name) is gone on this host,
    or when it is older than ``stale_s`` (another host, or a name without a process id); a live
    process's staging folder is kept. Replaced folders (``.<name>.old-*``) are always removed.
    """
    removed = []
    now, host = time.time(), _host()
    for path in staging_folders(target):
        if not path.is_dir() or path.is_symlink():
            continue
        if path.name.startswith(f".{Path(target).name}.old-"):
            stale = True
        else:
            match = _STAGING.search(path.name)
            try:
                old = now - path.stat().st_mtime > stale_s
            except OSError:
                continue
            mine = match is not None and match.group(2) == host
            stale = old or (mine and not _alive(int(match.group(1))))
        if stale:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


@contextmanager
def staged_folder(
    target: Path | str,
    *,
    overwrite: bool = True,
    before_replace: Callable[[Path], None] | None = None,
    keep_concurrent: Callable[[Path], bool] | None = None,
) -> Iterator[Path]:
    """Build a folder in a staging sibling and rename it to ``target`` when the block succeeds.

    Yields the (empty) staging folder. On success an existing ``target`` is replaced when
    ``overwrite`` (after ``before_replace(target)``, which may raise to refuse), else
    FileExistsError; a ``target`` that another process put there meanwhile is kept when
    ``keep_concurrent(target)`` says it is complete (the staging copy is then discarded). On any
    exception, including KeyboardInterrupt and SystemExit, the staging folder is removed and the
    exception propagates: ``target`` is never half-written.
    """
    target = Path(target)
    with scratch_folder(target) as staging:  # removed unless renamed into place
        yield staging
        _move_into_place(staging, target, overwrite, before_replace, keep_concurrent)


@contextmanager
def scratch_folder(beside: Path | str) -> Iterator[Path]:
    """A temporary folder named after ``beside`` in its parent folder (same file system), removed
    when the block ends however it ends; for results moved out of it one by one."""
    beside = Path(beside)
    beside.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(beside)
    staging = _make_staging(beside)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _move_into_place(staging: Path, target: Path, overwrite, before_replace, keep_concurrent) -> None:
    old = None
    if target.exists() or target.is_symlink():
        if not overwrite:
            raise FileExistsError(f"{target} already exists")
        if before_replace is not None:
            before_replace(target)
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{secrets.token_hex(4)}")
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except OSError:
        # Another process put a folder there first: keep it when it is complete.
        if keep_concurrent is None or not keep_concurrent(target):
            raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
