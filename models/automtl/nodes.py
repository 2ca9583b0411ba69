"""The modules that replace a backbone's nn.Conv2d and nn.BatchNorm2d in the supermodel (docs/automtl.md).

Both take `(x, route)`: the conversion adds the route argument to every call in the traced graph, so
the options of one forward are explicit arguments, never state kept on the module. Per-task modules
live in ModuleDicts keyed by the task index ("0", "1", ...), so that the compact export can drop a
task's unused branch and the remaining checkpoint keys keep their names.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import nn

from .options import HARD, PRETRAIN, SHARED, SKIP, SOFT, SPECIFIC, Route


def needs_projection(conv: nn.Conv2d) -> bool:
    """True if the skip of `conv` must change the shape: in != out channels or stride != 1."""
    return conv.in_channels != conv.out_channels or tuple(conv.stride) != (1, 1)


def make_skip(conv: nn.Conv2d) -> nn.Module:
    """The skip option of `conv`: 1x1 conv (its stride, no bias) + BatchNorm2d when the shape changes,
    identity otherwise. Kernel size, dilation and groups of `conv` play no part (as the authors' code)."""
    if not needs_projection(conv):
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(conv.in_channels, conv.out_channels, kernel_size=1, stride=conv.stride, bias=False),
        nn.BatchNorm2d(conv.out_channels))


class ConvNode(nn.Module):
    """A virtual computation node for one convolution: the shared conv, one copy and one skip per task.

    `index` is the conv's row in every task's policy, `depth` the number of convs on the longest path
    from the input to it (both set by the conversion). After the compact export, branches no task
    chooses are gone (`shared` None, missing task keys).
    """

    def __init__(self, conv: nn.Conv2d, num_tasks: int, index: int, depth: int) -> None:
        super().__init__()
        self.shared: Optional[nn.Conv2d] = conv
        # Copies start equal to the shared conv; skips draw their default init (torch RNG) task by task.
        self.copies = nn.ModuleDict({str(t): copy.deepcopy(conv) for t in range(num_tasks)})
        self.skips = nn.ModuleDict({str(t): make_skip(conv) for t in range(num_tasks)})
        self.index = index
        self.depth = depth

    def branch(self, option: int, task: int) -> nn.Module:
        """The module of `option` (0 shared, 1 copy, 2 skip) for `task`; KeyError if it was pruned."""
        if option == SHARED:
            if self.shared is None:
                raise KeyError(f"conv node {self.index}: the shared operator was dropped by the compact export")
            return self.shared
        modules = self.copies if option == SPECIFIC else self.skips
        if str(task) not in modules:
            raise KeyError(f"conv node {self.index}: option {option} of task {task} was dropped by the compact "
                           f"export")
        return modules[str(task)]

    def forward(self, x: torch.Tensor, route: Route) -> torch.Tensor:
        task = route.task
        if route.mode == HARD:
            # Only the chosen branch runs: the others see no data and cost nothing.
            return self.branch(route.choices[self.index], task)(x)
        shared = self.branch(SHARED, task)(x)
        specific = self.branch(SPECIFIC, task)(x)
        skip = self.branch(SKIP, task)(x)
        if route.mode == SOFT:
            w = route.weights[self.index]
            return shared * w[SHARED] + specific * w[SPECIFIC] + skip * w[SKIP]
        if route.mode == PRETRAIN:
            return torch.mean(torch.stack([shared, specific, skip]), dim=0)  # as the authors' compute_combined
        raise ValueError(f"unknown forward mode {route.mode!r}")

    def extra_repr(self) -> str:
        return f"index={self.index}, depth={self.depth}"


class TaskBatchNorm(nn.Module):
    """A BatchNorm2d made per-task: not searched; the copies run in soft and hard mode, the pre-train mode
    averages the shared BN and the task's copy (the authors' BNsp=True). Copies start equal to the shared
    BN, running statistics included. After the compact export `shared` is None."""

    def __init__(self, bn: nn.BatchNorm2d, num_tasks: int) -> None:
        super().__init__()
        self.shared: Optional[nn.BatchNorm2d] = bn
        self.copies = nn.ModuleDict({str(t): copy.deepcopy(bn) for t in range(num_tasks)})

    def forward(self, x: torch.Tensor, route: Route) -> torch.Tensor:
        specific = self.copies[str(route.task)](x)
        if route.mode != PRETRAIN:
            return specific
        if self.shared is None:
            raise KeyError("the shared BN was dropped by the compact export (pre-train mode needs it)")
        return torch.mean(torch.stack([self.shared(x), specific]), dim=0)
