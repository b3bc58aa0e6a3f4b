"""GIFT (Liu et al., "GIFT: Learning Transformation-Invariant Dense Visual Descriptors via Group
CNNs", NeurIPS 2019), written from the paper and the facts of zju3dv/GIFT.

Image ``(H, W)`` or ``(H, W, 3)`` uint8 and keypoints ``(N, 2)`` xy -> ``(N, 128)`` unit L2 norm.

1. Group sampling: the image is warped by 5 scales ``0.5**k`` (k = 0..4) x 5 rotations (-90, -45,
   0, 45, 90 degrees) about its centre, each into a canvas that holds the whole warped image
   (bilinear, border value 127); before each scale after the first the image is blurred once more
   (5x5 Gaussian, sigma 1.5, cumulative). Pixels are normalised ``(v - 127) / 128``, gray images
   replicated to 3 channels (colour is used in BGR order, as upstream reads images with OpenCV).
2. Group extractor (``extractor``, a vanilla CNN): conv 5x5 3->16, IN, ReLU, conv 5x5 16->32, IN,
   ReLU, 2x2 average pool (``conv0``); conv 5x5 32->32, IN, ReLU, conv 5x5 32->32, IN (``conv1``);
   L2 normalisation over channels. Features are sampled bilinearly at the warped keypoints (the map
   is at stride 2: pixel ``p`` is map position ``(p + 0.5) / 2 - 0.5``), giving group features
   ``(N, 32, 5 scales, 5 rotations)``.
3. Group embedder (``embedder``): two group-CNN branches over the 5x5 scale x rotation grid, each
   two residual blocks (3x3 convs with ReLU, 1x1 shortcut) and a final 3x3 conv to 8 resp. 16
   channels; bilinear pooling ``(8 x 25) @ (25 x 16)`` flattened to 128 and L2-normalised.

Instance norms have no parameters; the convolutions of the extractor have no bias, those of the
embedder do. A checkpoint is ``{"extractor": ..., "embedder": ..., "step": ...}`` with upstream key
names (``extractor.conv0.0.weight``, ``embedder.network1_embed1.0.weight``, ...). The weights were
only published on OneDrive (README of zju3dv/GIFT, ``GIFT-stage2-pretrain/20001.pth``): add the
file with ``desc-bench weights add gift PATH``.

GIFT describes keypoints (the group features come from warped copies of the whole image), so it
implements ``describe_keypoints`` for images; on patches ``describe_patches`` describes each patch at
its centre ``((P-1)/2, (P-1)/2)``, batching all patches through each of the 25 warps.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import Frames, InputSpec, WeightFile
from .weights import LearnedDescriptor

SCALES = tuple(0.5**k for k in range(5))
ROTATIONS = tuple(np.deg2rad(-90.0 + 45.0 * k) for k in range(5))


def _l2(x: torch.Tensor, dim: int) -> torch.Tensor:
    return x / x.norm(dim=dim, keepdim=True).clamp(min=1e-6)


class Extractor(nn.Module):
    """The vanilla light CNN of GIFT (stride 2, 32 channels)."""

    def __init__(self):
        super().__init__()
        self.conv0 = nn.Sequential(
            nn.Conv2d(3, 16, 5, padding=2, bias=False),
            nn.InstanceNorm2d(16),
            nn.ReLU(inplace=True),
            nn.Conv2d(16, 32, 5, padding=2, bias=False),
            nn.InstanceNorm2d(32),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(2, 2),
        )
        self.conv1 = nn.Sequential(
            nn.Conv2d(32, 32, 5, padding=2, bias=False),
            nn.InstanceNorm2d(32),
            nn.ReLU(inplace=True),
            nn.Conv2d(32, 32, 5, padding=2, bias=False),
            nn.InstanceNorm2d(32),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _l2(self.conv1(self.conv0(x)), 1)


def _pair(cin: int, mid: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, mid, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 3, padding=1))


class Embedder(nn.Module):
    """Bilinear group CNN: two branches over the (scale, rotation) grid, bilinear pooling to 128-D."""

    def __init__(self):
        super().__init__()
        for branch, out in (("network1", 8), ("network2", 16)):
            setattr(self, f"{branch}_embed1", _pair(32, 64, 64))
            setattr(self, f"{branch}_embed1_short", nn.Conv2d(32, 64, 1))
            setattr(self, f"{branch}_embed2", _pair(64, 64, 64))
            setattr(self, f"{branch}_embed2_short", nn.Conv2d(64, 64, 1))
            setattr(self, f"{branch}_embed3", _pair(64, 64, out))

    def _branch(self, name: str, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(getattr(self, f"{name}_embed1")(x) + getattr(self, f"{name}_embed1_short")(x))
        x = F.relu(getattr(self, f"{name}_embed2")(x) + getattr(self, f"{name}_embed2_short")(x))
        return getattr(self, f"{name}_embed3")(x)

    def forward(self, group: torch.Tensor) -> torch.Tensor:
        """group ``(N, 32, S, R)`` -> ``(N, 128)``."""
        n = group.shape[0]
        a = self._branch("network1", group).reshape(n, 8, -1)
        b = self._branch("network2", group).reshape(n, 16, -1).transpose(1, 2)
        return _l2(torch.bmm(a, b).reshape(n, 128), 1)


class GiftNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.extractor = Extractor()
        self.embedder = Embedder()


def group_transforms(height: int, width: int):
    """The 5 x 5 (scale, rotation) affine maps, scale-major: yields (scale index, 2x3 matrix, (w, h))."""
    corners = np.array([[0, 0], [0, height], [width, height], [width, 0]], np.float64)
    centre = corners.mean(0)
    for si, scale in enumerate(SCALES):
        for angle in ROTATIONS:
            m = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
            moved = (corners - centre) @ m.T
            low = moved.min(0)
            # at least 4x4, so the stride-2 feature map has more than one cell (instance norm);
            # images of 64 px and more are never affected
            tw, th = np.maximum(np.round((moved - low).max(0)).astype(int), 4)
            offset = -m @ centre - low
            yield si, np.concatenate([m, offset[:, None]], 1), (int(tw), int(th))


def sample(feats: torch.Tensor, image_width: int, points: torch.Tensor) -> torch.Tensor:
    """Bilinear features ``(B, N, C)`` of stride-``image_width // map_width`` maps ``(B, C, h, w)``
    at pixel ``points`` ``(N, 2)`` (the same points in every image)."""
    _, _, hf, wf = feats.shape
    pool = max(1, image_width // wf)
    p = (points + 0.5) / pool - 0.5
    gx = p[:, 0] / ((wf - 1) / 2) - 1.0 if wf > 1 else torch.zeros_like(p[:, 0])
    gy = p[:, 1] / ((hf - 1) / 2) - 1.0 if hf > 1 else torch.zeros_like(p[:, 1])
    grid = torch.stack([gx, gy], -1).view(1, 1, -1, 2).to(feats.dtype).expand(feats.shape[0], -1, -1, -1)
    return F.grid_sample(feats, grid, mode="bilinear", align_corners=True)[:, :, 0].transpose(1, 2)


class Gift(LearnedDescriptor):
    """GIFT group-CNN descriptor; weights only on OneDrive (add them with ``desc-bench weights add``)."""

    name = "gift"
    dim = 128
    input = InputSpec(channels=3, patch_size=None)
    batch_size = 128
    summary = "GIFT (NeurIPS 2019), 5 scales x 5 rotations group CNN; weights not at a stable URL"
    weights = {
        "stage2-pretrain": WeightFile(
            urls=(),
            git_blob=None,
            format="gift",
            licence="AGPL-3.0 (zju3dv/GIFT; SenseTime IP note)",
            trained_on="MS-COCO with synthetic homographies (GIFT-stage2-pretrain/20001.pth, OneDrive)",
        ),
    }
    network = GiftNet
    default_weights = "stage2-pretrain"

    def group_features(self, images: np.ndarray, xy: np.ndarray) -> torch.Tensor:
        """Group features ``(B * N, 32, 5, 5)`` of uint8 BGR images ``(B, H, W, 3)`` at keypoints ``xy``
        ``(N, 2)`` (the same keypoints in each image)."""
        count, height, width = images.shape[:3]
        current = list(images)
        feats, level = [], 0
        for si, affine, (tw, th) in group_transforms(height, width):
            while level < si:  # one more blur per scale step, cumulative
                current = [cv2.GaussianBlur(im, (5, 5), 1.5) for im in current]
                level += 1
            warped = np.stack(
                [
                    cv2.warpAffine(
                        im,
                        affine,
                        (tw, th),
                        flags=cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_CONSTANT,
                        borderValue=(127, 127, 127),
                    )
                    for im in current
                ]
            )
            tensor = torch.from_numpy(warped).to(self.device).permute(0, 3, 1, 2).float()
            maps = self.net.extractor((tensor - 127.0) / 128.0)
            points = xy @ affine[:, :2].T + affine[:, 2]
            feats.append(sample(maps, tw, torch.from_numpy(points).to(self.device, torch.float32)))
        group = torch.stack(feats, -1)  # (B, N, 32, 25)
        return group.reshape(count * len(xy), 32, len(SCALES), len(ROTATIONS))

    def _embed(self, group: torch.Tensor) -> torch.Tensor:
        out = [self.net.embedder(group[i : i + self.batch_size]) for i in range(0, len(group), self.batch_size)]
        return torch.cat(out)

    def describe_patches(self, prepared: torch.Tensor) -> torch.Tensor:
        """Patches ``(B, 3, P, P)`` 0..255, described at their centre ``((P-1)/2, (P-1)/2)``; the
        patches share the warp geometry, so each of the 25 warps is one batched forward pass."""
        images = prepared.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        size = images.shape[1]
        centre = np.array([[(size - 1) / 2.0, (size - 1) / 2.0]])
        return self._embed(self.group_features(np.ascontiguousarray(images), centre))

    def describe_keypoints(self, image: np.ndarray, frames: Frames) -> torch.Tensor:
        if len(frames) == 0:
            return torch.zeros(0, self.dim, device=self.device)
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=2)
        else:
            image = image[:, :, ::-1]  # RGB -> BGR, as upstream reads images with OpenCV
        with torch.no_grad():
            return self._embed(self.group_features(np.ascontiguousarray(image)[None], frames.xy))
