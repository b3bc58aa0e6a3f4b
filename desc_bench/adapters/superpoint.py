"""SuperPoint (DeTone, Malisiewicz & Rabinovich, "SuperPoint: Self-Supervised Interest Point
Detection and Description", CVPR Workshops 2018), written from the paper and the upstream facts.

Dense: image ``(B, 1, H, W)`` gray scaled to 0..1 -> ``dense_map`` ``(B, 256, H/8, W/8)``, unit L2
norm per cell; cell (i, j) covers pixels 8j..8j+7, so its centre is pixel ``8j + 3.5``
(``dense_stride = 8``, ``dense_offset = 3.5``, the convention of Magic Leap's later SuperGlue code).
Sampled descriptors are bilinear interpolations renormalised to unit length, as upstream does
(``normalize_samples``). As a patch descriptor the patch is described as a small image at its centre.

Detector (:meth:`SuperPoint.detect`): softmax over the 65 detector channels, dustbin dropped,
depth-to-space to a full resolution heatmap, points with confidence >= 0.015, greedy non-maximum
suppression within 4 px (strongest first), points within 4 px of the border removed; as in the
upstream demo (``demo_superpoint.py``).

Network (upstream names, so the released ``superpoint_v1.pth`` state dict loads as is): a VGG-style
encoder ``conv1a/1b`` (1->64->64), pool, ``conv2a/2b`` (64), pool, ``conv3a/3b`` (128), pool,
``conv4a/4b`` (128), all 3x3 + ReLU; detector head ``convPa`` (3x3 128->256, ReLU), ``convPb``
(1x1 256->65); descriptor head ``convDa`` (3x3 128->256, ReLU), ``convDb`` (1x1 256->256).

The released weights are under Magic Leap's academic, non-profit, non-commercial research-only
licence (no redistribution); the notice is printed whenever they are used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InputError
from .base import Frames, InputSpec, WeightFile
from .prepare import image_tensor, normalise
from .weights import LearnedDescriptor

_REPO = "magicleap/SuperPointPretrainedNetwork"
_COMMIT = "1fda796addba9b6f8e79d586a3699700a86b1cea"
NOTICE = (
    "SuperPoint weights (Magic Leap) are licensed for academic or non-profit non-commercial research "
    "use only; redistribution is forbidden. See the LICENSE of magicleap/SuperPointPretrainedNetwork."
)

# name: (in, out, kernel)
_LAYERS = {
    "conv1a": (1, 64, 3),
    "conv1b": (64, 64, 3),
    "conv2a": (64, 64, 3),
    "conv2b": (64, 64, 3),
    "conv3a": (64, 128, 3),
    "conv3b": (128, 128, 3),
    "conv4a": (128, 128, 3),
    "conv4b": (128, 128, 3),
    "convPa": (128, 256, 3),
    "convPb": (256, 65, 1),
    "convDa": (128, 256, 3),
    "convDb": (256, 256, 1),
}


class SuperPointNet(nn.Module):
    """Encoder with detector and descriptor heads; ``forward`` returns (logits, descriptors)."""

    def __init__(self):
        super().__init__()
        for name, (cin, cout, k) in _LAYERS.items():
            setattr(self, name, nn.Conv2d(cin, cout, k, padding=k // 2))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for block in ("1", "2", "3", "4"):
            x = F.relu(getattr(self, f"conv{block}a")(x), inplace=True)
            x = F.relu(getattr(self, f"conv{block}b")(x), inplace=True)
            if block != "4":
                x = F.max_pool2d(x, 2, 2)
        logits = self.convPb(F.relu(self.convPa(x), inplace=True))
        desc = self.convDb(F.relu(self.convDa(x), inplace=True))
        return logits, F.normalize(desc, dim=1)


@dataclass(frozen=True)
class SuperPointOptions:
    conf_thresh: float = 0.015  # detector confidence threshold
    nms_dist: int = 4  # non-maximum suppression radius (px)
    border: int = 4  # points closer than this to the border are removed (px)
    max_keypoints: int = 0  # keep the strongest N detections (0: all)


def nms(xy: np.ndarray, conf: np.ndarray, height: int, width: int, dist: int) -> np.ndarray:
    """Greedy NMS: visit points strongest first, keep one unless a kept point lies within ``dist``
    (Chebyshev distance) of it. Returns the kept indices, strongest first."""
    order = np.argsort(-conf, kind="stable")
    if dist <= 0:
        return order
    blocked = np.zeros((height + 2 * dist, width + 2 * dist), dtype=bool)
    keep = []
    for idx in order:
        x, y = int(xy[idx, 0]) + dist, int(xy[idx, 1]) + dist
        if blocked[y, x]:
            continue
        keep.append(idx)
        blocked[y - dist : y + dist + 1, x - dist : x + dist + 1] = True
    return np.asarray(keep, dtype=np.int64)


class SuperPoint(LearnedDescriptor):
    """SuperPoint descriptor (dense, stride 8) with its own detector for image pairs."""

    name = "superpoint"
    dim = 256
    input = InputSpec(channels=1, patch_size=None, value_range=1.0)
    Options = SuperPointOptions
    batch_size = 256
    dense_stride = 8.0
    dense_offset = 3.5
    normalize_samples = True
    summary = "SuperPoint (CVPR-W 2018), dense stride 8 with its own detector; non-commercial weights"
    weights = {
        "v1": WeightFile(
            urls=(
                f"https://raw.githubusercontent.com/{_REPO}/{_COMMIT}/superpoint_v1.pth",
                f"https://github.com/{_REPO}/raw/{_COMMIT}/superpoint_v1.pth",
                f"https://raw.githubusercontent.com/{_REPO}/master/superpoint_v1.pth",
            ),
            git_blob="107a444ca318d487390137d619d49f2f0a3b1ad8",
            format="state_dict",
            licence="Magic Leap academic/non-profit non-commercial research only; no redistribution",
            notice=NOTICE,
            trained_on="MS-COCO (self-supervised, homographic adaptation)",
        ),
    }
    network = SuperPointNet
    default_weights = "v1"

    def dense_map(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        if height < 8 or width < 8:
            raise InputError(
                f"superpoint needs an image (or patch) of at least 8x8 pixels (one 8x8 cell), got {width}x{height}"
            )
        return self.net(images)[1]

    def detect(self, image: np.ndarray) -> Frames:
        """Keypoints of a uint8 image ``(H, W)`` or ``(H, W, 3)``, strongest first (scale/angle unset)."""
        image = np.asarray(image)
        if image.dtype != np.uint8:
            raise InputError(f"superpoint.detect expects a uint8 image, got {image.dtype}")
        batch = normalise(image_tensor(image, self.input).to(self.device), self.input)
        height, width = batch.shape[-2:]
        if height < 8 or width < 8:
            raise InputError(f"superpoint.detect needs an image of at least 8x8 pixels, got {width}x{height}")
        with torch.no_grad():
            logits = self.net(batch)[0]
            prob = torch.softmax(logits, dim=1)[:, :-1]  # drop the "no point" dustbin
            heat = F.pixel_shuffle(prob, 8)[0, 0].cpu().numpy()  # (Hc*8, Wc*8)
        opts = self.options
        ys, xs = np.nonzero(heat >= opts.conf_thresh)
        conf = heat[ys, xs]
        xy = np.stack([xs, ys], axis=1).astype(np.float64)
        keep = nms(xy, conf, heat.shape[0], heat.shape[1], opts.nms_dist)
        xy, conf = xy[keep], conf[keep]
        b = opts.border
        inside = (xy[:, 0] >= b) & (xy[:, 0] < width - b) & (xy[:, 1] >= b) & (xy[:, 1] < height - b)
        xy, conf = xy[inside], conf[inside]
        if opts.max_keypoints > 0:
            xy, conf = xy[: opts.max_keypoints], conf[: opts.max_keypoints]
        self.last_scores = conf.astype(np.float32)
        return Frames(xy.reshape(-1, 2))
