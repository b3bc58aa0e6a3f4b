"""Input preparation, written once for every descriptor: the template behind the public methods.

- ``prepare_patches``: (B,1,P,P) 0..255 -> resized, channel-replicated, scaled and normalised as the
  descriptor's :class:`InputSpec` declares.
- ``compute_patches`` / ``compute_dense`` / ``compute_dense_map``: validation, batching under
  ``torch.no_grad`` (not ``inference_mode``: buffers that descriptors cache on their first call
  must stay usable with autograd and in-place updates outside it), and the fallbacks that let
  every descriptor run on every benchmark: a dense-only descriptor describes a patch as a small
  image at its centre; a patch-only descriptor describes an image at keypoints by sampling
  patches around the frames. ``compute_dense_map`` returns a descriptor's whole map (a copy of
  what its ``dense_map`` hook returns) with its pixel grid.
- Scaling to the declared value range divides (``x / 255`` for 0..1, as upstream codes do).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DescriptorOutputError, InputError
from ..imaging import MAGNIFICATION, PATCH_SIZE
from .base import HOOKS, DenseMap, Descriptor, Distance, Frames, InputSpec, Kind, Normalization, Resize

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

EXTRACT_CHUNK = 512  # keypoints per grid_sample call in extract_patches
UINT8_ROWS = 256  # patches per block in uint8_patches


def as_patch_tensor(patches: torch.Tensor | np.ndarray, name: str, keep_uint8: bool = False) -> torch.Tensor:
    """Validate ``(B, 1, P, P)`` (or ``(B, P, P)``) patches and return float32 (uint8 ones as they are
    with ``keep_uint8``)."""
    if isinstance(patches, np.ndarray):
        patches = np.ascontiguousarray(patches)
        patches = torch.from_numpy(patches if patches.flags.writeable else patches.copy())
    if not isinstance(patches, torch.Tensor):
        raise InputError(f"{name}: patches must be a tensor or numpy array, got {type(patches).__name__}")
    if patches.ndim == 3:
        patches = patches.unsqueeze(1)
    if patches.ndim != 4 or patches.shape[1] != 1 or patches.shape[2] != patches.shape[3]:
        raise InputError(f"{name}: expected gray square patches of shape (B, 1, P, P), got {tuple(patches.shape)}")
    if patches.shape[2] < 8:
        raise InputError(f"{name}: patch size {patches.shape[2]} is too small (at least 8 px)")
    return patches if keep_uint8 and patches.dtype == torch.uint8 else patches.float()


def uint8_patches(prepared: torch.Tensor) -> np.ndarray:
    """``(B, 1, P, P)`` 0..255 float or uint8 -> ``(B, P, P)`` uint8 numpy, for descriptors that hand
    patches to OpenCV: uint8 patches (``InputSpec.uint8``) as they are (a view), float ones rounded half
    to even and clamped. On the CPU in blocks of :data:`UINT8_ROWS` patches: each patch's values as one
    pass over the batch would give them, without three batch-sized temporaries (a 4800-patch batch:
    10 ms instead of 70 ms)."""
    if prepared.dtype == torch.uint8:
        return prepared[:, 0].cpu().numpy()
    if prepared.device.type != "cpu":
        return prepared[:, 0].round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    out = torch.empty((prepared.shape[0], *prepared.shape[2:]), dtype=torch.uint8)
    for start in range(0, prepared.shape[0], UINT8_ROWS):
        out[start : start + UINT8_ROWS] = prepared[start : start + UINT8_ROWS, 0].round().clamp_(0, 255)
    return out.numpy()


def describe_each(describe: Callable[[np.ndarray], np.ndarray], patches: np.ndarray, threads: int, chunk: int):
    """``[describe(p) for p in patches]``, for OpenCV calls (they release the GIL): on ``threads``
    threads in tasks of ``chunk`` patches when there are at least two chunks (ThreadPoolExecutor.map
    ignores chunksize for threads, and a future per patch costs as much as describing the patch)."""
    if len(patches) < 2 * chunk or threads <= 1:
        return [describe(p) for p in patches]
    chunks = [patches[i : i + chunk] for i in range(0, len(patches), chunk)]
    with ThreadPoolExecutor(threads) as pool:
        return [row for part in pool.map(lambda c: [describe(p) for p in c], chunks) for row in part]


def resize(batch: torch.Tensor, size: int, method: Resize) -> torch.Tensor:
    if batch.shape[-1] == size:
        return batch
    if method is Resize.AREA:
        return F.interpolate(batch, size=(size, size), mode="area")
    return F.interpolate(batch, size=(size, size), mode="bilinear", align_corners=False, antialias=False)


def normalise(batch: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """Scale 0..255 input to the declared range, set channels, apply the declared normalisation."""
    if spec.channels == 3 and batch.shape[1] == 1:
        batch = batch.expand(-1, 3, -1, -1)
    if spec.value_range != 255.0:
        # Divided, not multiplied by value_range / 255: for 0..1 this is the upstream codes' x / 255
        # exactly (x * (1/255) is one ulp off for some values, which flips SIFT Flow's channel ties).
        batch = batch / (255.0 / spec.value_range)
    if spec.normalization is Normalization.PER_PATCH:
        flat = batch.reshape(batch.shape[0], -1)
        mean = flat.mean(dim=1).view(-1, 1, 1, 1)
        std = flat.std(dim=1).view(-1, 1, 1, 1)
        batch = (batch - mean) / (std + spec.eps)
    elif spec.normalization is Normalization.IMAGENET:
        mean = batch.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1) * (spec.value_range / 1.0)
        std = batch.new_tensor(IMAGENET_STD).view(1, 3, 1, 1) * (spec.value_range / 1.0)
        batch = (batch - mean) / std
    return batch.contiguous()


def prepare_patches(desc: Descriptor, batch: torch.Tensor) -> torch.Tensor:
    spec = desc.input
    batch = batch.to(desc.device, non_blocking=True)
    if spec.patch_size is not None:
        batch = resize(batch, spec.patch_size, spec.resize)
    return normalise(batch, spec)


def compute_patches(desc: Descriptor, patches: torch.Tensor | np.ndarray) -> torch.Tensor:
    patches = as_patch_tensor(patches, desc.name, keep_uint8=desc.input.uint8 and Kind.PATCH in desc.kind())
    count = patches.shape[0]
    if count == 0:
        return empty_output(desc)
    kind = desc.kind()
    outputs = []
    with torch.no_grad():
        for start in range(0, count, desc.batch_size):
            chunk = patches[start : start + desc.batch_size]
            if Kind.PATCH in kind:
                out = desc.describe_patches(prepare_patches(desc, chunk))
            elif Kind.DENSE in kind:
                out = _dense_at_centre(desc, chunk)
            else:
                out = _keypoints_at_centre(desc, chunk)
            outputs.append(out)
    return desc.check_output(torch.cat(outputs), count)


def _dense_at_centre(desc: Descriptor, chunk: torch.Tensor) -> torch.Tensor:
    """Describe each patch as a small image, sampled at its centre."""
    batch = normalise(chunk.to(desc.device), desc.input)
    maps = desc.dense_map(batch)
    size = chunk.shape[-1]
    centre = (size - 1) / 2.0
    xy = torch.full((chunk.shape[0], 1, 2), centre, device=maps.device, dtype=maps.dtype)
    out = sample_map(maps, xy, desc.dense_stride, desc.dense_offset)[:, 0]
    return F.normalize(out, dim=-1) if desc.normalize_samples else out


def _keypoints_at_centre(desc: Descriptor, chunk: torch.Tensor) -> torch.Tensor:
    """Describe each patch with a keypoint-based descriptor at the patch centre."""
    size = chunk.shape[-1]
    frames = Frames(np.array([[(size - 1) / 2.0, (size - 1) / 2.0]]))
    images = uint8_patches(chunk)
    return torch.cat([desc.describe_keypoints(image, frames) for image in images])


def sample_map(maps: torch.Tensor, xy: torch.Tensor, stride: float, offset: float) -> torch.Tensor:
    """Bilinearly sample dense maps ``(B, D, H', W')`` at pixel positions ``xy`` ``(B, N, 2)``.

    Returns ``(B, N, D)``. Map cell (i, j) sits at pixel ``(offset + stride*j, offset + stride*i)``.
    """
    height, width = maps.shape[-2:]
    grid = (xy - offset) / stride  # map coordinates
    gx = 2.0 * grid[..., 0] / max(width - 1, 1) - 1.0
    gy = 2.0 * grid[..., 1] / max(height - 1, 1) - 1.0
    norm = torch.stack([gx, gy], dim=-1).unsqueeze(1).to(maps.dtype)  # (B, 1, N, 2)
    out = F.grid_sample(maps, norm, mode="bilinear", padding_mode="border", align_corners=True)
    return out[:, :, 0].transpose(1, 2)


def image_tensor(image: np.ndarray, spec: InputSpec) -> torch.Tensor:
    """uint8 (H, W) or (H, W, 3) RGB -> (1, C, H, W) float 0..255 with the declared channels."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise InputError(f"expected an image of shape (H, W) or (H, W, 3), got {image.shape}")
    if spec.channels == 1 and image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    tensor = torch.from_numpy(np.array(image, dtype=np.float32))  # a copy: read-only arrays (PIL) are fine
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(-1)
    if spec.channels == 3 and tensor.shape[-1] == 1:
        tensor = tensor.expand(-1, -1, 3)
    return tensor.permute(2, 0, 1).unsqueeze(0).contiguous()


