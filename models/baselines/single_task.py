"""Single-Task baseline: T independent networks, each a full backbone column and its own ASPP head.

Nothing is shared, so "# Params" = T. Columns are initialised independently: each is its own
draw of the backbone's init (N(0, 0.01²) convs), in task order.
"""
from typing import List, Optional, Sequence

import torch
from torch import nn

from ..backbones import BackboneFactory
from .base import MultiTaskBaseline, register


@register("single_task")
class SingleTaskNets(MultiTaskBaseline):
    """Task t's head reads column t (`backbones.{t}`)."""

    def __init__(self, backbone: BackboneFactory, tasks_num_class: Sequence[int],
                 head_channels: int = 1024) -> None:
        super().__init__(backbone, tasks_num_class, head_channels)
        self.backbones = nn.ModuleList(self._new_column() for _ in range(self.num_tasks))
        self._add_heads(self.backbones[0].out_channels)

    def task_features(self, img: torch.Tensor) -> List[torch.Tensor]:
        return [column(img) for column in self.backbones]

    def shared_parameters(self, gates: Optional[Sequence[torch.Tensor]] = None) -> List[nn.Parameter]:
        """Nothing: each column serves one task (gradient methods reduce to the plain sum)."""
        return []
