"""Deeplab-ResNet backbone (output stride 8), the paper's: ResNet10/18/34/101 (docs/original.md §3.2, §3.3).

Every residual block is gateable: executed = relu(res + f(x)), skipped = res, where `res` is the
downsampled input for block 0 of a segment, so "skipping" that block still applies the downsample
projection (without ReLU). Names, state_dict keys, init and numerics are the original's.
"""
import re
from typing import List, Sequence, Tuple, Type, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..blocks import BasicBlock, Bottleneck
from .base import GatedBackbone
from .registry import register_family

Block = Type[Union[BasicBlock, Bottleneck]]

SEGMENT_PLANES = (64, 128, 256, 512)
SEGMENT_STRIDES = (1, 2, 1, 1)
SEGMENT_DILATIONS = (1, 1, 2, 4)


class DeeplabResNetBackbone(GatedBackbone):
    """Stem + four residual segments; the last two are dilated instead of strided."""

    def __init__(self, block: Block, layers: Sequence[int]) -> None:
        super().__init__()
        layers = list(layers)
        if len(layers) != 4 or any(not isinstance(n, int) or n < 1 for n in layers):
            raise ValueError(f"DeeplabResNetBackbone: layers must be 4 positive ints (blocks per "
                             f"segment), got {layers!r}")
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1, ceil_mode=True)

        inplanes = 64
        segments, downsamples = [], []
        for planes, num, stride, dilation in zip(SEGMENT_PLANES, layers, SEGMENT_STRIDES, SEGMENT_DILATIONS):
            out_planes = planes * block.expansion
            downsample = None
            # The dilated segments always get a projection, even where the shapes would match.
            if stride != 1 or inplanes != out_planes or dilation in (2, 4):
                # Built before the blocks, as in the original, so the construction-time default
                # init consumes the torch RNG in the same order.
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, out_planes, kernel_size=1, stride=stride, bias=False),
                    nn.BatchNorm2d(out_planes))
            segment = [block(inplanes, planes, stride, dilation=dilation)]
            inplanes = out_planes
            segment += [block(inplanes, planes, dilation=dilation) for _ in range(1, num)]
            segments.append(nn.ModuleList(segment))
            downsamples.append(downsample)
        # Registration order conv1, bn1, relu, maxpool, blocks, ds fixes state_dict and init order.
        self.blocks = nn.ModuleList(segments)
        self.ds = nn.ModuleList(downsamples)  # None entries hold no state
        self.layers = tuple(layers)
        self.out_channels = inplanes
        self._positions = [(s, b) for s, num in enumerate(layers) for b in range(num)]
        self._init_weights()

    def _init_weights(self) -> None:
        # Every conv re-drawn from N(0, 0.01^2) in modules() order (bit-exact with the original).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.01)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def num_blocks(self) -> int:
        """L: the number of residual blocks (= gate rows)."""
        return len(self._positions)

    @property
    def block_positions(self) -> List[Tuple[int, int]]:
        """(segment, block) of each flat block index t = 0..L-1 (segment-major)."""
        return list(self._positions)

    @property
    def block_channels(self) -> List[int]:
        """Output channels of each block t = 0..L-1."""
        return [self.blocks[s][b].expansion * SEGMENT_PLANES[s] for s, b in self._positions]

    @property
    def segment_channels(self) -> List[int]:
        """Output channels of each of the four segments."""
        return [planes * self.blocks[s][0].expansion for s, planes in enumerate(SEGMENT_PLANES)]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    @property
    def block_names(self) -> List[str]:
        """`segment.block` of each flat block index."""
        return [f"{s}.{b}" for s, b in self._positions]

    def body_modules(self, t: int) -> List[nn.Module]:
        segment, b = self._positions[t]
        return [self.blocks[segment][b]]

    def always_modules(self, t: int) -> List[nn.Module]:
        """The segment's downsample projection, at its block 0."""
        if t == self.num_blocks:
            return []
        segment, b = self._positions[t]
        return [self.ds[segment]] if b == 0 and self.ds[segment] is not None else []

    def run_block_with_first_conv(self, x: torch.Tensor, t: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """(first, output) of block t: `first` = relu(bn1(conv1(x))), the block's first-conv
        features (`planes` channels), and the block output of `run_block`, computed once."""
        segment, b = self._positions[t]
        block = self.blocks[segment][b]
        first = block.relu(block.bn1(block.conv1(x)))
        if isinstance(block, Bottleneck):
            body = block.bn3(block.conv3(block.relu(block.bn2(block.conv2(first)))))
        else:
            body = block.bn2(block.conv2(first))
        return first, F.relu(self._residual(x, t) + body)

    def _residual(self, x: torch.Tensor, t: int) -> torch.Tensor:
        segment, b = self._positions[t]
        downsample = self.ds[segment]
        return downsample(x) if b == 0 and downsample is not None else x

    def _executed(self, x: torch.Tensor, residual: torch.Tensor, t: int) -> torch.Tensor:
        segment, b = self._positions[t]
        return F.relu(residual + self.blocks[segment][b](x))


# Name -> (block type, blocks per segment). ResNet10 is a CPU-sized extension.
RESNETS = {
    "ResNet10": (BasicBlock, [1, 1, 1, 1]),
    "ResNet18": (BasicBlock, [2, 2, 2, 2]),
    "ResNet34": (BasicBlock, [3, 4, 6, 3]),
    "ResNet101": (Bottleneck, [3, 4, 23, 3]),
}


@register_family("Deeplab-ResNet", "|".join(RESNETS), tuple(RESNETS))
def build_deeplab_resnet(match: re.Match) -> DeeplabResNetBackbone:
    block, layers = RESNETS[match.group(0)]
    return DeeplabResNetBackbone(block, layers)