def extract_patches(image: np.ndarray, frames: Frames, size: int = PATCH_SIZE) -> torch.Tensor:
    """Sample gray ``size`` x ``size`` patches around keypoint frames; returns ``(N, 1, size, size)``.

    With a scale (OpenCV keypoint size, a diameter), the patch side spans ``MAGNIFICATION * scale``
    image pixels; without one it is a plain ``size`` px crop. With an angle (degrees), the patch
    axes are rotated by it, so the frame's orientation points along the patch's +x axis.
    """
    gray = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    tensor = torch.from_numpy(np.array(gray, dtype=np.float32))[None, None]
    height, width = gray.shape
    count = len(frames)
    if count == 0:
        return torch.empty(0, 1, size, size)
    span = np.full(count, float(size))
    if frames.scale is not None:
        span = frames.scale * MAGNIFICATION
    angle = np.deg2rad(frames.angle) if frames.angle is not None else np.zeros(count)
    cos, sin = np.cos(angle), np.sin(angle)
    # Pixel offsets of the patch samples relative to the centre, in units of the patch span.
    steps = (torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0) / size
    v, u = torch.meshgrid(steps.float(), steps.float(), indexing="ij")
    per_frame = np.stack([frames.xy[:, 0], frames.xy[:, 1], span, cos, sin], axis=1).astype(np.float32)
    out = []
    for start in range(0, count, EXTRACT_CHUNK):  # the sampling grid is built per chunk, in float32
        stop = min(start + EXTRACT_CHUNK, count)
        x, y, s, c, n = torch.from_numpy(per_frame[start:stop]).T[:, :, None, None]
        px = x + s * (c * u - n * v)
        py = y + s * (n * u + c * v)
        grid = torch.stack([2.0 * px / max(width - 1, 1) - 1.0, 2.0 * py / max(height - 1, 1) - 1.0], dim=-1)
        sampled = F.grid_sample(
            tensor.expand(stop - start, -1, -1, -1), grid, mode="bilinear", padding_mode="border", align_corners=True
        )
        out.append(sampled)
    return torch.cat(out)


