"""Cross-Stitch networks (Misra et al., CVPR 2016) on T Deeplab-ResNet columns.

A cross-stitch unit after every residual block (none after the stem) replaces each task's
feature map by a learned linear combination of all tasks' maps at every position:
    x̃_i = Σ_j α_ij ⊙ x_j,
with α channel-wise: one length-C vector per ordered task pair (i, j), so T·T·C scalars per unit.
Init: α_ii = alpha_same (0.9), α_ij = (1 − alpha_same)/(T − 1), so each output is a convex
combination (α = 1 for T = 1). Task t's head reads column t after the last unit.

Choices where the reference is unconfirmed: channel-wise α (rather than one scalar per task
pair); no unit after the stem; columns initialised independently (each its own draw of the
backbone's init; load pretrained weights into every column to get the paper's identical start).
"""
from typing import List, Sequence

import torch
from torch import nn

from ..backbones import BackboneFactory
from .base import MultiTaskBaseline, check_fraction, dominant_mixing, register


class CrossStitchUnit(nn.Module):
    """x̃_i = Σ_j α_ij ⊙ x_j over T same-shaped maps, with α of shape [T, T, C]."""

    def __init__(self, num_tasks: int, channels: int, alpha_same: float = 0.9) -> None:
        super().__init__()
        init = dominant_mixing(num_tasks, alpha_same)
        self.alpha = nn.Parameter(init.unsqueeze(-1).repeat(1, 1, channels))

    def forward(self, features: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        mixed = torch.einsum("ijc,jbchw->ibchw", self.alpha, torch.stack(list(features)))
        return list(mixed.unbind(0))


@register("cross_stitch")
class CrossStitchNet(MultiTaskBaseline):
    """T columns (`backbones.{t}`) with a cross-stitch unit (`stitches.{b}`) after every block b."""

    resnet_only = True

    def __init__(self, backbone: BackboneFactory, tasks_num_class: Sequence[int],
                 head_channels: int = 1024, *, alpha_same: float = 0.9) -> None:
        super().__init__(backbone, tasks_num_class, head_channels)
        alpha_same = check_fraction("alpha_same", alpha_same)
        self.backbones = nn.ModuleList(self._new_column() for _ in range(self.num_tasks))
        channels = self.backbones[0].block_channels
        self.stitches = nn.ModuleList(CrossStitchUnit(self.num_tasks, c, alpha_same) for c in channels)
        self._add_heads(self.backbones[0].out_channels)

    def task_features(self, img: torch.Tensor) -> List[torch.Tensor]:
        features = [column.stem(img) for column in self.backbones]
        for b, stitch in enumerate(self.stitches):
            features = stitch([column.run_block(x, b) for column, x in zip(self.backbones, features)])
        return features
