"""Timing tables (markdown) and normalised times, made from timing rows."""

from __future__ import annotations

from collections.abc import Sequence

from ...records.schema import Calibration, TimingRow


# ---- tables and output ----------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if value == 0 or abs(value) >= 100:
        return f"{value:.0f}" if abs(value) < 1e6 else f"{value:.3g}"
    return f"{value:.{digits}g}"


def timing_table(rows: Sequence[TimingRow]) -> str:
    """Markdown table: one line per descriptor and batch size (times per patch or image)."""
    from tabulate import tabulate

    header = [
        "descriptor",
        "weights",
        "device",
        "size",
        "batch",
        "fp16",
        "threads",
        "ms/unit median",
        "IQR",
        "units/s",
        "peak MB",
        "first call ms (batch)",
        "ms/unit with transfer",
        "error",
    ]
    lines = [
        [
            r.descriptor,
            "random weights, timing only" if r.random_weights else r.weights,
            r.device,
            f"{r.input_size} {r.unit}",
            r.batch,
            "yes" if r.fp16 else "no",
            r.threads,
            _fmt(r.median_ms),
            _fmt(r.iqr_ms),
            _fmt(r.per_second),
            _fmt(r.peak_memory_mb),
            _fmt(r.first_call_ms),
            _fmt(r.median_ms_with_transfer),
            r.error or "",
        ]
        for r in rows
    ]
    return tabulate(lines, headers=header, tablefmt="github", disable_numparse=True)


def dense_table(rows: Sequence[TimingRow]) -> str:
    """The SIFT Flow GPU benchmark layout from per-image rows of a CUDA and a CPU run.

    Columns: descriptor, image size, batch, FP16, GPU memory (MB), GPU ms/image without and with
    transfer, CPU ms/image. Rows of any records may be mixed; missing cells are "-".
    """
    from tabulate import tabulate

    cells: dict[tuple, dict[str, TimingRow]] = {}
    for r in rows:
        if r.unit != "image" or r.error:
            continue
        key = (r.descriptor, r.input_size, r.batch, r.fp16)
        cells.setdefault(key, {})["cuda" if r.device.startswith("cuda") else "cpu"] = r
    lines = []
    for (name, size, batch, fp16), by_device in sorted(cells.items()):
        gpu, cpu = by_device.get("cuda"), by_device.get("cpu")
        lines.append(
            [
                name,
                size,
                batch,
                "yes" if fp16 else "no",
                _fmt(gpu.peak_memory_mb) if gpu else "-",
                _fmt(gpu.median_ms) if gpu else "-",
                _fmt(gpu.median_ms_with_transfer) if gpu else "-",
                _fmt(cpu.median_ms) if cpu else "-",
            ]
        )
    header = ["descriptor", "image", "batch", "FP16", "GPU memory MB", "GPU ms", "GPU ms with transfer", "CPU ms"]
    return tabulate(lines, headers=header, tablefmt="github", disable_numparse=True)


def normalised_time(row: TimingRow, calibration: Calibration) -> float | None:
    """Per-unit time in units of the calibration workload (compare across machines and runs)."""
    if row.median_ms is None or calibration.median_ms <= 0:
        return None
    return row.median_ms / calibration.median_ms
