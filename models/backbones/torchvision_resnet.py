"""torchvision ResNets as gated backbones: `tv:resnet18|34|50|101`, dilated to output stride 8.

The modules are torchvision's own (`conv1`, `bn1`, `layer1`..`layer4`; no avgpool/fc), so its ImageNet
state dicts load as they are (the `fc.*` keys are not used). Like Deeplab (and torchvision's
`replace_stride_with_dilation=[False, True, True]`), layer3 and layer4 trade their stride for
dilations 2 and 4, the first block of each keeping the previous dilation; done here by hand so that
BasicBlock ResNets (18/34), which torchvision refuses to dilate, get the same treatment. Every block is
gateable: executed = relu(residual + body(x)), skipped = residual = the block's `downsample(x)` or x.
torchvision is imported only here, when such a backbone is built.
"""
from __future__ import annotations

import re
from typing import List

import torch
import torch.nn.functional as F
from torch import nn

from .base import GatedBackbone
from .registry import register_family

DEPTHS = ("18", "34", "50", "101")
LAYER_DILATIONS = (1, 1, 2, 4)


def _torchvision_models():
    try:
        import torchvision.models as models
    except ImportError as err:
        raise ImportError(f"the tv:resnet backbones need torchvision, which is not installed ({err}); install the "
                          "torchvision build matching your torch, or choose another backbone") from None
    return models


def dilate(layer: nn.Sequential, dilation: int, previous: int) -> None:
    """Stride 1 everywhere in `layer`; its 3x3 convs dilated (the first block's by `previous`)."""
    for i, block in enumerate(layer):
        rate = previous if i == 0 else dilation
        for conv in (m for m in block.modules() if isinstance(m, nn.Conv2d)):
            conv.stride = (1, 1)
            if conv.kernel_size == (3, 3):
                conv.dilation, conv.padding = (rate, rate), (rate, rate)


class TorchvisionResNetBackbone(GatedBackbone):
    """torchvision's ResNet stem and layer1..4 (dilated), gated block by block."""

    def __init__(self, depth: str) -> None:
        super().__init__()
        network = getattr(_torchvision_models(), f"resnet{depth}")(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = network.conv1, network.bn1, network.relu, network.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = network.layer1, network.layer2, network.layer3, network.layer4
        for index in (3, 4):
            dilate(getattr(self, f"layer{index}"), LAYER_DILATIONS[index - 1], LAYER_DILATIONS[index - 2])
        self._positions = [(s, b) for s in range(1, 5) for b in range(len(getattr(self, f"layer{s}")))]
        last = self.layer4[-1]
        self.out_channels = (last.bn3 if hasattr(last, "bn3") else last.bn2).num_features

    @property
    def block_names(self) -> List[str]:
        return [f"{s}.{b}" for s, b in self._positions]

    def _block(self, t: int) -> nn.Module:
        s, b = self._positions[t]
        return getattr(self, f"layer{s}")[b]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def _residual(self, x: torch.Tensor, t: int) -> torch.Tensor:
        downsample = self._block(t).downsample
        return downsample(x) if downsample is not None else x

    def _executed(self, x: torch.Tensor, residual: torch.Tensor, t: int) -> torch.Tensor:
        block = self._block(t)
        out = block.relu(block.bn1(block.conv1(x)))
        out = block.bn2(block.conv2(out))
        if hasattr(block, "conv3"):  # Bottleneck
            out = block.bn3(block.conv3(block.relu(out)))
        return F.relu(residual + out)

    def body_modules(self, t: int) -> List[nn.Module]:
        block = self._block(t)
        return [m for name, m in block.named_children() if name.startswith(("conv", "bn"))]

    def always_modules(self, t: int) -> List[nn.Module]:
        if t == self.num_blocks:
            return []
        downsample = self._block(t).downsample
        return [downsample] if downsample is not None else []


@register_family("torchvision ResNet", r"tv:resnet(" + "|".join(DEPTHS) + ")",
                 tuple(f"tv:resnet{d}" for d in DEPTHS), ignored_weight_keys=("fc.",))
def build_torchvision_resnet(match: re.Match) -> TorchvisionResNetBackbone:
    return TorchvisionResNetBackbone(match.group(1))
