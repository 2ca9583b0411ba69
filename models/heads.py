"""One ASPP branch (DeepLab-v2 "ASPP-L") of a task head (docs/original.md §3.1), and the four-branch task heads."""
from typing import List, Sequence

import torch
from torch import nn

ASPP_RATES = (6, 12, 18, 24)


class ClassificationModule(nn.Module):
    """Dilated 3x3 conv -> ReLU -> Dropout -> 1x1 -> ReLU -> Dropout -> 1x1 to the task's channels.

    Keeps PyTorch's default conv init. `hidden_channels` is 1024 in the original; smaller values
    make CPU-sized models.
    """

    def __init__(self, inplanes: int, num_classes: int, rate: int, hidden_channels: int = 1024) -> None:
        super().__init__()
        if num_classes < 1 or hidden_channels < 1 or rate < 1:
            raise ValueError(f"ClassificationModule: num_classes ({num_classes}), hidden_channels "
                             f"({hidden_channels}) and rate ({rate}) must be positive")
        self.conv1 = nn.Conv2d(inplanes, hidden_channels, kernel_size=3, stride=1, padding=rate,
                               dilation=rate, bias=True)
        self.conv2 = nn.Conv2d(hidden_channels, hidden_channels, kernel_size=1)
        self.conv3 = nn.Conv2d(hidden_channels, num_classes, kernel_size=1)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(p=0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(self.relu(self.conv1(x)))
        out = self.dropout(self.relu(self.conv2(out)))
        return self.conv3(out)


def head_name(task_index: int, branch: int) -> str:
    """Attribute name of branch `branch` of task `task_index` (0-based): `task{t}_fc1_c{c}`, t from 1."""
    return f"task{task_index + 1}_fc1_c{branch}"


def add_task_heads(owner: nn.Module, in_channels: int, tasks_num_class: Sequence[int],
                   hidden_channels: int = 1024) -> None:
    """Register the four ASPP branches of every task on `owner` as `task{t}_fc1_c{c}`.

    Built task by task and branch by branch: this fixes the state_dict order and the order in
    which the default init consumes the torch RNG.
    """
    for t, num_class in enumerate(tasks_num_class):
        for c, rate in enumerate(ASPP_RATES):
            owner.add_module(head_name(t, c), ClassificationModule(in_channels, num_class, rate, hidden_channels))


def task_head_branches(owner: nn.Module, task_index: int) -> List[ClassificationModule]:
    """The four ASPP branches of task `task_index` (0-based), in branch order."""
    return [getattr(owner, head_name(task_index, c)) for c in range(len(ASPP_RATES))]


def sum_of_branches(branches: Sequence[nn.Module], feature: torch.Tensor) -> torch.Tensor:
    """Sum of the branch outputs on `feature`, added in branch order."""
    out = branches[0](feature)
    for branch in branches[1:]:
        out = out + branch(feature)
    return out
