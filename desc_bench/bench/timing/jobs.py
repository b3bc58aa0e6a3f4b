"""Timing harness: per-patch and per-image speed of descriptors, with calibration (issue 4).

Shapes:
    patch descriptors   ``compute_patches`` on random (B, 1, P, P) float32 inputs, integer values
                        0..255; time per *patch*.
    dense descriptors   with an image size, ``dense_map`` on random images prepared as the
                        descriptor's ``input`` declares, (B, C, H, W); time per *image*.

Method (docs/timing.md says it in full): the first call (allocation, compilation, caches) is timed
and reported apart; ``warmup - 1`` more untimed calls follow; then ``repeats`` timed calls give the
median and IQR. On CPU the clock is ``time.perf_counter_ns`` around the call; on CUDA, events
recorded on the stream before and after the upload, the call and the download give the time
without and with the host transfers. Threads are pinned (torch and OpenCV) and TF32 is off unless
asked; both are restored afterwards. Peak memory is the growth of the process RSS over the calls
on CPU (``/proc/self/status`` VmHWM, reset through ``/proc/self/clear_refs``) and
``torch.cuda.max_memory_allocated`` on CUDA.

Every record also carries a :class:`Calibration`: a fixed torch conv + matmul workload timed in the
same process, so speeds from different machines or noisy runs compare as ratios.

Reference figures (METRICS.md section 4): pytorch-sift, 65 px, batch 256: 0.74 ms/patch CPU;
SIFT Flow (Liu et al., TPAMI 2011), 1024x436, batch 1: 19 ms GPU without transfer, 128 ms with.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...adapters.base import Descriptor, Frames, Kind
from ...adapters.prepare import image_tensor, normalise
from ...errors import DescBenchError, InputError
from ...records.schema import Calibration, Record, TimingRow, config_json, machine_metadata
from .measure import Measurement, measure, pinned_threads, summarize, tf32_mode

RANDOM_WEIGHTS = "random"  # weights name passed to descriptors built with --random-weights
CALIBRATION_NAME = "conv3x3(4x32x64x64->64)+matmul768 x3, v1"
DEFAULT_BATCH_SIZES = (1, 16, 256, 1024)


# ---- configuration --------------------------------------------------------------------------
@dataclass(frozen=True)
class ImageSize:
    """Width and height of the random images that dense descriptors are timed on."""

    width: int
    height: int

    @classmethod
    def parse(cls, text: str | ImageSize | Sequence[int]) -> ImageSize:
        """``"1024x436"`` (width x height), an ImageSize or a (width, height) pair."""
        if isinstance(text, ImageSize):
            return text
        if isinstance(text, str):
            parts = text.lower().replace("*", "x").split("x")
        else:
            parts = list(text)
        try:
            width, height = (int(p) for p in parts)
        except (TypeError, ValueError):
            raise InputError(f"image size must be WIDTHxHEIGHT such as 1024x436, got {text!r}") from None
        if width < 8 or height < 8:
            raise InputError(f"image size {width}x{height} is too small (at least 8x8)")
        return cls(width, height)

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


def parse_batch_sizes(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"1,16,256"`` or a sequence of ints -> a tuple of positive batch sizes."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        sizes = tuple(int(str(s).strip()) for s in items if str(s).strip())
    except ValueError:
        raise InputError(f"batch sizes must be comma-separated positive integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise InputError(f"batch sizes must be positive integers, got {text!r}")
    return sizes


@dataclass(frozen=True)
class TimingConfig:
    """What ``desc-bench time`` measures. Lists are turned into tuples, strings are parsed."""

    descriptors: tuple[str, ...]
    device: str = "cpu"
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES
    patch_size: int = 65
    image_size: ImageSize | None = None  # dense descriptors are timed per image when set
    threads: int = 0  # 0 = keep the current torch/OpenCV thread counts
    fp16: bool = False
    repeats: int = 10
    warmup: int = 2  # untimed calls, the first (reported apart) included; at least 1 is made
    random_weights: bool = False
    seed: int = 0
    tf32: bool = False
    calibrate: bool = True

    def __post_init__(self):
        names = (self.descriptors,) if isinstance(self.descriptors, str) else tuple(self.descriptors)
        names = tuple(n.strip() for name in names for n in name.split(",") if n.strip())
        if not names:
            raise InputError("no descriptors to time; name at least one, e.g. --descriptors sift-opencv")
        object.__setattr__(self, "descriptors", names)
        object.__setattr__(self, "batch_sizes", parse_batch_sizes(self.batch_sizes))
        if self.image_size is not None:
            object.__setattr__(self, "image_size", ImageSize.parse(self.image_size))
        if self.patch_size < 8:
            raise InputError(f"patch size {self.patch_size} is too small (at least 8 px)")
        if self.repeats < 1:
            raise InputError(f"repeats must be at least 1, got {self.repeats}")
        if self.warmup < 0 or self.threads < 0:
            raise InputError("warmup and threads must not be negative")
        check_device(self.device)


def check_device(device: str) -> torch.device:
    """The torch device, or an InputError saying why it cannot be used here."""
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}; use cpu or cuda (cuda:N)") from None
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"device {device!r} is not supported for timing; use cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device {device!r} asked for, but this torch ({torch.__version__}) sees no CUDA device")
    return dev


# ---- inputs and calls -----------------------------------------------------------------------
def random_patches(batch: int, patch_size: int = 65, seed: int = 0) -> torch.Tensor:
    """Fixed random patches ``(batch, 1, P, P)`` float32 with integer values 0..255."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, 256, (batch, 1, patch_size, patch_size), dtype=np.uint8)).float()


