"""NDDR-CNN (Gao et al., CVPR 2019) on T Deeplab-ResNet columns.

An NDDR layer fuses the T task features (C channels each, same size) at 5 points: after the
stem and after each of the 4 segments (conv2_x .. conv5_x). For each task t it concatenates the
T features along channels (T·C, in task order) and applies its own 1×1 conv T·C → C without
bias, BatchNorm and ReLU. Task t's head reads task t's output of the last NDDR layer.

Init (identity-dominant, "NDDR (0.9, 0.1)"): task t's conv weight, seen as T blocks of C × C, is
alpha_same·I on its own block and (1 − alpha_same)/(T − 1)·I on each other task's block (0.9/0.1
for T = 2; the identity for T = 1); BN γ = 1, β = 0 and momentum 0.05 (the NDDR code's BN decay 0.95).
Columns are initialised independently (each its own draw of the backbone's init). The original
trains NDDR parameters with 100× the base learning rate: that is the training code's business;
`fusion_parameters()` returns them as a group.
"""
from typing import List, Optional, Sequence

import torch
from torch import nn

from ..backbones import BackboneFactory
from .base import MultiTaskBaseline, check_fraction, dominant_mixing, register

BN_MOMENTUM = 0.05


class NDDRLayer(nn.Module):
    """Per task: concat of all T features -> 1×1 conv (T·C -> C, no bias) -> BN -> ReLU."""

    def __init__(self, num_tasks: int, channels: int, alpha_same: float = 0.9) -> None:
        super().__init__()
        self.tasks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(num_tasks * channels, channels, kernel_size=1, bias=False),
                          nn.BatchNorm2d(channels, momentum=BN_MOMENTUM),
                          nn.ReLU(inplace=True))
            for _ in range(num_tasks))
        mixing = dominant_mixing(num_tasks, alpha_same)
        identity = torch.eye(channels)
        with torch.no_grad():
            for t, fuse in enumerate(self.tasks):
                weight = torch.cat([m * identity for m in mixing[t]], dim=1)  # [C, T·C]
                fuse[0].weight.copy_(weight[:, :, None, None])
                nn.init.ones_(fuse[1].weight)
                nn.init.zeros_(fuse[1].bias)

    def forward(self, features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        stacked = torch.cat(list(features), dim=1)
        return [fuse(stacked) for fuse in self.tasks]


@register("nddr")
class NDDRNet(MultiTaskBaseline):
    """T columns (`backbones.{t}`) with NDDR layers `nddr.0` (after the stem) .. `nddr.4` (after conv5_x)."""

    resnet_only = True

    def __init__(self, backbone: BackboneFactory, tasks_num_class: Sequence[int],
                 head_channels: int = 1024, *, alpha_same: float = 0.9) -> None:
        super().__init__(backbone, tasks_num_class, head_channels)
        alpha_same = check_fraction("alpha_same", alpha_same)
        self.backbones = nn.ModuleList(self._new_column() for _ in range(self.num_tasks))
        stem_channels = self.backbones[0].bn1.num_features
        channels = [stem_channels] + self.backbones[0].segment_channels
        self.nddr = nn.ModuleList(NDDRLayer(self.num_tasks, c, alpha_same) for c in channels)
        self._add_heads(self.backbones[0].out_channels)

    def task_features(self, img: torch.Tensor) -> List[torch.Tensor]:
        features = self.nddr[0]([column.stem(img) for column in self.backbones])
        b = 0
        for segment, num_blocks in enumerate(self.layers):
            for _ in range(num_blocks):
                features = [column.run_block(x, b) for column, x in zip(self.backbones, features)]
                b += 1
            features = self.nddr[segment + 1](features)
        return features

    def shared_parameters(self, gates: Optional[Sequence[torch.Tensor]] = None) -> List[nn.Parameter]:
        """The columns and every NDDR layer but the last, whose per-task fusions each feed one head."""
        last = {id(p) for p in self.nddr[-1].parameters()}
        return [p for p in super().shared_parameters(gates) if id(p) not in last]
