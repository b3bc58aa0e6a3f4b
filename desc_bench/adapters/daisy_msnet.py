"""``daisy-msnet``: the DAISY baseline of MSNet (lin-zju/my-descriptor-space, commit 7b6aaa6,
``lib/modeling/matcher/daisy.py`` and ``lib/utils/misc.py: sample_descriptor``), so that its
published DAISY row of the MSNet PCK table can be reproduced. ``daisy-opencv`` with MSNet's steps:

1. the uint8 round trip of its data loader: RGB ``/ 255``, ImageNet-normalised, un-normalised,
   ``* 255`` and cast to uint8 (truncation: some values drop by one), in float32 torch arithmetic;
2. OpenCV DAISY (``DAISY_create()`` defaults, the options of ``daisy-opencv``) of that 3-channel
   RGB array: OpenCV converts it with BGR2GRAY, i.e. with the red and blue weights swapped;
3. the dense map (a descriptor at every pixel, ``KeyPoint(x, y, 0)``), each L2-normalised
   (``F.normalize``), sampled bilinearly as ``F.grid_sample`` with the old default
   ``align_corners=True`` at ``x / (W / 2) - 1``, i.e. at pixel ``x (W - 1) / W`` (and y alike),
   zero outside; the samples L2-normalised again.

Only the four map pixels around each keypoint are computed (OpenCV's DAISY at a pixel does not
depend on which other pixels are asked for), not the whole map. Shapes: image ``(H, W, 3)`` or
``(H, W)`` uint8 (gray is replicated, as MSNet's ``gray2RGB``), keypoints ``(N, 2)`` xy ->
``(N, 200)`` float32 with unit norm.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .base import Frames, InputSpec
from .daisy import DaisyOpenCV

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def msnet_round_trip(image: np.ndarray) -> np.ndarray:
    """``(H, W, 3)`` uint8 as MSNet's DAISY sees it: ``normalize_torch`` of ``img / 255`` (its
    Hpatches dataset), then ``unnormalize`` and ``touint8`` (its DaisyFeature), in float32."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0
    x -= mean
    x /= std
    x *= std
    x += mean
    return (x.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def grid_sample_corners(xy: np.ndarray, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Corner pixels ``(N, 4, 2)`` (x, y; nw, ne, sw, se) and bilinear weights ``(N, 4)`` of
    ``F.grid_sample(align_corners=True)`` at ``x / (W / 2) - 1`` (MSNet's keypoint normalisation),
    in its float32 arithmetic; corners outside the map get weight 0 (zero padding)."""
    kps = torch.from_numpy(np.asarray(xy, np.float64)).float()
    gx, gy = kps[:, 0] / (float(width) / 2.0) - 1.0, kps[:, 1] / (float(height) / 2.0) - 1.0
    ix, iy = ((gx + 1) / 2) * (width - 1), ((gy + 1) / 2) * (height - 1)
    x0, y0 = torch.floor(ix), torch.floor(iy)
    x1, y1 = x0 + 1, y0 + 1
    wx0, wx1, wy0, wy1 = x1 - ix, ix - x0, y1 - iy, iy - y0
    weights = torch.stack([wx0 * wy0, wx1 * wy0, wx0 * wy1, wx1 * wy1], 1)  # nw, ne, sw, se
    corners = torch.stack([torch.stack(c, 1) for c in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))], 1).long()
    inside = (corners[..., 0] >= 0) & (corners[..., 0] < width) & (corners[..., 1] >= 0) & (corners[..., 1] < height)
    return corners, torch.where(inside, weights, torch.zeros_like(weights))


class DaisyMSNet(DaisyOpenCV):
    """``daisy-msnet``: MSNet's dense OpenCV DAISY baseline (200-d, unit norm)."""

    name = "daisy-msnet"
    input = InputSpec(channels=3)
    summary = "MSNet's DAISY baseline: dense OpenCV DAISY of BGR2GRAY(RGB), uint8 round trip, grid_sample"

    def describe_keypoints(self, image: np.ndarray, frames: Frames) -> torch.Tensor:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise InputError(
                f"daisy-msnet: expected a uint8 (H, W) or (H, W, 3) image, got {image.dtype} {image.shape}"
            )
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        rgb = msnet_round_trip(image[:, :, :3])
        height, width = rgb.shape[:2]
        corners, weights = grid_sample_corners(frames.xy, width, height)
        flat = corners.reshape(-1, 2)
        flat = torch.stack([flat[:, 0].clamp(0, width - 1), flat[:, 1].clamp(0, height - 1)], 1)
        pixels, index = torch.unique(flat[:, 1] * width + flat[:, 0], return_inverse=True)
        xy = np.stack([(pixels % width).numpy(), (pixels // width).numpy()], 1).astype(np.float64)
        zeros = np.zeros(len(xy))
        dense = F.normalize(torch.from_numpy(self._compute(rgb, xy, zeros, zeros)), dim=1)  # the map's pixels
        values = dense[index].view(len(frames), 4, -1)
        out = values[:, 0] * weights[:, 0, None]
        for k in range(1, 4):
            out = out + values[:, k] * weights[:, k, None]
        return F.normalize(out, dim=1).to(self.device)
