"""MTAN (Liu et al., CVPR 2019) adapted to Deeplab-ResNet as in AdaShare: task attention at every
residual block of one shared backbone.

Per task t and block b (g_b = the block's first-conv features relu(bn1(conv1(x))), y_b = the
block output with C_b channels, f_{b−1} = the task's previous feature, C_{b−1} channels):
    mask_b = sigmoid(BN(conv1×1(relu(BN(conv1×1([g_b ⊕ f_{b−1}]))))))   (in → C_b → C_b)
    f_b    = relu(BN(conv3×3(mask_b ⊙ y_b)))                             (C_b → C_b)
For block 1, f_0 is the stem output (64 channels). Where the backbone strides (entering conv3_x),
f_{b−1} is max-pooled to g_b's size (adaptive max-pooling: a 2×2 max-pool for even sizes);
the dilated segments keep the size. Each task's last f feeds its ASPP head. Channel counts are
the actual ones, so Bottleneck blocks work too (g_b has `planes` channels, y_b 4·planes).

This is the literal SegNet-MTAN design mapped onto blocks, with every module per task
(attention and the 3×3 conv, at every block including the last); it is the reading that
reproduces the paper's "# Params" ratios (2.47 / 2.41 / 3.11 / 4.51). Convs keep their bias as
in the official code; init as the official code: Xavier-normal convs, zero bias, BN γ = 1, β = 0.
"""
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..backbones import BackboneFactory
from .base import MultiTaskBaseline, register


class BlockAttention(nn.Module):
    """One task's attention mask and feature conv at one block."""

    def __init__(self, first_channels: int, previous_channels: int, out_channels: int) -> None:
        super().__init__()
        self.mask = nn.Sequential(
            nn.Conv2d(first_channels + previous_channels, out_channels, kernel_size=1),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=1),
            nn.BatchNorm2d(out_channels), nn.Sigmoid())
        self.feature = nn.Sequential(
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, first: torch.Tensor, previous: torch.Tensor, block_output: torch.Tensor) -> torch.Tensor:
        """The task's feature after this block."""
        if previous.shape[-2:] != first.shape[-2:]:  # the block strides
            previous = F.adaptive_max_pool2d(previous, first.shape[-2:])
        mask = self.mask(torch.cat([first, previous], dim=1))
        return self.feature(mask * block_output)


@register("mtan")
class MTANNet(MultiTaskBaseline):
    """Shared `backbone`; `attention.{t}.{b}` is task t's attention module at block b."""

    resnet_only = True

    def __init__(self, backbone: BackboneFactory, tasks_num_class: Sequence[int],
                 head_channels: int = 1024) -> None:
        super().__init__(backbone, tasks_num_class, head_channels)
        self.backbone = self._new_column()
        out_channels = self.backbone.block_channels
        previous_channels = [self.backbone.bn1.num_features] + out_channels[:-1]
        first_channels = [self.backbone.blocks[s][b].bn1.num_features for s, b in self.backbone.block_positions]
        self.attention = nn.ModuleList(
            nn.ModuleList(BlockAttention(*channels)
                          for channels in zip(first_channels, previous_channels, out_channels))
            for _ in range(self.num_tasks))
        self._add_heads(self.backbone.out_channels)

    def task_features(self, img: torch.Tensor) -> List[torch.Tensor]:
        x = self.backbone.stem(img)
        features = [x] * self.num_tasks
        for b in range(self.backbone.num_blocks):
            first, x = self.backbone.run_block_with_first_conv(x, b)
            features = [attention[b](first, f, x) for attention, f in zip(self.attention, features)]
        return features

    def shared_parameters(self, gates: Optional[Sequence[torch.Tensor]] = None) -> List[nn.Parameter]:
        """The shared backbone; each task's attention modules serve that task only."""
        return self.backbone_parameters() if self.num_tasks > 1 else []
