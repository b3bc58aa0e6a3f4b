"""MSNet-V0 (Lin et al., lin-zju/my-descriptor-space): a dense descriptor from ResNet-18 C3 features.

Image ``(B, 3, H, W)`` RGB, 0..1 with ImageNet mean/std -> ``dense_map`` ``(B, 128, H/4, W/4)``,
unit L2 norm per cell; cell (i, j) is centred on pixel ``(4j, 4i)`` (``dense_stride = 4``,
``dense_offset = 0``: the 7x7/2 stem convolution and the 3x3/2 max pool are both centred).

Backbone: ResNet-18 (He et al., CVPR 2016) with every residual stage at stride 1, truncated after
``layer2`` (C3, 128 channels): conv1 7x7/2 (3->64, no bias), BN, ReLU, max pool 3x3/2, layer1 (two
basic blocks, 64), layer2 (two basic blocks, 64->128, the first with a 1x1 conv + BN shortcut).
Head (``regress``): conv 3x3 128->256, ReLU, conv 3x3 256->128, ReLU, conv 1x1 128->128; then L2
normalisation over channels.

State-dict names follow upstream (``desc_extractor.backbone.model.{0,1,4,5}...``,
``desc_extractor.regress.{0,2,4}...``); checkpoints are ``{"model": state_dict, ...}`` with a
``module.`` prefix when trained with DataParallel. The weights were never released: add a file you
trained (or got from the authors) with ``desc-bench weights add msnet-v0 PATH``. Written without
torchvision.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import InputSpec, Normalization, WeightFile
from .weights import LearnedDescriptor


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 convs with BN, identity or 1x1-conv shortcut."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity, inplace=True)


class Backbone(nn.Module):
    """ResNet-18 up to C3 at stride 4 (``model`` indices as upstream's MultiResNet)."""

    def __init__(self):
        super().__init__()
        self.model = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
            nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64)),
            nn.Sequential(BasicBlock(64, 128), BasicBlock(128, 128)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DescExtractor(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = Backbone()
        self.regress = nn.Sequential(
            nn.Conv2d(128, 256, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 128, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(128, 128, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.regress(self.backbone(x)), dim=1)


class MSNetV0Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.desc_extractor = DescExtractor()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.desc_extractor(x)


class MSNetV0(LearnedDescriptor):
    """MSNet-V0 dense descriptor (ResNet-18 C3 + 3-layer head), stride 4."""

    name = "msnet-v0"
    dim = 128
    input = InputSpec(channels=3, patch_size=None, value_range=1.0, normalization=Normalization.IMAGENET)
    batch_size = 64
    dense_stride = 4.0
    dense_offset = 0.0
    normalize_samples = True  # upstream interpolates the map, then L2-normalises again
    summary = "MSNet-V0 (ResNet-18 C3, stride 4); weights never published: add your own file"
    weights = {
        "v0": WeightFile(
            urls=(),
            git_blob=None,
            format="msnet",
            licence="MIT (lin-zju/my-descriptor-space)",
            trained_on="MS-COCO with synthetic homographies (lin-zju/my-descriptor-space)",
        ),
    }
    network = MSNetV0Net
    default_weights = "v0"

    def dense_map(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)
