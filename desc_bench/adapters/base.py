"""The descriptor contract.

A descriptor *declares* what it needs (class attributes) and implements at least one hook; the
fixed public methods of :class:`Descriptor` do the rest (validation, resizing, normalisation,
batching, device placement, output checks) once, in :mod:`desc_bench.adapters.prepare`.

Shapes:
    compute_patches(patches)           patches (B, 1, P, P) float or uint8 0..255  ->  (B, dim)
    compute_dense(image, keypoints)    image (H, W) or (H, W, 3) uint8,
                                       keypoints (N, 2) float xy pixels     ->  (N, dim)
    compute_dense_map(image)           the same image -> DenseMap: values (dim, H', W') and its
                                       pixel grid (descriptors with a dense_map hook only)
Hooks (a subclass implements at least one):
    describe_patches(prepared)         (B, C, S, S) prepared as `input` says -> (B, dim)
    dense_map(images)                  (B, C, H, W) prepared as `input` says -> (B, dim, H', W');
                                       map cell (i, j) is at pixel (offset + stride*j, offset + stride*i)
    describe_keypoints(image, frames)  uint8 image and :class:`Frames`        -> (N, dim)
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from ..errors import DescriptorOutputError, InputError, UnknownNameError


class Distance(str, enum.Enum):
    """How two descriptors are compared."""

    L2 = "l2"
    L1 = "l1"
    HAMMING = "hamming"


class Normalization(str, enum.Enum):
    """Per-input normalisation applied after scaling to the declared value range."""

    NONE = "none"
    PER_PATCH = "per-patch"  # (x - mean) / (std + eps) over each patch (HardNet, L2-Net)
    IMAGENET = "imagenet"  # per channel ImageNet mean/std on 0..1 RGB


class Resize(str, enum.Enum):
    """How patches are resized to the native size."""

    BILINEAR = "bilinear"  # as cv2.resize(INTER_LINEAR): half-pixel centres, no antialiasing
    AREA = "area"  # as cv2.resize(INTER_AREA) for integer factors


@dataclass(frozen=True)
class InputSpec:
    """What a descriptor's hooks expect. Written once per descriptor; applied by ``prepare.py``."""

    channels: int = 1  # 1 (gray) or 3 (RGB, gray patches are replicated)
    patch_size: int | None = None  # native patch size; None = any size is used as given
    value_range: float = 255.0  # inputs are scaled from 0..255 to 0..value_range
    normalization: Normalization = Normalization.NONE
    resize: Resize = Resize.BILINEAR
    eps: float = 1e-7  # for PER_PATCH normalisation: (x - mean) / (std + eps), unbiased std
    # The hooks take 0..255 patches as uint8 (OpenCV adapters): uint8 input reaches describe_patches
    # as it is, without a float copy (other input as float32); only with the identity preparation.
    # The hook then reads the caller's memory and must not write into it.
    uint8: bool = False

    def __post_init__(self):
        identity = self.channels == 1 and self.patch_size is None and self.value_range == 255.0
        if self.uint8 and not (identity and self.normalization is Normalization.NONE):
            raise ValueError("InputSpec(uint8=True) needs 1 channel, any size, 0..255 and no normalisation")


@dataclass(frozen=True)
class WeightFile:
    """One upstream weight file: where it lives, how to verify it and how it is stored."""

    urls: tuple[str, ...]
    git_blob: str | None = None  # upstream git blob id (SHA-1 of "blob <size>\\0" + content)
    sha256: str | None = None
    format: str = "state_dict"  # e.g. "state_dict", "checkpoint:state_dict", "gift", "msnet"
    licence: str = ""
    notice: str | None = None  # printed whenever these weights are used (e.g. non-commercial)
    trained_on: str = ""  # e.g. "liberty+aug"; records flag weights that saw the test data
    saw_hpatches: bool = False


@dataclass(frozen=True)
class Frames:
    """Keypoint frames in pixels (pixel centres at integers)."""

    xy: np.ndarray  # (N, 2) float x, y
    scale: np.ndarray | None = None  # (N,) OpenCV keypoint size (diameter) convention
    angle: np.ndarray | None = None  # (N,) degrees, OpenCV convention

    def __post_init__(self):
        xy = np.asarray(self.xy, dtype=np.float64)
        if xy.size == 0:
            xy = xy.reshape(0, 2)  # an empty list or array: no keypoints
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise InputError(f"keypoints must be an (N, 2) array of x, y pixels; got shape {xy.shape}")
        if not np.isfinite(xy).all():
            raise InputError("keypoints contain NaN or infinite coordinates")
        object.__setattr__(self, "xy", xy)
        for name in ("scale", "angle"):
            value = getattr(self, name)
            if value is not None:
                value = np.asarray(value, dtype=np.float64).reshape(-1)
                if len(value) != len(xy):
                    raise InputError(f"{name} has {len(value)} entries for {len(xy)} keypoints")
                object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.xy)


