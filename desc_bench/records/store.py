"""The record store: write a run's record (validated, atomic) and read records back."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import RecordError
from ..io.atomic import write_json, write_text
from .schema import Record


def write_record(path: Path | str, record: Record) -> Path:
    data = record.to_json()
    Record.from_json(data, str(path))  # validate before anything is written
    return write_json(path, data)


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
            found.extend(sorted(q for q in p.rglob("*.json") if not q.name.startswith(".")))
        elif p.is_file():
            found.append(p)
        else:
            raise RecordError(f"no record or folder at {p}")
    return found


def write_run(folder: Path | str, prefix: str, record: Record, markdown: str) -> tuple[Path, Path]:
    """Write a run's record and its markdown under a new, unique, timestamped name."""
    import datetime as _dt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base, n = folder / f"{prefix}-{stamp}", 1
    while True:  # reserve the name: two runs finishing in the same second get different files
        try:
            os.close(os.open(base.with_suffix(".json"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            break
        except FileExistsError:
            n += 1
            base = folder / f"{prefix}-{stamp}-{n}"
    try:
        return write_record(base.with_suffix(".json"), record), write_text(base.with_suffix(".md"), markdown)
    except BaseException:
        base.with_suffix(".json").unlink(missing_ok=True)  # no empty placeholder left behind
        raise
