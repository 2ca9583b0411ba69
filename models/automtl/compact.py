"""Compact export: the supermodel with only the branches a hard policy uses (docs/automtl.md "Compact model")."""
from __future__ import annotations

import copy
from typing import List, Sequence

import torch
from torch import nn

from ..heads import ASPP_RATES, head_name, sum_of_branches, task_head_branches
from .options import HARD, SHARED, SKIP, SPECIFIC
from .supermodel import AutoMTLNet, TaskPolicy


class CompactAutoMTLNet(nn.Module):
    """A fixed architecture: `forward(x)` runs each task with its stored choices. Keys are those of the
    supermodel for the kept branches (`backbone.*`, `task{t}_fc1_c{c}.*`) plus the `choices` buffer
    ([num_tasks, num_convs]); no policy logits, no shared BNs, no unchosen convs / copies / skips."""

    def __init__(self, supermodel: AutoMTLNet, choices: torch.Tensor) -> None:
        super().__init__()
        self.backbone = supermodel.backbone
        for t in range(supermodel.num_tasks):
            for c in range(len(ASPP_RATES)):
                self.add_module(head_name(t, c), getattr(supermodel, head_name(t, c)))
        self.register_buffer("choices", choices)
        self.tasks_num_class = list(supermodel.tasks_num_class)
        self.conv_names = list(supermodel.conv_names)
        self.conv_depths = list(supermodel.conv_depths)
        self.bn_names = list(supermodel.bn_names)
        self.backbone_name = supermodel.backbone_name
        self.out_channels = supermodel.out_channels
        self._routes = [supermodel.route(t, HARD, c) for t, c in enumerate(choices)]

    @property
    def num_tasks(self) -> int:
        return len(self.tasks_num_class)

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        return [self.forward_task(x, t) for t in range(self.num_tasks)]

    def forward_task(self, x: torch.Tensor, task: int) -> torch.Tensor:
        return sum_of_branches(task_head_branches(self, task), self.backbone(x, self._routes[task]))


def export_compact(model: AutoMTLNet, policy: Sequence[TaskPolicy]) -> CompactAutoMTLNet:
    """A deep copy of `model` keeping, per conv, the shared op iff some task chooses it, task t's copy iff
    t chooses "specific", t's skip iff t chooses "skip"; per BN only the task copies. `policy`: one hard
    choice vector per task ([num_convs] ints). `model` is not modified."""
    routes = [model.route(t, HARD, p) for t, p in enumerate(policy)]
    if len(routes) != model.num_tasks:
        raise ValueError(f"export_compact: got {len(routes)} policies for {model.num_tasks} tasks")
    choices = torch.tensor([r.choices for r in routes], dtype=torch.int64)
    model = copy.deepcopy(model)
    for node in model.conv_nodes():
        picked = [r.choices[node.index] for r in routes]
        if SHARED not in picked:
            node.shared = None
        for t, option in enumerate(picked):
            if option != SPECIFIC:
                del node.copies[str(t)]
            if option != SKIP:
                del node.skips[str(t)]
    for bn in model.bn_nodes():
        bn.shared = None
    return CompactAutoMTLNet(model, choices)
