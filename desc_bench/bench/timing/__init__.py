"""Timing on CPU and GPU with batching (see docs/timing.md): ``measure`` (the measurement loop and
its statistics), ``jobs`` (per-patch and per-image timing, calibration, the ``desc-bench time``
job), ``tables`` (markdown tables and normalised times)."""

from .jobs import (
    CALIBRATION_NAME,
    DEFAULT_BATCH_SIZES,
    RANDOM_WEIGHTS,
    ImageSize,
    TimingConfig,
    calibrate,
    check_device,
    parse_batch_sizes,
    random_images,
    random_patches,
    time_descriptors,
    time_images,
    time_keypoints,
    time_patches,
)
from .measure import Measurement, PeakMemory, Stats, iqr, measure, median, pinned_threads, summarize, tf32_mode
from .tables import dense_table, normalised_time, timing_table

__all__ = [
    "CALIBRATION_NAME",
    "DEFAULT_BATCH_SIZES",
    "RANDOM_WEIGHTS",
    "ImageSize",
    "Measurement",
    "PeakMemory",
    "Stats",
    "TimingConfig",
    "calibrate",
    "check_device",
    "dense_table",
    "iqr",
    "measure",
    "median",
    "normalised_time",
    "parse_batch_sizes",
    "pinned_threads",
    "random_images",
    "random_patches",
    "summarize",
    "tf32_mode",
    "time_descriptors",
    "time_images",
    "time_keypoints",
    "time_patches",
    "timing_table",
]
