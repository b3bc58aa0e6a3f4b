"""HardNet (Mishchuk et al., "Working hard to know your neighbor's margins", NeurIPS 2017).

Patches ``(B, 1, P, P)`` 0..255 -> ``(B, 128)`` float32 with unit L2 norm.

Input (declared in ``input``, applied by prepare.py): resized to 32x32 as ``cv2.resize`` with
INTER_LINEAR does (the upstream HPatches extraction script), scaled to 0..1, each patch
standardised ``(x - mean) / (std + 1e-7)`` with the unbiased std (upstream ``input_norm``).

Network (upstream ``features`` indices, so checkpoints load without key mapping)::

    0 conv 1->32 3x3      1 BN  2 ReLU      3 conv 32->32 3x3       4 BN  5 ReLU
    6 conv 32->64 3x3 /2  7 BN  8 ReLU      9 conv 64->64 3x3      10 BN 11 ReLU
   12 conv 64->128 3x3 /2 13 BN 14 ReLU    15 conv 128->128 3x3    16 BN 17 ReLU
   18 Dropout(0.3)        19 conv 128->128 8x8   20 BN             -> flatten, L2-normalise

HardNet convolutions have no bias and the batch norms no affine parameters. HardNetPS (weights
trained on the PS dataset of Mitra et al., 2018, converted from Lua torch) has biased convolutions,
affine batch norms, no dropout and no final batch norm (its last convolution is ``features.18``).

For inference every batch norm is folded into the convolution before it and the network runs in
channels-last memory format, which makes it faster on CPU than the unfused module.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import InputSpec, Normalization, WeightFile
from .weights import LearnedDescriptor, state_shapes

_REPO = "DagnyT/hardnet"
_COMMIT = "35bc1d79910c4477e61ca486a4712b3b7496d43e"
_MIT = "MIT (DagnyT/hardnet)"


def _urls(path: str) -> tuple[str, ...]:
    return (
        f"https://raw.githubusercontent.com/{_REPO}/{_COMMIT}/{path}",
        f"https://github.com/{_REPO}/raw/{_COMMIT}/{path}",
        f"https://raw.githubusercontent.com/{_REPO}/master/{path}",
    )


def _checkpoint(path: str, blob: str, trained_on: str, saw_hpatches: bool = False) -> WeightFile:
    return WeightFile(
        urls=_urls(path),
        git_blob=blob,
        format="checkpoint:state_dict",
        licence=_MIT,
        trained_on=trained_on,
        saw_hpatches=saw_hpatches,
    )


# (in, out, stride) of the six 3x3 convolutions
_CONVS = ((1, 32, 1), (32, 32, 1), (32, 64, 2), (64, 64, 1), (64, 128, 2), (128, 128, 1))


def hardnet_features(ps: bool = False) -> nn.Sequential:
    """The upstream ``features`` stack (HardNet, or HardNetPS with ``ps=True``), unfused."""
    layers: list[nn.Module] = []
    for cin, cout, stride in _CONVS:
        layers += [
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=ps),
            nn.BatchNorm2d(cout, affine=ps),
            nn.ReLU(),
        ]
    if ps:
        layers.append(nn.Conv2d(128, 128, 8, bias=True))
    else:
        layers += [nn.Dropout(0.3), nn.Conv2d(128, 128, 8, bias=False), nn.BatchNorm2d(128, affine=False)]
    return nn.Sequential(*layers)


def fuse(features: nn.Sequential) -> nn.Sequential:
    """Fold each batch norm into the convolution before it; keep ReLUs, drop dropout (eval only)."""
    fused: list[nn.Module] = []
    modules = list(features)
    i = 0
    while i < len(modules):
        module = modules[i]
        if isinstance(module, nn.Conv2d):
            weight = module.weight.detach().double()
            bias = (
                module.bias.detach().double()
                if module.bias is not None
                else torch.zeros(weight.shape[0], dtype=torch.float64)
            )
            if i + 1 < len(modules) and isinstance(modules[i + 1], nn.BatchNorm2d):
                bn = modules[i + 1]
                scale = 1.0 / torch.sqrt(bn.running_var.double() + bn.eps)
                shift = -bn.running_mean.double() * scale
                if bn.affine:
                    scale, shift = scale * bn.weight.double(), shift * bn.weight.double() + bn.bias.double()
                weight = weight * scale.view(-1, 1, 1, 1)
                bias = bias * scale + shift
                i += 1
            conv = nn.Conv2d(
                module.in_channels,
                module.out_channels,
                module.kernel_size,
                stride=module.stride,
                padding=module.padding,
                bias=True,
            )
            conv.weight.data.copy_(weight.float())
            conv.bias.data.copy_(bias.float())
            fused.append(conv)
        elif isinstance(module, nn.ReLU):
            fused.append(nn.ReLU(inplace=True))
        i += 1
    return nn.Sequential(*fused)


class HardNet(LearnedDescriptor):
    """HardNet; default weights HardNetLib+ (Liberty with augmentation)."""

    name = "hardnet"
    dim = 128
    input = InputSpec(channels=1, patch_size=32, value_range=1.0, normalization=Normalization.PER_PATCH, eps=1e-7)
    batch_size = 1024
    summary = "HardNet (NeurIPS 2017), 32x32 patches; weights HardNetLib+ (Liberty, augmented)"
    ps: ClassVar[bool] = False
    weights = {
        "liberty-aug": _checkpoint(
            "pretrained/train_liberty_with_aug/checkpoint_liberty_with_aug.pth",
            "c1b2a5f4e79a5f3e50ec9a1ac98a428965cef37b",
            "Brown liberty, augmented (HardNetLib+)",
        ),
        "liberty": _checkpoint(
            "pretrained/train_liberty/checkpoint_liberty_no_aug.pth",
            "8694b2a670aec840800966e42cd8c79e3be66e9a",
            "Brown liberty, no augmentation",
        ),
        "notredame-aug": _checkpoint(
            "pretrained/train_notredame_with_aug/checkpoint_notredame_with_aug.pth",
            "e3d10581066a9408db8c9a6b545e08318bdead2c",
            "Brown notredame, augmented",
        ),
        "yosemite-aug": _checkpoint(
            "pretrained/train_yosemite_with_aug/checkpoint_yosemite_with_aug.pth",
            "ec9124d045fa7c05cefa76a7ae48a016754aae85",
            "Brown yosemite, augmented",
        ),
        "6brown": _checkpoint(
            "pretrained/6Brown/hardnetBr6.pth", "26df901859b3bbfc0cafaca504f09e771ac7b427", "6Brown (all Brown sets)"
        ),
    }
    default_weights = "liberty-aug"

    @classmethod
    def expected_shapes(cls, variant: str | None = None) -> dict[str, tuple[int, ...]]:
        return {f"features.{k}": shape for k, shape in state_shapes(hardnet_features(cls.ps)).items()}

    def build(self, state: dict[str, torch.Tensor]) -> None:
        features = hardnet_features(self.ps)
        features.load_state_dict({k[len("features.") :]: v for k, v in state.items()}, strict=False)
        self.net = fuse(features.eval()).to(self.device).eval()
        if self.device.type == "cpu":
            self.net = self.net.to(memory_format=torch.channels_last)

    def describe_patches(self, prepared: torch.Tensor) -> torch.Tensor:
        x = prepared
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        return F.normalize(self.net(x).flatten(1), dim=1)


class HardNetPlusPlus(HardNet):
    """HardNet++: trained on all Brown sets and HPatches (flagged: it saw HPatches in training)."""

    name = "hardnet++"
    summary = "HardNet++ (Brown + HPatches training: not comparable on HPatches)"
    weights = {
        "brown+hpatches": _checkpoint(
            "pretrained/pretrained_all_datasets/HardNet++.pth",
            "84aa9c230b7cd6d0a8a7d13b65b39cfb0f406eec",
            "Brown + HPatches",
            saw_hpatches=True,
        ),
    }
    default_weights = "brown+hpatches"


class HardNetPS(HardNet):
    """HardNetPS: third-party weights trained on the PS dataset; biased convs, affine BN, no final BN."""

    name = "hardnet-ps"
    summary = "HardNetPS (PS dataset, Mitra et al. 2018; third-party weights)"
    ps = True
    weights = {
        "ps": WeightFile(
            urls=_urls("pretrained/3rd_party/HardNetPS/HardNetPS.pth"),
            git_blob="2d5b2988f18d6bd9523c69907ee4cbf07e060ab0",
            format="state_dict",
            licence="MIT repository; weights from the PS-dataset authors (Mitra et al.)",
            trained_on="PS dataset",
        ),
    }
    default_weights = "ps"