@dataclass(frozen=True, eq=False)
class DenseMap:
    """The dense descriptor map of one image, from :meth:`Descriptor.compute_dense_map`.

    ``values[:, i, j]`` describes the image at pixel ``x = offset + stride*j``, ``y = offset +
    stride*i`` (pixel centres at integers): it is what ``compute_dense`` gives at that point.
    ``values`` is a fresh tensor that no later call overwrites.
    """

    values: torch.Tensor  # (dim, H', W') float32 on the descriptor's device
    stride: float  # pixels between neighbouring cells, along x and y
    offset: float  # x (and y) pixel of cell (0, 0)

    def __post_init__(self):
        if not isinstance(self.values, torch.Tensor) or self.values.ndim != 3:
            raise InputError(
                f"DenseMap values must be a (dim, H', W') tensor, got {getattr(self.values, 'shape', None)}"
            )
        if not self.stride > 0:
            raise InputError(f"DenseMap stride must be positive, got {self.stride}")

    @property
    def shape(self) -> tuple[int, int]:
        """``(H', W')``: cells along y and x."""
        return int(self.values.shape[1]), int(self.values.shape[2])

    def xy(self) -> np.ndarray:
        """``(H', W', 2)`` float64: the x, y pixel of every cell (``xy().reshape(-1, 2)``: row by row,
        the order of ``values.reshape(dim, -1).T``)."""
        rows, cols = self.shape
        x = self.offset + self.stride * np.arange(cols, dtype=np.float64)
        y = self.offset + self.stride * np.arange(rows, dtype=np.float64)
        return np.stack(np.meshgrid(x, y, indexing="xy"), axis=-1)


@dataclass(frozen=True)
class NoOptions:
    """Options of a descriptor that takes none."""


class Kind(enum.Flag):
    """Which hooks a descriptor implements (derived, never declared)."""

    NONE = 0
    PATCH = enum.auto()
    DENSE = enum.auto()
    KEYPOINTS = enum.auto()


HOOKS = {"describe_patches": Kind.PATCH, "dense_map": Kind.DENSE, "describe_keypoints": Kind.KEYPOINTS}