def random_images(descriptor: Descriptor, batch: int, size: ImageSize, seed: int = 0) -> torch.Tensor:
    """Fixed random uint8 images prepared as the descriptor declares: ``(batch, C, H, W)`` on the host."""
    rng = np.random.default_rng(seed)
    shape = (size.height, size.width) if descriptor.input.channels == 1 else (size.height, size.width, 3)
    images = [image_tensor(rng.integers(0, 256, shape, dtype=np.uint8), descriptor.input) for _ in range(batch)]
    return normalise(torch.cat(images), descriptor.input)


def _autocast(device: torch.device, fp16: bool):
    if not fp16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.float16)


def _fp16_problem(descriptor: Descriptor, fp16: bool) -> str | None:
    if fp16 and not getattr(descriptor, "supports_fp16", False):
        return f"{descriptor.name} does not support fp16 (it does not declare supports_fp16 = True)"
    return None


def _row(
    descriptor: Descriptor | str,
    weights: str,
    device: torch.device,
    batch: int,
    input_size: str,
    unit: str,
    fp16: bool,
    repeats: int,
    random_weights: bool,
    m: Measurement | None = None,
    error: str | None = None,
    threads: int | None = None,
) -> TimingRow:
    name = descriptor if isinstance(descriptor, str) else descriptor.describe()
    common = dict(
        descriptor=name,
        weights=weights,
        device=str(device),
        batch=batch,
        input_size=input_size,
        unit=unit,
        fp16=fp16,
        repeats=repeats,
        random_weights=random_weights,
    )
    if m is None:
        return TimingRow(
            median_ms=None,
            iqr_ms=None,
            per_second=None,
            peak_memory_mb=None,
            threads=threads if threads is not None else torch.get_num_threads(),
            error=error or "not measured",
            **common,
        )
    stats = summarize(m.samples_ms)
    with_transfer = summarize(m.transfer_samples_ms).median / batch if m.transfer_samples_ms else None
    return TimingRow(
        median_ms=stats.median / batch,
        iqr_ms=stats.iqr / batch,
        per_second=batch * 1000.0 / stats.median if stats.median > 0 else None,
        peak_memory_mb=m.peak_memory_mb,
        first_call_ms=m.first_ms,
        median_ms_with_transfer=with_transfer,
        threads=m.threads,
        **common,
    )


