"""Multi-Task baseline (hard parameter sharing): one shared backbone, one ASPP head per task.

Equal to AdaShare's MultiTaskNet with every block executed (`forward(img, None)`); the attribute
names and construction order (backbone, then heads task by task) are the same, so its state_dict
is MultiTaskNet's without the policy logits. "# Params" = 1.
"""
from typing import List, Sequence

import torch

from ..backbones import BackboneFactory
from .base import MultiTaskBaseline, register


@register("multi_task")
class HardSharingNet(MultiTaskBaseline):
    """Every head reads the final feature map of the shared `backbone`."""

    def __init__(self, backbone: BackboneFactory, tasks_num_class: Sequence[int],
                 head_channels: int = 1024) -> None:
        super().__init__(backbone, tasks_num_class, head_channels)
        self.backbone = self._new_column()
        self._add_heads(self.backbone.out_channels)

    def task_features(self, img: torch.Tensor) -> List[torch.Tensor]:
        return [self.backbone(img)] * self.num_tasks
