"""Wide-ResNet (Zagoruyko & Komodakis, 2016) as a gated backbone: `WRN-<depth>-<width>`, e.g. WRN-16-8.

depth = 6n + 4: three groups of n pre-activation blocks (BN-ReLU-conv3x3, twice) with 16k, 32k, 64k
channels (k = width), then BN-ReLU. Adapted to dense prediction at output stride 8: the stem conv
strides by 2 and the groups by 1, 2, 2. Module names follow the reference WRN code (`conv1`,
`block{g}.layer.{i}.bn1/conv1/bn2/conv2/convShortcut`, final `bn1`). Every block is gateable; a block
that changes shape has a 1x1 projection `convShortcut`, which (unlike the reference code, where it
reads the block's pre-activation) reads the block input, so a skipped block runs only the projection.
"""
from __future__ import annotations

import re
from typing import List

import torch
from torch import nn

from .base import GatedBackbone
from .registry import register_family

GROUP_STRIDES = (1, 2, 2)


class WideBasicBlock(nn.Module):
    """Pre-activation body BN-ReLU-conv3x3-BN-ReLU-conv3x3, and a 1x1 projection when the shape changes."""

    def __init__(self, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.convShortcut = (nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)
                             if stride != 1 or in_planes != out_planes else None)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        # relu1 must not act in place: x is also the residual.
        return self.conv2(self.relu2(self.bn2(self.conv1(torch.relu(self.bn1(x))))))

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.convShortcut is None else self.convShortcut(x)


class WideGroup(nn.Module):
    """n blocks of one width (`layer.{i}`, as the reference code names them)."""

    def __init__(self, num: int, in_planes: int, out_planes: int, stride: int) -> None:
        super().__init__()
        self.layer = nn.Sequential(*[WideBasicBlock(in_planes if i == 0 else out_planes, out_planes,
                                                    stride if i == 0 else 1) for i in range(num)])


class WideResNetBackbone(GatedBackbone):
    """conv1 (stride 2) -> block1..block3 (gateable blocks) -> bn1 + ReLU (always executed)."""

    def __init__(self, depth: int, width: int) -> None:
        super().__init__()
        if depth < 10 or (depth - 4) % 6 or width < 1:
            raise ValueError(f"WRN-{depth}-{width}: depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...) and "
                             f"width >= 1")
        num = (depth - 4) // 6
        channels = [16, 16 * width, 32 * width, 64 * width]
        self.conv1 = nn.Conv2d(3, channels[0], kernel_size=3, stride=2, padding=1, bias=False)
        self.block1 = WideGroup(num, channels[0], channels[1], GROUP_STRIDES[0])
        self.block2 = WideGroup(num, channels[1], channels[2], GROUP_STRIDES[1])
        self.block3 = WideGroup(num, channels[2], channels[3], GROUP_STRIDES[2])
        self.bn1 = nn.BatchNorm2d(channels[3])
        self.relu = nn.ReLU(inplace=True)
        self.out_channels = channels[3]
        self._names = [f"{g}.{i}" for g in range(3) for i in range(num)]
        for m in self.modules():  # the reference code's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def block_names(self) -> List[str]:
        return list(self._names)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1(x)

    def fixed(self, x: torch.Tensor, t: int) -> torch.Tensor:
        return self.relu(self.bn1(x)) if t == self.num_blocks else x

    def _residual(self, x: torch.Tensor, t: int) -> torch.Tensor:
        return self._block(t).residual(x)

    def _executed(self, x: torch.Tensor, residual: torch.Tensor, t: int) -> torch.Tensor:
        return residual + self._block(t).body(x)

    def body_modules(self, t: int) -> List[nn.Module]:
        block = self._block(t)
        return [block.bn1, block.conv1, block.bn2, block.conv2]

    def always_modules(self, t: int) -> List[nn.Module]:
        if t == self.num_blocks:
            return [self.bn1]
        shortcut = self._block(t).convShortcut
        return [shortcut] if shortcut is not None else []

    def _block(self, t: int) -> WideBasicBlock:
        # Looked up through the modules (not the cached list) so a pruned view sees its own modules.
        group, i = divmod(t, len(self.block1.layer))
        return getattr(self, f"block{group + 1}").layer[i]


@register_family("Wide-ResNet", r"WRN-(\d+)-(\d+)", ("WRN-16-8", "WRN-10-2"), ignored_weight_keys=("fc.",))
def build_wide_resnet(match: re.Match) -> WideResNetBackbone:
    return WideResNetBackbone(int(match.group(1)), int(match.group(2)))