def patch_mode(desc: Descriptor) -> str:
    """How ``compute_patches`` runs a descriptor (recorded in result rows)."""
    kind = desc.kind()
    if Kind.PATCH in kind:
        return "patches"
    return "dense-at-centre" if Kind.DENSE in kind else "keypoint-at-centre"


def dense_mode(desc: Descriptor) -> str:
    """How ``compute_dense`` runs a descriptor (recorded in result rows)."""
    kind = desc.kind()
    if Kind.KEYPOINTS in kind:
        return "keypoints"
    return "dense-sampled" if Kind.DENSE in kind else "patches-around-frames"


def check_image(image: np.ndarray, name: str) -> np.ndarray:
    """Validate an image for ``compute_dense``: uint8, ``(H, W)`` or ``(H, W, 3)`` (``(H, W, 1)`` is
    squeezed), not empty. Returns it as a numpy array; raises InputError otherwise."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise InputError(f"{name}: expected an image of shape (H, W) or (H, W, 3) (RGB), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise InputError(
            f"{name}: expected a uint8 image with values 0..255, got dtype {image.dtype}; "
            "convert it first (e.g. np.clip(image, 0, 255).astype(np.uint8))"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"{name}: the image is empty (shape {image.shape})")
    return image


def empty_output(desc: Descriptor) -> torch.Tensor:
    """``(0, dim)`` on the descriptor's device: uint8 for binary descriptors, else float32."""
    dtype = torch.uint8 if desc.distance is Distance.HAMMING else torch.float32
    return torch.empty(0, desc.dim, dtype=dtype, device=desc.device)


