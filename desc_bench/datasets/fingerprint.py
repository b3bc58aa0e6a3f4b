"""Dataset fingerprints: short keys that change whenever the files an item is computed from change.

Caches (the feature store) key what they hold by the fingerprint of the item it was computed
from, so that editing a patch PNG or an image in place recomputes exactly that item:

- downloaded or user datasets: the relative path, size and modification time (ns) of each file
  (``stat``: no reading, cheap for gigabytes);
- generated datasets: the relative path and sha256 of each file's content (``content``), so that a
  regeneration with identical bytes keeps its caches valid while any edit changes the key. Digests
  are remembered per (path, size, mtime) within a process.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from ..errors import DatasetError

_DIGESTS: dict[tuple[str, int, int], str] = {}


def _content(path: Path, size: int, mtime_ns: int) -> str:
    key = (str(path), size, mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()
    return _DIGESTS[key]


def files_fingerprint(paths: Iterable[Path], root: Path, *, content: bool = False, extra: str = "") -> str:
    """A 16-hex-digit key of ``paths`` and ``extra``; see the module doc. Files are named relative to
    ``root`` (``<folder>/<file>`` outside it), so moving the data root keeps the key."""
    digest = hashlib.sha256(extra.encode())
    for path in sorted(Path(p) for p in paths):
        try:
            info = path.stat()
        except OSError as exc:
            raise DatasetError(f"cannot read {path} to fingerprint it: {exc}") from None
        name = path.relative_to(root).as_posix() if path.is_relative_to(root) else f"{path.parent.name}/{path.name}"
        if content:
            part = _content(path, info.st_size, info.st_mtime_ns)
        else:
            part = f"{info.st_size}:{info.st_mtime_ns}"
        digest.update(f"{name}\0{part}\0".encode())
    return digest.hexdigest()[:16]
