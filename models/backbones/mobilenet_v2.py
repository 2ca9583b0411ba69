"""MobileNetV2 (Sandler et al., 2018) as a gated backbone: `MobileNetV2` or `MobileNetV2-<width multiplier>`.

Inverted residual blocks (1x1 expand - 3x3 depthwise - 1x1 linear projection). Only the blocks with a
residual connection (stride 1, same channels) are gateable: executed = x + f(x), skipped = x; the other
blocks (the first of each stage) always execute. Dense prediction at output stride 8 as DeepLab-v3 does
it: the strides of the 64- and 160-channel stages become dilations 2 and 4. The features are the
320-channel output of the last stage (no final 1280-channel conv). Module names follow torchvision's
`mobilenet_v2` (`features.{i}.conv...`), so its ImageNet state dict loads (features.18 and the
classifier are not used).
"""
from __future__ import annotations

import re
from typing import List, Optional

import torch
from torch import nn

from .base import GatedBackbone
from .registry import register_family

# (expansion t, channels c, blocks n, stride s) of the paper's Table 2.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
OUTPUT_STRIDE = 8


def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's channel rounding: nearest multiple of `divisor`, never below 90 % of `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_bn_relu6(in_planes: int, out_planes: int, kernel: int = 3, stride: int = 1, groups: int = 1,
                  dilation: int = 1) -> nn.Sequential:
    """conv (no bias) - BN - ReLU6, keys `0.weight`, `1.*` as torchvision's Conv2dNormActivation."""
    padding = (kernel - 1) // 2 * dilation
    return nn.Sequential(nn.Conv2d(in_planes, out_planes, kernel, stride, padding, dilation=dilation, groups=groups,
                                   bias=False),
                         nn.BatchNorm2d(out_planes), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """`conv`: [expand 1x1] - depthwise 3x3 - linear 1x1 + BN; `use_res_connect` iff stride 1 and same channels."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, expansion: int, dilation: int = 1) -> None:
        super().__init__()
        hidden = int(round(in_planes * expansion))
        self.use_res_connect = stride == 1 and in_planes == out_planes
        layers: List[nn.Module] = [conv_bn_relu6(in_planes, hidden, kernel=1)] if expansion != 1 else []
        layers += [conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden, dilation=dilation),
                   nn.Conv2d(hidden, out_planes, 1, bias=False), nn.BatchNorm2d(out_planes)]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2Backbone(GatedBackbone):
    """features.0 (stem) then 17 inverted residual blocks; the 10 with a residual connection are gateable."""

    def __init__(self, width_mult: float = 1.0) -> None:
        super().__init__()
        if not 0 < width_mult <= 4:
            raise ValueError(f"MobileNetV2: width multiplier must be in (0, 4], got {width_mult}")
        in_planes = make_divisible(32 * width_mult)
        features: List[nn.Module] = [conv_bn_relu6(3, in_planes, stride=2)]
        stride, dilation = 2, 1
        for expansion, channels, num, s in SETTINGS:
            out_planes = make_divisible(channels * width_mult)
            for i in range(num):
                block_stride = s if i == 0 else 1
                if block_stride > 1 and stride >= OUTPUT_STRIDE:  # dilate instead of striding past 1/8
                    dilation, block_stride = dilation * block_stride, 1
                elif block_stride > 1:
                    stride *= block_stride
                features.append(InvertedResidual(in_planes, out_planes, block_stride, expansion, dilation))
                in_planes = out_planes
        self.features = nn.Sequential(*features)
        self.out_channels = in_planes
        # Index in `features` of each gateable block.
        self._gated = [i for i, m in enumerate(features) if isinstance(m, InvertedResidual) and m.use_res_connect]
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def block_names(self) -> List[str]:
        """`features.{i}` index of each gateable block."""
        return [str(i) for i in self._gated]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.features[0](x)

    def _fixed_range(self, t: int) -> range:
        """Indices of the always-executed blocks before gateable block t (t = L: after the last)."""
        start = self._gated[t - 1] + 1 if t > 0 else 1
        stop = self._gated[t] if t < self.num_blocks else len(self.features)
        return range(start, stop)

    def fixed(self, x: torch.Tensor, t: int) -> torch.Tensor:
        for i in self._fixed_range(t):
            x = self.features[i](x)
        return x

    def _residual(self, x: torch.Tensor, t: int) -> torch.Tensor:
        return x

    def _executed(self, x: torch.Tensor, residual: torch.Tensor, t: int) -> torch.Tensor:
        return residual + self.features[self._gated[t]].conv(x)

    def body_modules(self, t: int) -> List[nn.Module]:
        return [self.features[self._gated[t]].conv]

    def always_modules(self, t: int) -> List[nn.Module]:
        return [self.features[i] for i in self._fixed_range(t)]


@register_family("MobileNetV2", r"MobileNetV2(?:-(\d+(?:\.\d+)?))?", ("MobileNetV2", "MobileNetV2-0.5"),
                 ignored_weight_keys=("features.18.", "classifier."))
def build_mobilenet_v2(match: re.Match) -> MobileNetV2Backbone:
    multiplier: Optional[str] = match.group(1)
    return MobileNetV2Backbone(float(multiplier) if multiplier else 1.0)