def compute_dense(desc: Descriptor, image: np.ndarray, frames: Frames) -> torch.Tensor:
    image = check_image(image, desc.name)
    kind = desc.kind()
    count = len(frames)
    if count == 0:
        return empty_output(desc)
    with torch.no_grad():
        if Kind.KEYPOINTS in kind:
            out = desc.describe_keypoints(image, frames)
        elif Kind.DENSE in kind:
            maps = _image_map(desc, image)
            xy = torch.from_numpy(frames.xy).to(maps.device, maps.dtype)[None]
            out = sample_map(maps, xy, desc.dense_stride, desc.dense_offset)[0]
            if desc.normalize_samples:
                out = F.normalize(out, dim=-1)
        else:
            return compute_patches(desc, extract_patches(image, frames))
    return desc.check_output(out, count)


def _image_map(desc: Descriptor, image: np.ndarray) -> torch.Tensor:
    """The ``dense_map`` hook on a checked uint8 image: ``(1, dim, H', W')``, possibly a reused buffer."""
    return desc.dense_map(normalise(image_tensor(image, desc.input).to(desc.device), desc.input))


def compute_dense_map(desc: Descriptor, image: np.ndarray) -> DenseMap:
    """``Descriptor.compute_dense_map``: the hook's map of one image, checked, copied and on its grid."""
    image = check_image(image, desc.name)
    kind = desc.kind()
    if Kind.DENSE not in kind:
        hooks = " and ".join(hook for hook, flag in HOOKS.items() if flag in kind)
        raise InputError(
            f"{desc.name} has no dense map: it implements {hooks}, not dense_map; "
            "describe chosen points with compute_dense(image, keypoints) instead"
        )
    with torch.no_grad():
        maps = _image_map(desc, image)
        if not isinstance(maps, torch.Tensor) or maps.ndim != 4 or tuple(maps.shape[:2]) != (1, desc.dim):
            raise DescriptorOutputError(
                f"descriptor {desc.name!r} dense_map returned shape {tuple(getattr(maps, 'shape', ()))} for one "
                f"image, expected (1, {desc.dim}, H', W')"
            )
        values = maps[0].to(desc.device, torch.float32, copy=True)  # fresh: hooks may reuse their buffer
        # A sum is finite only if every value is (0.02 s for a 1024x436 SIFT Flow map, isfinite 0.6 s).
        # An overflowing sum of finite values falls through to the full check, which then finds none.
        bad = 0 if torch.isfinite(values.sum()) else int((~torch.isfinite(values)).any(dim=0).sum())
        if bad:
            raise DescriptorOutputError(f"descriptor {desc.name!r} returned NaN or infinite values in {bad} map cells")
        if desc.normalize_samples:  # as compute_dense normalises what it samples
            values = F.normalize(values, dim=0)
    return DenseMap(values, float(desc.dense_stride), float(desc.dense_offset))