def _is_random(descriptor: Descriptor) -> bool:
    return descriptor.weights_name == RANDOM_WEIGHTS


def time_patches(
    descriptor: Descriptor,
    batch_size: int,
    patch_size: int = 65,
    repeats: int = 10,
    warmup: int = 2,
    fp16: bool = False,
    seed: int = 0,
    threads: int = 0,
    tf32: bool = False,
) -> TimingRow:
    """Time ``compute_patches`` on a batch of random patches; one :class:`TimingRow` per patch.

    The runner calls this to add a speed column to accuracy tables. Errors in the descriptor
    propagate (``time_descriptors`` turns them into error rows).
    """
    device = descriptor.device
    problem = _fp16_problem(descriptor, fp16)
    if problem:
        raise InputError(problem)
    patches = random_patches(batch_size, patch_size, seed)

    def call(x: torch.Tensor) -> torch.Tensor:
        with _autocast(device, fp16):
            return descriptor.compute_patches(x)

    with pinned_threads(threads), tf32_mode(tf32):
        m = measure(call, patches, device, repeats, warmup)
    return _row(
        descriptor,
        descriptor.weights_label,
        device,
        batch_size,
        str(patch_size),
        "patch",
        fp16,
        repeats,
        _is_random(descriptor),
        m,
    )


def time_images(
    descriptor: Descriptor,
    batch_size: int,
    image_size: ImageSize | str,
    repeats: int = 10,
    warmup: int = 2,
    fp16: bool = False,
    seed: int = 0,
    threads: int = 0,
    tf32: bool = False,
) -> TimingRow:
    """Time ``dense_map`` on a batch of random prepared images; one :class:`TimingRow` per image."""
    size = ImageSize.parse(image_size)
    if Kind.DENSE not in descriptor.kind():
        raise InputError(f"{descriptor.name} has no dense_map hook; time it per patch (without --image-size)")
    problem = _fp16_problem(descriptor, fp16)
    if problem:
        raise InputError(problem)
    device = descriptor.device
    images = random_images(descriptor, batch_size, size, seed)

    def call(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), _autocast(device, fp16):
            return descriptor.dense_map(x)

    with pinned_threads(threads), tf32_mode(tf32):
        m = measure(call, images, device, repeats, warmup)
    return _row(
        descriptor,
        descriptor.weights_label,
        device,
        batch_size,
        str(size),
        "image",
        fp16,
        repeats,
        _is_random(descriptor),
        m,
    )


# ---- calibration ----------------------------------------------------------------------------
def time_keypoints(
    descriptor: Descriptor, image: np.ndarray, frames: Frames, input_size: str, repeats: int = 5, warmup: int = 1
) -> TimingRow:
    """Time ``compute_dense`` on one image at given frames (what an image benchmark spends describing
    an image; detection is not timed); one :class:`TimingRow` per image, batch 1."""

    def call(_: torch.Tensor) -> torch.Tensor:
        return descriptor.compute_dense(image, frames)

    m = measure(call, torch.zeros(1), descriptor.device, repeats, warmup)
    return _row(descriptor, descriptor.weights_label, descriptor.device, 1, input_size, "image", False, repeats,
                _is_random(descriptor), m)  # fmt: skip


def calibrate(device: str | torch.device = "cpu", repeats: int = 9) -> Calibration:
    """Time the fixed reference workload (3 x [3x3 conv 4x32x64x64 -> 64 channels + 768^2 matmul]).

    About 0.1-0.5 s on a current CPU. Uses the current thread count; the name records the device
    and the thread count so that only like calibrations are compared.
    """
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(1234)
    image = torch.rand(4, 32, 64, 64, generator=gen).to(dev)
    kernel = torch.rand(64, 32, 3, 3, generator=gen).to(dev)
    left = torch.rand(768, 768, generator=gen).to(dev)
    right = torch.rand(768, 768, generator=gen).to(dev)

    def workload(_: torch.Tensor) -> torch.Tensor:
        out = image.new_zeros(())
        with torch.inference_mode():
            for _ in range(3):
                out = out + F.conv2d(image, kernel, padding=1).sum() + (left @ right).sum()
        return out

    m = measure(workload, image.new_zeros(1).cpu(), dev, repeats, warmup=1)
    threads = f", threads={m.threads}" if dev.type == "cpu" else ""
    stats = summarize(m.samples_ms)
    return Calibration(name=f"{CALIBRATION_NAME} on {dev.type}{threads}", median_ms=stats.median, iqr_ms=stats.iqr)


