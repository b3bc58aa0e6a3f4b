"""The record store: write a run's record (validated, atomic) and read records back."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import RecordError
from ..io.atomic import write_json, write_text
from .schema import Record


class RecordWriteError(RecordError, OSError):
    """A record or its markdown cannot be written (an OSError too, for callers that catch those)."""


def _unwritable(path: Path, exc: OSError) -> RecordWriteError:
    return RecordWriteError(
        f"cannot write record {path}: {exc.strerror or exc}; choose a writable output folder (--output/-o)"
    )


def write_record(path: Path | str, record: Record) -> Path:
    """Validate, then write atomically; errors (invalid record, unwritable folder) name the file."""
    data = record.to_json()
    Record.from_json(data, str(path))  # validate before anything is written
    try:
        return write_json(path, data)
    except OSError as exc:
        raise _unwritable(Path(path), exc) from None


def read_record(path: Path | str) -> Record:
    """Read and validate one record; every failure is a RecordError naming the file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise RecordError(f"cannot read record {path}: JSON nested too deeply to be a record") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # ValueError: JSONDecodeError, huge integers
        raise RecordError(f"cannot read record {path}: {exc}") from None
    try:
        return Record.from_json(raw, str(path))
    except RecordError:
        raise
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:  # a case validate() missed
        raise RecordError(f"record {path} does not follow the schema: {type(exc).__name__}: {exc}") from None


def find_records(paths: list[Path | str]) -> list[Path]:
    """Record files named directly or found (recursively, ``*.json``) under the given folders."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            try:
                found.extend(sorted(q for q in p.rglob("*.json") if not q.name.startswith(".")))
            except OSError as exc:
                raise RecordError(f"cannot list records under {p}: {exc}") from None
        elif p.is_file():
            found.append(p)
        else:
            raise RecordError(f"no record or folder at {p}")
    return found


def check_record_prefix(prefix: str) -> str:
    """``prefix`` if it can start a record's file name (no path separator); else a RecordError."""
    if not prefix or any(sep in prefix for sep in ("/", "\\", os.sep)) or prefix.startswith("."):
        raise RecordError(
            f"record name {prefix!r} must be a plain file name (no path separator, not starting with '.'); "
            "choose the folder with --output/-o"
        )
    return prefix


def write_run(folder: Path | str, prefix: str, record: Record, markdown: str) -> tuple[Path, Path]:
    """Write a run's record and its markdown under a new, unique, timestamped name.

    Returns (``<prefix>-<time>.json``, ``.md``); errors (unwritable folder, a prefix with a path
    separator) are RecordErrors naming the file.
    """
    import datetime as _dt

    folder = Path(folder)
    stem = f"{check_record_prefix(prefix)}-{_dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    json_path, n = folder / f"{stem}.json", 1
    try:
        folder.mkdir(parents=True, exist_ok=True)
        while True:  # reserve the name: two runs finishing in the same second get different files
            try:
                os.close(os.open(json_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                break
            except FileExistsError:
                n += 1
                json_path = folder / f"{stem}-{n}.json"
    except OSError as exc:
        raise _unwritable(json_path, exc) from None
    md_path = json_path.with_name(json_path.name[: -len(".json")] + ".md")
    try:
        write_record(json_path, record)
        try:
            return json_path, write_text(md_path, markdown)
        except OSError as exc:
            raise _unwritable(md_path, exc) from None
    except BaseException:
        json_path.unlink(missing_ok=True)  # no empty placeholder left behind
        raise
