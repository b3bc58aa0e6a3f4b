"""Drift guard: the library versions that change numbers, compared between records.

``check`` warns when the run's records were made with another torch, OpenCV, numpy or estimator
library (PoseLib, faiss, pycolmap, ...; records/schema.py ``NUMERIC_LIBRARIES``) than the
baseline's; ``report`` warns when the records it puts side by side differ. A difference is a
warning, not a failure: the numbers may still agree, but a change in them may come from the
library rather than from the code under test.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..records.schema import Record

_TOP_LEVEL = {"torch": "torch", "opencv": "OpenCV (cv2)"}  # metadata keys every record has


def versions(record: Record) -> dict[str, str] | None:
    """Library -> version of a record; None for the per-library part of a record made before it was kept."""
    meta = record.metadata
    out = {label: str(meta[key]) for key, label in _TOP_LEVEL.items() if meta.get(key) is not None}
    libraries = meta.get("libraries")
    if isinstance(libraries, dict):
        out.update({str(k): str(v) for k, v in libraries.items()})
        return out
    return out | {"": ""}  # marker: no library list


def _collect(records: Iterable[Record]) -> tuple[dict[str, set[str]], bool]:
    found: dict[str, set[str]] = {}
    complete = True
    for record in records:
        v = versions(record)
        if "" in v:
            complete = False
            v.pop("")
        for name, version in v.items():
            found.setdefault(name, set()).add(version)
    return found, complete


def _fmt(values: set[str]) -> str:
    return " and ".join(sorted(values))


def drift_warnings(baseline: Iterable[Record], current: Iterable[Record]) -> list[str]:
    """One line per library whose version differs between the baseline and the run."""
    base, base_complete = _collect(baseline)
    run, run_complete = _collect(current)
    out = []
    for name in sorted(base.keys() & run.keys()):
        if base[name] != run[name]:
            out.append(
                f"{name} {_fmt(run[name])} in the run, {_fmt(base[name])} in the baseline: a change in the "
                "numbers may come from the library; remake the baseline with the new version (or pin it)"
            )
    for name in sorted(run.keys() - base.keys()):
        if base_complete:  # an estimator library the baseline did not have
            out.append(f"{name} {_fmt(run[name])} in the run, not installed when the baseline was made")
    if not (base_complete and run_complete):
        out.append("a record made before library versions were kept: only torch and OpenCV versions were compared")
    return out


def mixed_versions(records: list[Record]) -> list[str]:
    """For a report: libraries whose version differs between the records it shows side by side."""
    found, _ = _collect(records)
    return [
        f"{name} differs between the records ({_fmt(v)}): rows from different versions are side by side"
        for name, v in sorted(found.items())
        if len(v) > 1
    ]