class Descriptor:
    """Base class of every adapter. Subclasses set the class attributes and implement one hook.

    A subclass that defines ``name`` in its own body is registered under that name.
    """

    name: ClassVar[str] = ""
    dim: ClassVar[int] = 0
    distance: ClassVar[Distance] = Distance.L2
    input: ClassVar[InputSpec] = InputSpec()
    Options: ClassVar[type] = NoOptions  # a frozen dataclass of the descriptor's options
    weights: ClassVar[dict[str, WeightFile]] = {}
    default_weights: ClassVar[str | None] = None
    batch_size: ClassVar[int] = 1024  # patches per forward pass in compute_patches
    dense_stride: ClassVar[float] = 1.0
    dense_offset: ClassVar[float] = 0.0
    normalize_samples: ClassVar[bool] = False  # L2-normalise descriptors sampled from dense_map (SuperPoint, MSNet)
    summary: ClassVar[str] = ""  # one line for `desc-bench list`
    supports_fp16: ClassVar[bool] = False  # may run under float16 autocast (`desc-bench time --fp16`);
    # hand-written descriptors honour it through compute_dtype
    code_modules: ClassVar[tuple[Any, ...]] = ()  # modules beyond the class's own whose code makes its numbers

    _registry: ClassVar[dict[str, type[Descriptor]]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__ and cls.name:
            if cls.kind() == Kind.NONE:
                raise TypeError(f"descriptor {cls.name!r} implements none of {', '.join(HOOKS)}")
            Descriptor._registry[cls.name] = cls

    # ---- construction -------------------------------------------------------------------------
    def __init__(self, device: str | torch.device = "cpu", weights: str | None = None, **options: Any):
        try:
            self.device = torch.device(device)
        except RuntimeError:
            raise InputError(f"{self.name}: {device!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise InputError(
                f"{self.name}: device {device!r} was asked for, but this torch sees no CUDA GPU; use --device cpu"
            )
        if weights is not None and not type(self).weights:
            raise InputError(
                f"{self.name} takes no weights (it has no weight files), but weights={weights!r} "
                "was given; leave weights out for this descriptor"
            )
        self.options = self.parse_options(options)
        self.weights_name = weights if weights is not None else self.default_weights
        self.setup()

    def setup(self) -> None:
        """Build models or buffers; called once by ``__init__`` after options are parsed."""

    @classmethod
    def kind(cls) -> Kind:
        kind = Kind.NONE
        for hook, flag in HOOKS.items():
            if getattr(cls, hook) is not getattr(Descriptor, hook):
                kind |= flag
        return kind

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls.Options)]

    @classmethod
    def parse_options(cls, options: dict[str, Any]) -> Any:
        """Build the Options dataclass; strings (from the CLI) are converted to the field's type."""
        fields = {f.name: f for f in dataclasses.fields(cls.Options)}
        values = {}
        for key, value in options.items():
            if key not in fields:
                raise UnknownNameError(f"option of {cls.name}", key, list(fields))
            values[key] = convert_option(cls.name, key, value, fields[key].default)
        return cls.Options(**values)

    @classmethod
    def availability(cls) -> str | None:
        """None when the descriptor can run here, else what is missing and how to fix it."""
        return None

    def backend_versions(self) -> tuple[str, ...]:
        """Versions of native libraries this descriptor calls beyond torch, OpenCV and numpy (e.g.
        libvl); part of the feature-cache key, so that another build recomputes the features."""
        return ()

    def describe(self) -> str:
        """The descriptor with its options, as the CLI spells it (``name:key=value``)."""
        parts = [self.name]
        for f in dataclasses.fields(self.options):
            value = getattr(self.options, f.name)
            if value != f.default:
                parts.append(f"{f.name}={value}")
        return ":".join(parts)

    @property
    def weights_label(self) -> str:
        return self.weights_name or "none"

    # ---- hooks -----------------------------------------------------------------------------
    def describe_patches(self, prepared: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def dense_map(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def describe_keypoints(self, image: np.ndarray, frames: Frames) -> torch.Tensor:
        raise NotImplementedError

    # ---- fixed public methods ---------------------------------------------------------------
    def compute_patches(self, patches: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Describe patches ``(B, 1, P, P)`` with values 0..255; returns ``(B, dim)``."""
        from . import prepare

        return prepare.compute_patches(self, patches)

    def compute_dense(
        self,
        image: np.ndarray,
        keypoints: np.ndarray | Frames,
        scale: np.ndarray | None = None,
        angle: np.ndarray | None = None,
    ) -> torch.Tensor:
        """Describe an image at keypoints ``(N, 2)`` xy pixels; returns ``(N, dim)``."""
        from . import prepare

        frames = keypoints if isinstance(keypoints, Frames) else Frames(keypoints, scale, angle)
        return prepare.compute_dense(self, image, frames)

    def compute_dense_map(self, image: np.ndarray) -> DenseMap:
        """The whole dense map of an image ``(H, W)`` or ``(H, W, 3)`` RGB uint8 0..255 (the input of
        ``compute_dense``); only for descriptors with a ``dense_map`` hook. See :class:`DenseMap`."""
        from . import prepare

        return prepare.compute_dense_map(self, image)

    def check_output(self, out: torch.Tensor, count: int) -> torch.Tensor:
        """Raise a clear error unless ``out`` is ``(count, dim)``, finite, and of the right dtype.

        Returns ``out`` on the descriptor's device (hooks that compute on the CPU may return CPU tensors).
        """
        if not isinstance(out, torch.Tensor):
            raise DescriptorOutputError(f"descriptor {self.name!r} returned {type(out).__name__}, expected a tensor")
        if tuple(out.shape) != (count, self.dim):
            raise DescriptorOutputError(
                f"descriptor {self.name!r} returned shape {tuple(out.shape)}, expected ({count}, {self.dim})"
            )
        if self.distance is Distance.HAMMING:
            if out.dtype != torch.uint8:
                raise DescriptorOutputError(f"binary descriptor {self.name!r} returned {out.dtype}, expected uint8")
            return out.to(self.device)
        out = out.float()
        if not torch.isfinite(out).all():
            bad = int((~torch.isfinite(out)).any(dim=1).sum())
            raise DescriptorOutputError(
                f"descriptor {self.name!r} returned NaN or infinite values for {bad} of {count} inputs"
            )
        return out.to(self.device)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()} on {self.device}>"


_REUSE = contextvars.ContextVar("desc_bench_reuse_results", default=False)


@contextlib.contextmanager
def reusing_results() -> Iterator[None]:
    """A scope in which a descriptor may return what it computed before for the same input bytes
    (OpenCV SIFT and RootSIFT share their raw SIFT of a patch batch). The runner extracts features
    in it; timing never runs in it, so repeated timing calls always compute."""
    token = _REUSE.set(True)
    try:
        yield
    finally:
        _REUSE.reset(token)


def reuse_allowed() -> bool:
    """Whether the caller is inside :func:`reusing_results`."""
    return _REUSE.get()


def compute_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype:
    """The float dtype a hand-written (non-``nn``) descriptor computes in: ``dtype`` (its own option),
    or the autocast dtype when autocast is active for ``device`` (how ``desc-bench time --fp16`` asks
    for half precision; autocast alone does not change element-wise code)."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return dtype


def convert_option(descriptor: str, key: str, value: Any, default: Any) -> Any:
    """Convert a CLI string to the type of the option's default."""
    if not isinstance(value, str) or isinstance(default, str) or default is None:
        return value
    try:
        if isinstance(default, bool):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        return type(default)(value)
    except ValueError:
        raise InputError(f"option {key}={value!r} of {descriptor} is not a valid {type(default).__name__}") from None
