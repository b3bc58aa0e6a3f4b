"""Signs in a record that its timings were made on a loaded (busy) machine.

``loaded_machine_warnings(record)`` returns one line per sign, for ``desc-bench time``, ``run`` and
``check`` to print (an empty list: no sign). Accuracy is not affected by load; speeds are.

Signs:
- the calibration workload's spread: its interquartile range larger than its median (records made
  before ``Calibration.iqr_ms`` existed carry no spread, and this sign is not checked);
- the timings' spread: rows whose IQR is larger than their median (the repeats of one batch
  disagree by more than the time itself);
- given a baseline: the calibration workload (same name: same device and thread count) took more
  than ``SLOWER_CALIBRATION`` times as long as in the baseline. Normalised speeds absorb a steadily
  slower machine, but load that comes and goes between the calibration and the descriptor does not
  cancel (docs/regression-ci.md measured normalised times 1.6x apart on a shared 2-core machine).
"""

from __future__ import annotations

from collections.abc import Iterable

from .schema import Record, TimingRow

SLOWER_CALIBRATION = 1.5  # calibration median over the baseline's: above this, warn


def _spread_is_large(median: float | None, iqr: float | None) -> bool:
    return median is not None and iqr is not None and iqr > median


def _row_name(t: TimingRow) -> str:
    return f"{t.descriptor} batch {t.batch}" + (f" {t.input_size}" if t.unit == "image" else "")


def loaded_machine_warnings(record: Record, baseline: Iterable[Record] = ()) -> list[str]:
    """One line per sign that ``record``'s timings were made on a loaded machine (see the module doc)."""
    warnings = []
    cal = record.calibration
    if cal is not None and _spread_is_large(cal.median_ms, cal.iqr_ms):
        warnings.append(
            f"loaded machine? the calibration workload's spread (IQR {cal.iqr_ms:.3g} ms) is larger than its "
            f"median ({cal.median_ms:.3g} ms): timings of this record are unreliable; rerun on a quiet machine"
        )
    noisy = [t for t in record.timings if t.error is None and _spread_is_large(t.median_ms, t.iqr_ms)]
    if noisy:
        names = ", ".join(_row_name(t) for t in noisy[:4]) + (" ..." if len(noisy) > 4 else "")
        warnings.append(
            f"loaded machine? {len(noisy)} of {len(record.timings)} timing rows have an IQR larger than their "
            f"median ({names}): rerun on a quiet machine or with more --repeats"
        )
    if cal is not None:
        reference = [b.calibration for b in baseline if b.calibration is not None and b.calibration.name == cal.name]
        if reference:
            ratio = cal.median_ms / min(r.median_ms for r in reference)
            if ratio > SLOWER_CALIBRATION:
                warnings.append(
                    f"loaded or slower machine? the calibration workload took {ratio:.1f}x as long as in the "
                    f"baseline ({cal.median_ms:.3g} ms vs {min(r.median_ms for r in reference):.3g} ms, "
                    f"{cal.name}): normalised speeds compare, but with more noise"
                )
    return warnings
