"""Timing measurements: statistics, pinned threads and TF32, peak memory, and the measurement loop
(warm-up, repeats, device synchronisation; CUDA events on GPU)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import InputError


# ---- statistics -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Stats:
    """Summary of repeated timings (same unit as the samples)."""

    median: float
    q25: float
    q75: float
    count: int

    @property
    def iqr(self) -> float:
        return self.q75 - self.q25


def summarize(samples: Sequence[float]) -> Stats:
    """Median and quartiles (linear interpolation, as numpy's default percentile)."""
    values = np.asarray(list(samples), dtype=np.float64)
    if values.size == 0:
        raise InputError("no timing samples to summarise")
    if not np.isfinite(values).all():
        raise InputError("timing samples contain NaN or infinite values")
    q25, q50, q75 = np.percentile(values, [25.0, 50.0, 75.0])
    return Stats(float(q50), float(q25), float(q75), int(values.size))


def median(samples: Sequence[float]) -> float:
    return summarize(samples).median


def iqr(samples: Sequence[float]) -> float:
    return summarize(samples).iqr


# ---- process environment: threads, TF32 -----------------------------------------------------
@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[int]:
    """Pin torch's and OpenCV's thread counts (0 keeps them); restore them afterwards."""
    import cv2

    old_torch, old_cv = torch.get_num_threads(), cv2.getNumThreads()
    try:
        if threads > 0:
            torch.set_num_threads(threads)
            cv2.setNumThreads(threads)
        yield torch.get_num_threads()
    finally:
        if threads > 0:
            torch.set_num_threads(old_torch)
            cv2.setNumThreads(old_cv)


@contextlib.contextmanager
def tf32_mode(enabled: bool) -> Iterator[None]:
    """Set TF32 for CUDA matmul and cuDNN (the legacy flags), restoring them afterwards.

    If the caller already used torch's new ``fp32_precision`` API in a mixed way that the legacy
    flags cannot read, the settings are left untouched.
    """
    backends = torch.backends
    try:
        old = (backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32)
    except RuntimeError:
        yield
        return
    try:
        backends.cuda.matmul.allow_tf32 = enabled
        backends.cudnn.allow_tf32 = enabled
        yield
    finally:
        backends.cuda.matmul.allow_tf32, backends.cudnn.allow_tf32 = old


# ---- memory ---------------------------------------------------------------------------------
def _proc_status_kb(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class PeakMemory:
    """Peak memory growth over a block of calls, in MB (10^6 bytes).

    CPU: growth of the process peak RSS above the RSS at :meth:`start`. The peak (VmHWM) is reset
    through ``/proc/self/clear_refs`` (Linux >= 4.0); where that is refused the growth of VmHWM
    above its value at ``start`` is used, which is a lower bound (0 when an earlier, larger
    allocation set the peak). Without ``/proc`` (not Linux) the result is None.
    CUDA: ``torch.cuda.max_memory_allocated`` since :meth:`start` (every live tensor on the device,
    model weights and inputs included).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self._base_kb: int | None = None

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        reset = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            reset = True
        except OSError:
            pass
        self._base_kb = _proc_status_kb("VmRSS") if reset else _proc_status_kb("VmHWM")

    def peak_mb(self) -> float | None:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 1e6
        peak = _proc_status_kb("VmHWM")
        if peak is None or self._base_kb is None:
            return None
        return max(peak - self._base_kb, 0) * 1024 / 1e6


# ---- the measurement loop -------------------------------------------------------------------
@dataclass(frozen=True)
class Measurement:
    """Raw timings of one call repeated: whole-call milliseconds."""

    first_ms: float
    samples_ms: tuple[float, ...]  # without host transfers
    transfer_samples_ms: tuple[float, ...] | None  # CUDA: upload + call + download
    peak_memory_mb: float | None
    threads: int


def measure(
    call: Callable[[torch.Tensor], torch.Tensor],
    host_input: torch.Tensor,
    device: torch.device | str,
    repeats: int,
    warmup: int,
) -> Measurement:
    """Time ``call(input_on_device)``: the first call apart, ``warmup - 1`` untimed, ``repeats`` timed."""
    device = torch.device(device)
    memory = PeakMemory(device)
    if device.type == "cuda":
        return _measure_cuda(call, host_input, device, repeats, warmup, memory)
    x = host_input.to(device)
    memory.start()
    start = time.perf_counter_ns()
    call(x)
    first = (time.perf_counter_ns() - start) / 1e6
    for _ in range(max(warmup, 1) - 1):
        call(x)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        call(x)
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return Measurement(first, tuple(samples), None, memory.peak_mb(), torch.get_num_threads())


def _measure_cuda(call, host_input, device, repeats, warmup, memory) -> Measurement:
    with torch.cuda.device(device):  # events are recorded on the stream of the device being timed
        return _measure_cuda_on_device(call, host_input, device, repeats, warmup, memory)


def _measure_cuda_on_device(call, host_input, device, repeats, warmup, memory) -> Measurement:
    torch.cuda.synchronize(device)
    memory.start()
    start = time.perf_counter_ns()
    call(host_input.to(device)).to("cpu")
    torch.cuda.synchronize(device)
    first = (time.perf_counter_ns() - start) / 1e6
    x = host_input.to(device)
    for _ in range(max(warmup, 1) - 1):
        call(x)
    torch.cuda.synchronize(device)
    compute, total = [], []
    for _ in range(repeats):
        events = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        events[0].record()
        x = host_input.to(device)
        events[1].record()
        out = call(x)
        events[2].record()
        out.to("cpu")
        events[3].record()
        events[3].synchronize()
        compute.append(events[1].elapsed_time(events[2]))
        total.append(events[0].elapsed_time(events[3]))
    return Measurement(first, tuple(compute), tuple(total), memory.peak_mb(), torch.get_num_threads())