# ---- the `desc-bench time` command ----------------------------------------------------------
def _build(name: str, config: TimingConfig) -> Descriptor:
    from ...adapters.registry import descriptor, descriptor_class, parse_spec

    cls = descriptor_class(parse_spec(name)[0])
    weights = RANDOM_WEIGHTS if config.random_weights and cls.weights else None
    return descriptor(name, device=config.device, weights=weights)


def _error_text(exc: BaseException) -> str:
    """Our own errors already say what to do; others get their type name in front."""
    text = str(exc).strip()
    return text if isinstance(exc, DescBenchError) and text else f"{type(exc).__name__}: {text}"


def time_descriptors(config: TimingConfig, progress: bool = True) -> Record:
    """Time every descriptor at every batch size; failures become rows with an error string."""
    from tqdm import tqdm

    device = check_device(config.device)
    unit_size = str(config.image_size) if config.image_size else str(config.patch_size)
    rows: list[TimingRow] = []
    with pinned_threads(config.threads) as threads, tf32_mode(config.tf32):
        metadata = machine_metadata(str(device), command="time", tf32=config.tf32, timing_config=config_json(config))
        steps = tqdm(
            total=len(config.descriptors) * len(config.batch_sizes),
            disable=not progress,
            file=sys.stderr,
            unit="step",
            desc="timing",
        )
        with steps:
            for name in config.descriptors:
                try:
                    desc = _build(name, config)
                except Exception as exc:  # noqa: BLE001 - a row says what went wrong; the run goes on
                    unit = "image" if config.image_size else "patch"
                    for batch in config.batch_sizes:
                        rows.append(
                            _row(
                                name,
                                RANDOM_WEIGHTS if config.random_weights else "none",
                                device,
                                batch,
                                unit_size,
                                unit,
                                config.fp16,
                                config.repeats,
                                config.random_weights,
                                error=f"cannot build: {_error_text(exc)}",
                                threads=threads,
                            )
                        )
                        steps.update()
                    continue
                dense = config.image_size is not None and Kind.DENSE in desc.kind()
                for batch in config.batch_sizes:
                    steps.set_postfix_str(f"{name} batch {batch}")
                    rows.append(_time_one(desc, batch, config, dense, threads))
                    steps.update()
                del desc
                _free(device)
        calibration = calibrate(device) if config.calibrate else None
    return Record(metadata=metadata, timings=rows, calibration=calibration)


def _time_one(desc: Descriptor, batch: int, config: TimingConfig, dense: bool, threads: int) -> TimingRow:
    try:
        if config.image_size is not None and not dense:
            raise InputError(f"{desc.name} has no dense_map hook; time it per patch (without --image-size)")
        if dense:
            return time_images(desc, batch, config.image_size, config.repeats, config.warmup, config.fp16, config.seed)
        return time_patches(desc, batch, config.patch_size, config.repeats, config.warmup, config.fp16, config.seed)
    except Exception as exc:  # noqa: BLE001 - an out-of-memory batch must not end the run
        _free(desc.device)
        unit = "image" if config.image_size else "patch"
        size = str(config.image_size) if config.image_size else str(config.patch_size)
        return _row(
            desc,
            desc.weights_label,
            desc.device,
            batch,
            size,
            unit,
            config.fp16,
            config.repeats,
            _is_random(desc),
            error=_error_text(exc),
            threads=threads,
        )


def _free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
